package barrier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/pipepool"
)

// Errors of the barrier.
var (
	// ErrActionForbidden rejects an action that arrives after its
	// compensation (a hanging action): nothing was done. Services answer it
	// with ABORTED and reason ACTION_FORBIDDEN, which the saga treats as final.
	ErrActionForbidden = errors.New("action forbidden: its compensation already ran")
	// ErrSagaMismatch means the barrier of (mission, step), or the owner
	// (see WithOwner), belongs to another saga id than the caller's;
	// nothing was done.
	ErrSagaMismatch = errors.New("barrier belongs to another saga")
	// ErrConflict means a call's plan went stale (a precondition changed
	// under it) too many times in a row (a business key under heavy
	// contention); nothing was done and the call may be retried.
	ErrConflict = errors.New("barrier transaction kept conflicting")
	// ErrInvalidID means an ID has an empty field or a brace in its key.
	ErrInvalidID = errors.New("invalid barrier id")
	// ErrOwnerGone refuses a call for a mission whose owner key (see
	// WithOwner) does not exist — its saga expired or was deleted, or never
	// existed — or carries an expiry — its saga has ended and its data is
	// kept only until the retention runs out: a key written now would
	// belong to no one, or outlive its mission. Nothing was done.
	ErrOwnerGone = errors.New("the mission's saga has ended or is gone")
)

// ID names one sub-transaction: a step of a saga of a mission.
type ID struct {
	// Key is the mission id; it is the Redis hash tag of the barrier keys,
	// so they share a Cluster slot with the mission's other keys.
	Key    string
	SagaID string
	Step   string
}

func (id ID) validate() error {
	if id.Key == "" || id.SagaID == "" || id.Step == "" || strings.ContainsAny(id.Key, "{}") {
		return fmt.Errorf("%w: %+v", ErrInvalidID, id)
	}
	return nil
}

// Outcome says what a barrier call did.
type Outcome int

// Outcomes.
const (
	// Applied: this call committed the effect (the action, or the undo).
	Applied Outcome = iota + 1
	// Duplicate: an earlier call already did it; nothing was done, and an
	// action returns the earlier result.
	Duplicate
	// Null: a compensation for an action that never ran; nothing was undone,
	// and the action is forbidden from now on.
	Null
)

// String names the outcome in lower case ("applied", "duplicate", "null"),
// the form services log.
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Null:
		return "null"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Key returns the barrier hash of one step of mission key. Its fields: saga
// (the saga id), action ("done"), compensation ("done", or "null" for a null
// compensation), result (the action's result bytes, from the action's commit
// until the compensation's).
func Key(key, step string) string { return "slammesh:{" + key + "}:barrier:" + step }

// EffectsKey returns the hash counting the effects actually applied for
// mission key, by "<step>:action" and "<step>:compensation".
func EffectsKey(key string) string { return "slammesh:{" + key + "}:effects" }

// maxTxAttempts bounds how many times one Action or Compensate redoes its
// callback because a precondition (Tx.Expect) no longer held at the commit.
// Every stale commit means another writer changed the business key in
// between, so a call loses at most once per concurrent competitor.
const maxTxAttempts = 100

// ErrStale is Commit's answer when a precondition of the plan (Tx.Expect) no
// longer held: nothing was written; redo the work on fresh reads and commit
// again. Action and Compensate do that themselves.
var ErrStale = errors.New("barrier: a precondition of the plan no longer holds")

// Barrier guards the step handlers of a service.
type Barrier struct {
	rdb   redis.UniversalClient
	pipes *pipepool.Pool
	owner func(key string) string
	// group, when set, batches commits with concurrent calls' (WithGroupCommit).
	group *groupcommit.Group
}

// Option configures a Barrier.
type Option func(*Barrier)

// WithOwner makes every call first check the mission's owner hash,
// owner(id.Key) — the services pass saga.RecordKey — and refuse with
// ErrOwnerGone, writing nothing, when it is missing or has an expiry, and
// with ErrSagaMismatch when its field saga_id names another saga than the
// call's: a mission deleted and started again under its id runs another
// saga, and a call of the first one still in flight must not claim a step
// of the second, or create its business keys under it. The
// owner's end sets the retention (an expiry) of every key the mission
// holds, and a reopening (a teardown, a resumed compensation) removes it
// before any step is called again; a call arriving after the end (a
// hanging action, a late compensation, a step the saga never reached)
// would otherwise create a mark, and for an action its business keys, that
// nothing would ever expire. The check runs in the barrier's script, so an
// end, a reopening or a deletion is ordered entirely before or after the
// call's commit.
func WithOwner(owner func(key string) string) Option {
	return func(b *Barrier) { b.owner = owner }
}

// Owned reports whether b checks an owner key (WithOwner): then no call
// for a mission whose owner is gone commits anything, so nothing waits on
// such a mission's commit.
func (b *Barrier) Owned() bool { return b.owner != nil }

// WithGroupCommit makes every commit (the script and what Tx.Carry queues)
// go through g, batched with the commits of concurrent calls: one round trip
// carries many missions' commits under load. g must be on the barrier's
// client.
func WithGroupCommit(g *groupcommit.Group) Option {
	return func(b *Barrier) { b.group = g }
}

// New returns a barrier on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Barrier {
	b := &Barrier{rdb: rdb, pipes: pipepool.New(rdb)}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Commit is the action in one round trip, for a caller that did its work
// before the call: the barrier's script decides on the marks and
//
//   - first call: checks tx's preconditions (ErrStale if one fails, nothing
//     written), then applies tx's writes, stores result, sets the action
//     mark, counts the effect and applies tx's announcements (Applied);
//   - after a committed action: applies tx's announcements only and returns
//     the stored result (Duplicate) — once per call: the same call sent
//     again by go-redis, after its reply timed out, announces nothing more
//     (and its caller gets Duplicate, the answer to the copy it got);
//   - after the step's compensation: ErrActionForbidden, nothing written.
//
// tx is spent once Commit returns Applied or Duplicate (its recording
// pipelines are reused); after an error it may be committed again.
func (b *Barrier) Commit(ctx context.Context, id ID, tx *Tx, result []byte) ([]byte, Outcome, error) {
	if err := id.validate(); err != nil {
		return nil, 0, err
	}
	if result == nil {
		result = []byte{}
	}
	st, detail, err := b.run(ctx, id, modeAct, tx, result)
	if err == nil {
		switch st {
		case "applied":
			tx.release()
			return result, Applied, nil
		case "dup":
			tx.release()
			return detail, Duplicate, nil
		case "stale":
			err = ErrStale
		default:
			err = fmt.Errorf("barrier: unexpected answer %q to an action", st)
		}
	}
	return nil, 0, fmt.Errorf("barrier action %s/%s: %w", id.Key, id.Step, err)
}

// Action runs a step's action behind the barrier.
//
//   - First call: fn runs and returns the result; its planned writes, the
//     result, the action mark and the effect count commit in one script
//     (Applied). If fn fails, nothing is written and its error is returned:
//     the action may be attempted again.
//   - After a committed action (a retry after a lost reply): fn does not
//     run; the stored result is returned (Duplicate).
//   - After the step's compensation (a hanging action): fn does not run;
//     ErrActionForbidden.
//
// It takes two round trips when the action runs (a look at the marks, then
// the commit) and one otherwise; a caller that can do its work first saves
// the look with Commit. fn runs again when a precondition it set no longer
// holds at the commit, so it must derive its plan from fresh reads.
func (b *Barrier) Action(ctx context.Context, id ID, fn func(ctx context.Context, tx *Tx) ([]byte, error)) (result []byte, outcome Outcome, err error) {
	if err := id.validate(); err != nil {
		return nil, 0, err
	}
	st, detail, err := b.run(ctx, id, modeProbeAct, nil, nil)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("barrier action %s/%s: %w", id.Key, id.Step, err)
	case st == "dup":
		return detail, Duplicate, nil
	}
	for n := 1; ; n++ {
		tx := b.NewTx()
		res, err := fn(ctx, tx)
		if err != nil {
			return nil, 0, fmt.Errorf("barrier action %s/%s: %w", id.Key, id.Step, err)
		}
		result, outcome, err = b.Commit(ctx, id, tx, res)
		if !errors.Is(err, ErrStale) {
			return result, outcome, err
		}
		if err := backoff(ctx, n); err != nil {
			return nil, 0, fmt.Errorf("barrier action %s/%s: %w", id.Key, id.Step, err)
		}
	}
}

// Compensate runs a step's compensation behind the barrier.
//
//   - After a committed action: fn runs, given the result the action stored
//     (what to undo: a map version, a reservation); its planned writes, the
//     compensation mark, the effect count and the deletion of the stored
//     result commit together in one script (Applied). If fn fails nothing
//     is written and its error is returned.
//   - Without a committed action (null compensation): fn does not run; the
//     compensation is marked "null", which forbids the action from now on
//     (Null).
//   - After a committed compensation: fn does not run (Duplicate).
//
// It takes one round trip for a null or repeated compensation, two when it
// undoes (the look that fetches the result fn needs, then the commit). As
// with Action, fn runs again when a precondition no longer holds. Tx
// announcements are ignored.
func (b *Barrier) Compensate(ctx context.Context, id ID, fn func(ctx context.Context, tx *Tx, actionResult []byte) error) (outcome Outcome, err error) {
	if err := id.validate(); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("barrier compensation %s/%s: %w", id.Key, id.Step, err)
		}
	}()
	st, result, err := b.run(ctx, id, modeProbeComp, nil, nil)
	switch {
	case err != nil:
		return 0, err
	case st == "dup":
		return Duplicate, nil
	case st == "null":
		return Null, nil
	}
	for n := 1; ; n++ {
		tx := b.NewTx()
		if err := fn(ctx, tx, result); err != nil {
			return 0, err
		}
		st, _, err := b.run(ctx, id, modeComp, tx, nil)
		if st == "applied" || st == "dup" {
			tx.release()
		}
		switch {
		case err != nil:
			return 0, err
		case st == "applied":
			return Applied, nil
		case st == "dup":
			return Duplicate, nil
		case st != "stale":
			return 0, fmt.Errorf("barrier: unexpected answer %q to a compensation", st)
		}
		if err := backoff(ctx, n); err != nil {
			return 0, err
		}
	}
}

// backoff waits before attempt n+1 of a plan that went stale, with full
// jitter (competitors that conflicted together spread out); ErrConflict
// after maxTxAttempts.
func backoff(ctx context.Context, n int) error {
	if n >= maxTxAttempts {
		return fmt.Errorf("%w: the plan went stale %d times", ErrConflict, n)
	}
	ceiling := min(50*time.Microsecond<<min(n, 8), 10*time.Millisecond)
	t := time.NewTimer(time.Duration(rand.Int64N(int64(ceiling) + 1)))
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		return context.Cause(ctx)
	}
}

// run sends one call of stepScript and returns its status and detail; the
// barrier's own refusals (owner gone, another saga, forbidden) come back as
// errors.
func (b *Barrier) run(ctx context.Context, id ID, mode string, tx *Tx, result []byte) (status string, detail []byte, err error) {
	keys, argv, err := b.args(id, mode, tx, result)
	if err != nil {
		return "", nil, err
	}
	carry := mode == modeAct && tx != nil && tx.carry != nil
	if !carry && b.group == nil {
		return answer(id, stepScript.Run(ctx, b.rdb, keys, argv...))
	}
	pipe := b.pipes.Get()
	cmd := stepScript.EvalSha(ctx, pipe, keys, argv...)
	done := func() {}
	if carry {
		done = tx.carry(pipe)
	}
	b.group.Send(ctx, pipe) // each command carries its own error
	done()
	b.pipes.Put(pipe)
	if err := cmd.Err(); errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not cached (a new or restarted Redis): the script did not run.
		return answer(id, stepScript.Run(ctx, b.rdb, keys, argv...))
	}
	return answer(id, cmd)
}

// args builds the keys and arguments of a call of stepScript.
func (b *Barrier) args(id ID, mode string, tx *Tx, result []byte) (keys []string, argv []any, err error) {
	owner, checkOwner := Key(id.Key, id.Step), "0"
	if b.owner != nil {
		owner, checkOwner = b.owner(id.Key), "1"
	}
	keys = []string{Key(id.Key, id.Step), EffectsKey(id.Key), owner}
	argv = []any{mode, id.SagaID, id.Step, checkOwner, result, 0, 0, 0, callToken()}
	if tx == nil {
		return keys, argv, nil
	}
	argv[5] = len(tx.expects)
	for _, e := range tx.expects {
		present := "0"
		if e.present {
			present = "1"
		}
		argv = append(argv, e.key, e.field, present, e.value)
		keys = addKey(keys, e.key)
	}
	writes, announce := cmds(tx.writes), cmds(tx.announce)
	argv[6], argv[7] = len(writes), len(announce)
	if argv, keys, err = encode(argv, keys, writes); err != nil {
		return nil, nil, err
	}
	if argv, keys, err = encode(argv, keys, announce); err != nil {
		return nil, nil, err
	}
	return keys, argv, nil
}

// callToken names one call of stepScript, so that the script announces a
// duplicate action call once though go-redis sends the same call again
// when its reply times out (a Redis stall beyond the read timeout): 64
// random bits, so that two calls of one barrier share a token with a
// chance of 2⁻⁶⁴.
func callToken() string { return strconv.FormatUint(rand.Uint64(), 36) }

// answer decodes stepScript's reply.
func answer(id ID, cmd *redis.Cmd) (status string, detail []byte, err error) {
	reply, err := cmd.Slice()
	if err != nil {
		return "", nil, err
	}
	if len(reply) == 0 {
		return "", nil, errors.New("barrier: empty answer from the script")
	}
	status = str(reply[0])
	if len(reply) > 1 {
		detail = []byte(str(reply[1]))
	}
	switch status {
	case "gone":
		return "", nil, ErrOwnerGone
	case "mismatch":
		return "", nil, fmt.Errorf("%w: stored %s, caller %s", ErrSagaMismatch, detail, id.SagaID)
	case "forbidden":
		return "", nil, ErrActionForbidden
	}
	return status, detail, nil
}

// Look tells, without acting, whether the action of id committed: the
// result it stored and committed true; committed false when it did not yet;
// ErrActionForbidden when the step was compensated (and ErrOwnerGone,
// ErrSagaMismatch as any call). reads, when not nil, queues the caller's own
// reads in the same pipeline, so a handler that must read before its work
// anyway (the map it works on) pays one round trip for both; their commands
// hold their results once Look returned without error (a read's own error,
// redis.Nil included, is the caller's to check).
func (b *Barrier) Look(ctx context.Context, id ID, reads func(p redis.Pipeliner)) (result []byte, committed bool, err error) {
	if err := id.validate(); err != nil {
		return nil, false, err
	}
	keys, argv, err := b.args(id, modeProbeAct, nil, nil)
	if err != nil {
		return nil, false, err
	}
	pipe := b.pipes.Get()
	defer b.pipes.Put(pipe)
	// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT; Redis
	// caches the compiled script either way.
	look := stepScript.Eval(ctx, pipe, keys, argv...)
	if reads != nil {
		reads(pipe)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	st, detail, err := answer(id, look)
	if err != nil {
		return nil, false, fmt.Errorf("barrier look %s/%s: %w", id.Key, id.Step, err)
	}
	return detail, st == "dup", nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Effects returns the effects counted for mission key, by "<step>:<op>".
func (b *Barrier) Effects(ctx context.Context, key string) (map[string]int64, error) {
	h, err := b.rdb.HGetAll(ctx, EffectsKey(key)).Result()
	if err != nil {
		return nil, fmt.Errorf("barrier effects %s: %w", key, err)
	}
	out := make(map[string]int64, len(h))
	for k, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("barrier effects %s: field %s: %w", key, k, err)
		}
		out[k] = n
	}
	return out, nil
}
