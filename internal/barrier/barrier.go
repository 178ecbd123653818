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
)

// Errors of the barrier.
var (
	// ErrActionForbidden rejects an action that arrives after its
	// compensation (a hanging action): nothing was done. Services answer it
	// with ABORTED and reason ACTION_FORBIDDEN, which the saga treats as final.
	ErrActionForbidden = errors.New("action forbidden: its compensation already ran")
	// ErrSagaMismatch means the barrier of (mission, step) belongs to another
	// saga id than the caller's; nothing was done.
	ErrSagaMismatch = errors.New("barrier belongs to another saga")
	// ErrConflict means the transaction lost the optimistic race too many
	// times in a row (keys under heavy contention); nothing was done and the
	// call may be retried.
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

// Hash fields and values of a barrier.
const (
	fieldSaga         = "saga"
	fieldAction       = "action"
	fieldCompensation = "compensation"
	fieldResult       = "result"
	markDone          = "done"
	markNull          = "null"
)

// maxTxAttempts bounds the optimistic retries of one call. Every conflict
// means another transaction on the same keys committed, so a call loses at
// most once per concurrent competitor; this bound only matters for keys
// shared by many missions (the mapping capacity counter).
const maxTxAttempts = 100

// Barrier guards the step handlers of a service.
type Barrier struct {
	rdb   redis.UniversalClient
	owner func(key string) string
}

// Option configures a Barrier.
type Option func(*Barrier)

// WithOwner makes every call first check the mission's owner key,
// owner(id.Key) — the services pass saga.RecordKey — and refuse with
// ErrOwnerGone, writing nothing, when it is missing or has an expiry. The
// owner's end sets the retention (an expiry) of every key the mission
// holds, and a reopening (a teardown, a resumed compensation) removes it
// before any step is called again; a call arriving after the end (a
// hanging action, a late compensation, a step the saga never reached)
// would otherwise create a mark, and for an action its business keys, that
// nothing would ever expire. The owner key is watched with the barrier, so
// an end, a reopening or a deletion racing the call aborts its commit.
func WithOwner(owner func(key string) string) Option {
	return func(b *Barrier) { b.owner = owner }
}

// New returns a barrier on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Barrier {
	b := &Barrier{rdb: rdb}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Tx is a business callback's view of the barrier transaction: it may watch
// and read business keys, and queue the business writes that commit together
// with the barrier mark.
type Tx struct {
	rtx    *redis.Tx
	writes []func(redis.Pipeliner)
}

// Watch adds business keys to the transaction's optimistic lock: if any of
// them changes before the commit, the whole call starts again (the callback
// runs again, on fresh reads). Watch keys before reading them.
func (t *Tx) Watch(ctx context.Context, keys ...string) error {
	if err := t.rtx.Watch(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("barrier: watch %v: %w", keys, err)
	}
	return nil
}

// Reader returns the connection that holds the transaction's WATCH, for
// reading business keys. Do not write through it: writes made there are
// neither atomic with the barrier mark nor undone when the call is retried.
func (t *Tx) Reader() redis.Cmdable { return t.rtx }

// Write queues business writes: fn is called with the MULTI/EXEC pipeline that
// also carries the barrier mark and the effect count. Commands queued there
// commit all together or not at all (no commit happens if a watched key
// changed).
func (t *Tx) Write(fn func(pipe redis.Pipeliner)) { t.writes = append(t.writes, fn) }

// Action runs a step's action behind the barrier.
//
//   - First call: fn runs and returns the result; its queued writes, the
//     result, the action mark and the effect count commit in one MULTI/EXEC
//     (Applied). If fn fails, nothing is written and its error is returned:
//     the action may be attempted again.
//   - After a committed action (a retry after a lost reply): fn does not
//     run; the stored result is returned (Duplicate).
//   - After the step's compensation (a hanging action): fn does not run;
//     ErrActionForbidden.
//
// fn may run more than once in one call when a watched key changes
// concurrently, so it must derive its writes only from what it reads through
// tx; expensive pure work is best done before Action.
func (b *Barrier) Action(ctx context.Context, id ID, fn func(ctx context.Context, tx *Tx) ([]byte, error)) (result []byte, outcome Outcome, err error) {
	if err := id.validate(); err != nil {
		return nil, 0, err
	}
	key := Key(id.Key, id.Step)
	err = b.transact(ctx, id, func(rtx *redis.Tx, m marks) error {
		switch {
		case m.compensation != "":
			return ErrActionForbidden
		case m.action != "":
			result, outcome = m.result, Duplicate
			return nil
		}
		tx := &Tx{rtx: rtx}
		res, err := fn(ctx, tx)
		if err != nil {
			return err
		}
		if err := commit(ctx, rtx, tx.writes, func(p redis.Pipeliner) {
			p.HSet(ctx, key, fieldSaga, id.SagaID, fieldAction, markDone, fieldResult, res)
			p.HIncrBy(ctx, EffectsKey(id.Key), id.Step+":action", 1)
		}); err != nil {
			return err
		}
		result, outcome = res, Applied
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("barrier action %s/%s: %w", id.Key, id.Step, err)
	}
	return result, outcome, nil
}

// Compensate runs a step's compensation behind the barrier.
//
//   - After a committed action: fn runs, given the result the action stored
//     (what to undo: a map version, a reservation); its queued writes, the
//     compensation mark, the effect count and the deletion of the stored
//     result commit together (Applied). If fn fails nothing is written and
//     its error is returned.
//   - Without a committed action (null compensation): fn does not run; the
//     compensation is marked "null", which forbids the action from now on
//     (Null).
//   - After a committed compensation: fn does not run (Duplicate).
//
// As with Action, fn may run more than once in one call.
func (b *Barrier) Compensate(ctx context.Context, id ID, fn func(ctx context.Context, tx *Tx, actionResult []byte) error) (outcome Outcome, err error) {
	if err := id.validate(); err != nil {
		return 0, err
	}
	key := Key(id.Key, id.Step)
	err = b.transact(ctx, id, func(rtx *redis.Tx, m marks) error {
		switch {
		case m.compensation != "":
			outcome = Duplicate
			return nil
		case m.action == "":
			if err := commit(ctx, rtx, nil, func(p redis.Pipeliner) {
				p.HSet(ctx, key, fieldSaga, id.SagaID, fieldCompensation, markNull)
			}); err != nil {
				return err
			}
			outcome = Null
			return nil
		}
		tx := &Tx{rtx: rtx}
		if err := fn(ctx, tx, m.result); err != nil {
			return err
		}
		if err := commit(ctx, rtx, tx.writes, func(p redis.Pipeliner) {
			// The result has served its purpose: the undo just used it, and
			// the compensation mark forbids the action, so nothing will
			// return it again. It is business data (a localization's poses,
			// a map version), which a compensated mission must not leave
			// behind.
			p.HDel(ctx, key, fieldResult)
			p.HSet(ctx, key, fieldCompensation, markDone)
			p.HIncrBy(ctx, EffectsKey(id.Key), id.Step+":compensation", 1)
		}); err != nil {
			return err
		}
		outcome = Applied
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("barrier compensation %s/%s: %w", id.Key, id.Step, err)
	}
	return outcome, nil
}

// marks are a barrier's fields as read under WATCH.
type marks struct {
	saga, action, compensation string
	result                     []byte
}

// transact runs decide on the barrier's current marks inside WATCH on the
// barrier key, starting again whenever a watched key changed before the
// commit.
func (b *Barrier) transact(ctx context.Context, id ID, decide func(rtx *redis.Tx, m marks) error) error {
	key := Key(id.Key, id.Step)
	watched := []string{key}
	if b.owner != nil {
		watched = append(watched, b.owner(id.Key))
	}
	for n := 1; ; n++ {
		err := b.rdb.Watch(ctx, func(rtx *redis.Tx) error {
			var hm *redis.SliceCmd
			var owner *redis.DurationCmd
			if _, err := rtx.Pipelined(ctx, func(p redis.Pipeliner) error {
				hm = p.HMGet(ctx, key, fieldSaga, fieldAction, fieldCompensation, fieldResult)
				if b.owner != nil {
					owner = p.PTTL(ctx, watched[1])
				}
				return nil
			}); err != nil {
				return err
			}
			// PTTL: -2 missing, -1 no expiry (a saga in progress, or failed
			// and waiting for an operator), else ended and retained.
			if owner != nil && owner.Val() != -1 {
				return ErrOwnerGone
			}
			vals := hm.Val()
			m := marks{saga: str(vals[0]), action: str(vals[1]), compensation: str(vals[2])}
			if r := str(vals[3]); r != "" {
				m.result = []byte(r)
			}
			if m.saga != "" && m.saga != id.SagaID {
				return fmt.Errorf("%w: stored %s, caller %s", ErrSagaMismatch, m.saga, id.SagaID)
			}
			return decide(rtx, m)
		}, watched...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
		if n == maxTxAttempts {
			return fmt.Errorf("%w after %d attempts: %w", ErrConflict, n, err)
		}
		// Full jitter spreads competitors that conflicted together.
		ceiling := min(50*time.Microsecond<<min(n, 8), 10*time.Millisecond)
		t := time.NewTimer(time.Duration(rand.Int64N(int64(ceiling) + 1)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
}

// commit executes the business writes and the barrier's own writes in one
// MULTI/EXEC; redis.TxFailedErr when a watched key changed.
func commit(ctx context.Context, rtx *redis.Tx, writes []func(redis.Pipeliner), mark func(redis.Pipeliner)) error {
	_, err := rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range writes {
			w(p)
		}
		mark(p)
		return nil
	})
	return err
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
