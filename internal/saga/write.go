package saga

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Create writes rec as a new saga unless a saga already exists for rec.Key, in
// which case it returns that one (created false) and writes nothing to the
// record. Before the record it indexes the mission in MissionsKey and, unless
// rec is terminal, in its active-index shard (see Store); the record gets
// its first lease from the create script. events are appended to the
// mission's stream in the same script (a saga created running, see
// Engine.Begin), and go to the sink's Committed once it succeeded; nothing
// is appended when the saga existed.
func (s *Store) Create(ctx context.Context, rec *Record, events ...Event) (created bool, existing *Record, err error) {
	return s.create(ctx, rec, nil, events)
}

// create is Create, where an existing record that ours reports as rec's own
// counts as created: rec's create landed, its reply was lost, and the
// client sent it again (go-redis sends a call whose reply timed out again,
// up to MaxRetries times), so the second reply found the saga the first
// created. Its events were appended by the first.
func (s *Store) create(ctx context.Context, rec *Record, ours func(existing *Record) bool, events []Event) (created bool, existing *Record, err error) {
	kv := rec.fields(true)
	terminal := rec.State.Terminal()
	lease, hint := "", int64(0)
	if !terminal {
		lease, hint = strconv.FormatInt(s.leaseMillis(), 10), s.hint(time.Now())
	}
	args := make([]any, 0, 3+len(kv)+16*len(events))
	args = append(args, lease, s.deadline(hint), len(kv))
	for _, v := range kv {
		args = append(args, v)
	}
	keys := []string{RecordKey(rec.Key)}
	if len(events) > 0 && s.sink != nil {
		args = s.sinkArgs(args, rec.Key, events, false)
		keys = s.keysOf(rec)
	}
	var indexed *redis.IntCmd
	index := func(p redis.Pipeliner) {
		indexed = p.ZAddNX(ctx, MissionsKey, redis.Z{Score: float64(rec.CreatedAt.UnixMilli()), Member: rec.Key})
		if !terminal {
			p.ZAdd(ctx, ActiveKey(rec.Key), redis.Z{Score: float64(hint), Member: rec.Key})
		}
	}
	cmd, err := s.indexed(ctx, index, createScript, keys, args...)
	if err == nil {
		err = cmd.Err()
	}
	if err = lateErr(err); errors.Is(err, ErrLate) && indexed != nil && indexed.Val() == 1 {
		// The mission index lists the refused create's mission, which
		// GetMission would then call expired or deleted for the
		// retention (found by a review): take back the entry it wrote.
		// The active-index entry is recovery's, as for any create that
		// failed.
		if uerr := s.do(ctx, nil, unindexScript, []string{MissionsKey}, rec.Key, rec.CreatedAt.UnixMilli(), "").Err(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("take back its mission index entry: %w", uerr))
		}
	}
	if err != nil {
		return false, nil, fmt.Errorf("create saga %s: %w", rec.Key, err)
	}
	reply, _ := cmd.Slice()
	if len(reply) > 0 {
		existing, err = recordFromReply(reply)
		if err != nil {
			return false, nil, fmt.Errorf("create saga %s: existing record: %w", rec.Key, err)
		}
		if ours == nil || !ours(existing) {
			if !terminal && existing.State.Terminal() {
				s.unindexRepeat(ctx, rec.Key, hint)
			}
			return false, existing, nil
		}
		// A cancellation may have landed between the two sends.
		rec.Cancelled, rec.CancelReason = existing.Cancelled, existing.CancelReason
	}
	if indexed == nil || indexed.Val() != 1 {
		s.claimIndex(ctx, rec)
	}
	rec.saved = nil
	rec.markSaved(kv)
	if !terminal {
		s.idx.wrote(rec.Key, hint)
	}
	if c, ok := s.sink.(Committer); ok && len(events) > 0 {
		c.Committed(events)
	}
	return true, nil, nil
}

// unindexRepeat removes the active-index entry that a create which found a
// finished saga wrote before its script (score hint), unless another write
// replaced it since: without it, every repeated start of a finished mission
// (a client's retry) would leave the mission among the active ones until
// recovery dropped the entry as stale, two lease TTLs later. A removal that
// fails waits, like a saga's own, for the store's next round trip.
func (s *Store) unindexRepeat(ctx context.Context, key string, hint int64) {
	if s.do(ctx, nil, unindexScript, []string{ActiveKey(key)}, key, hint, "").Err() != nil {
		s.idx.queue(key, hint)
	}
}

// dropActive removes saga key's active-index entry whatever its score: for
// a damaged record (ErrDamaged), which no engine can drive.
func (s *Store) dropActive(ctx context.Context, key string) error {
	if err := s.rdb.ZRem(ctx, ActiveKey(key), key).Err(); err != nil {
		return fmt.Errorf("drop damaged saga %s from the active index: %w", key, err)
	}
	return nil
}

// claimIndex sets the mission-index entry of rec, a saga just created,
// to its creation time, when its index write (ZADD NX) found an entry
// there already: a deleted saga's whose unindex has not run yet. That
// unindex (Delete's or Trim's) removes only an entry with the deleted
// saga's creation time, so it leaves this one; if it ran in between, this
// adds the entry again. It costs a round trip only in that race; a
// failure, which a crash would also cause, leaves the mission unlisted
// only if the unindex ran first.
func (s *Store) claimIndex(ctx context.Context, rec *Record) {
	_ = s.rdb.ZAdd(ctx, MissionsKey, redis.Z{Score: float64(rec.CreatedAt.UnixMilli()), Member: rec.Key}).Err()
}

// sinkArgs appends to args the sink's commands for the events of mission
// key (and, when expire, for the retention of its stream), each as its
// argument count followed by its arguments: the tail of the create and save
// scripts' arguments.
func (s *Store) sinkArgs(args []any, key string, events []Event, expire bool) []any {
	pipe := s.pipes.Get()
	defer s.pipes.Put(pipe)
	for _, e := range events {
		s.sink.Append(pipe, e)
	}
	if expire {
		s.sink.ExpireMission(pipe, key)
	}
	for _, cmd := range pipe.Cmds() {
		a := cmd.Args()
		args = append(args, len(a))
		args = append(args, a...)
	}
	return args
}

// Save writes the fields of rec that changed since it was read or last saved,
// and appends events to the mission's stream, in one round trip — only if
// the stored epoch still equals rec.Epoch; otherwise it writes nothing and
// returns ErrFenced. When rec has just become terminal the retention (or,
// without a retention TTL, the sink) expires the mission's events and the
// saga's active-index entry is removed afterwards; when a terminal rec goes
// back to compensation it is indexed again before
// the write and gets a fresh lease. Once the write succeeded, the events go
// to the sink's Committed (the firehose). After Save, rec.Cancelled and
// rec.CancelReason reflect a cancellation requested by anyone.
//
// Save is idempotent: called again with the same rec and events after an
// error — a timeout whose write may have landed — it writes nothing more if
// the first call did write, and events are appended exactly once.
func (s *Store) Save(ctx context.Context, rec *Record, events ...Event) (err error) {
	// The revision moves on only with a write that is known to have landed,
	// so a retry of this call sends the same one.
	rec.rev++
	defer func() {
		if err != nil {
			rec.rev--
		}
	}()
	kv := rec.changes()
	prev := State(rec.saved[fieldState])
	becameTerminal := rec.State.Terminal() && prev != rec.State
	activity, retain := "", ""
	var index func(redis.Pipeliner)
	hint := int64(0)
	switch {
	case becameTerminal:
		activity = "end"
		retain = s.retainArg(rec.State)
	case prev.Terminal() && !rec.State.Terminal():
		activity, retain = "reopen", "persist"
		hint = s.hint(time.Now())
		index = func(p redis.Pipeliner) {
			p.ZAdd(ctx, ActiveKey(rec.Key), redis.Z{Score: float64(hint), Member: rec.Key})
		}
	}
	args := make([]any, 0, 7+len(kv)+16*len(events))
	args = append(args, strconv.FormatInt(rec.Epoch, 10), strconv.FormatInt(rec.rev, 10), activity,
		s.leaseMillis(), s.deadline(hint), len(kv), retain)
	for _, v := range kv {
		args = append(args, v)
	}
	if s.sink != nil && (len(events) > 0 || becameTerminal) {
		// Without a retention TTL the sink expires the stream; with one,
		// the retention argument sets (or removes) the expiry of every
		// mission key, the stream included.
		args = s.sinkArgs(args, rec.Key, events, becameTerminal && retain == "")
	}
	var cmd, unindex *redis.Cmd
	score, known := s.idx.score(rec.Key)
	if activity == "end" && s.ordered && known {
		cmd, unindex, err = s.saveEnding(ctx, rec.Key, s.keysOf(rec), score, args)
	} else {
		cmd, err = s.indexed(ctx, index, saveScript, s.keysOf(rec), args...)
	}
	if err == nil {
		err = cmd.Err()
	}
	reply, _ := cmd.Slice()
	fenced, lost := false, false
	if err == nil && len(reply) >= 2 {
		ok, _ := reply[0].(int64)
		fenced, lost = ok != 1, ok == 2
	}
	if unindex != nil && (err != nil || fenced) {
		if rerr := s.reindex(ctx, rec.Key, unindex); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("save saga %s: %w", rec.Key, lateErr(err))
	}
	if len(reply) < 2 {
		return fmt.Errorf("save saga %s: unexpected reply %v", rec.Key, reply)
	}
	if lost {
		// Stop driving it: recovery claims it once the lease runs out and
		// drives it from the record Redis has.
		s.idx.forget(rec.Key)
		return fmt.Errorf("save saga %s at revision %d: the record is at revision %v, a write acknowledged before was lost (failover): %w",
			rec.Key, rec.rev, reply[1], ErrFenced)
	}
	if fenced {
		s.idx.forget(rec.Key)
		if stored, _ := reply[1].(string); stored == "" { // the script's reply when no epoch is stored
			// Without a tombstone, Redis lost the record; with one, another
			// engine took the saga over and it was deleted since.
			if deleted, terr := s.Tombstoned(ctx, rec.Key); terr == nil && !deleted {
				return &RecordGoneError{Op: fmt.Sprintf("save saga %s at epoch %d", rec.Key, rec.Epoch)}
			}
		}
		return fmt.Errorf("save saga %s at epoch %d (stored %v): %w", rec.Key, rec.Epoch, reply[1], ErrFenced)
	}
	rec.markSaved(kv)
	if len(reply) == 3 {
		cancelled, _ := reply[1].(string)
		reason, _ := reply[2].(string)
		rec.Cancelled = cancelled == "1"
		rec.CancelReason = reason
		rec.markSaved([]string{fieldCancelled, cancelled, fieldCancelReason, reason})
	}
	switch {
	case activity == "end" && unindex != nil && unindex.Err() == nil:
		s.idx.forget(rec.Key) // removed (or no longer this process's entry)
	case activity == "end":
		s.unindexEnded(ctx, rec)
	case activity == "reopen":
		s.idx.wrote(rec.Key, hint)
	}
	if c, ok := s.sink.(Committer); ok && len(events) > 0 {
		c.Committed(events)
	}
	return nil
}

// saveEnding runs the save script of a saga's ending write (args as for
// saveScript) and, behind it in the same pipelined round trip, the removal
// of the saga's active-index entry — if it still has the score this process
// wrote. Only on one Redis (Store.ordered: one connection runs the pipeline
// in order), so the removal runs after the write. It must not stay removed
// without it: the removal script first attempts a write Redis refuses when
// out of memory, like the save's, and a failed or fenced write puts the
// entry back (reindex). A fenced write's new owner re-indexed the saga when
// it claimed it (a claim rewrites the entry before its script; recovery
// after it, with a plain ZADD), so the compare-and-delete finds another
// score or the entry comes back.
//
// The write goes as EVALSHA: sending the script's 2 KB body with every
// ending (EVAL) made Redis parse and hash it, 11 of the 171 µs its scripts
// took per overhead mission (docs/performance.md). Should Redis have lost
// its scripts (a restart, SCRIPT FLUSH), the entry is put back — with a
// new score, if the removal ran — and the pair is sent again with the
// save's body, which cannot be refused so, and that score.
func (s *Store) saveEnding(ctx context.Context, key string, keys []string, score int64, args []any) (save, unindex *redis.Cmd, err error) {
	save, unindex = s.sendEnding(ctx, key, keys, score, args, false)
	if !isNoScript(save.Err()) {
		return save, unindex, nil
	}
	if err := s.reindex(ctx, key, unindex); err != nil {
		// Nothing was written: Save returns the error, and its retry
		// finds the entry wherever recovery left it.
		return save, nil, errors.Join(save.Err(), err)
	}
	if now, known := s.idx.score(key); known {
		score = now
	}
	save, unindex = s.sendEnding(ctx, key, keys, score, args, true)
	return save, unindex, nil
}

// sendEnding is one round trip of saveEnding: the script by its digest, or
// by its body when withBody. keys are the save script's (Store.keysOf).
func (s *Store) sendEnding(ctx context.Context, key string, keys []string, score int64, args []any, withBody bool) (save, unindex *redis.Cmd) {
	pipe := s.pipes.Get()
	defer s.pipes.Put(pipe)
	done := s.takeSide(ctx, pipe)
	if withBody {
		save = saveScript.Eval(ctx, pipe, keys, args...)
	} else {
		save = saveScript.EvalSha(ctx, pipe, keys, args...)
	}
	unindex = unindexScript.EvalSha(ctx, pipe, []string{ActiveKey(key)}, key, score, "")
	s.group.Send(ctx, pipe) // batched with concurrent sagas' writes when the store has a group
	done()
	return save, unindex
}

// reindex puts back the active-index entry of saga key that unindex (a
// removal behind an ending write that failed or was fenced) removed.
func (s *Store) reindex(ctx context.Context, key string, unindex *redis.Cmd) error {
	if n, err := unindex.Int(); err != nil || n != 1 {
		return nil // nothing removed
	}
	hint := s.hint(time.Now())
	if err := s.rdb.ZAdd(context.WithoutCancel(ctx), ActiveKey(key), redis.Z{Score: float64(hint), Member: key}).Err(); err != nil {
		return fmt.Errorf("put back the active-index entry: %w", err)
	}
	s.idx.wrote(key, hint)
	return nil
}

// unindexEnded removes the active-index entry of saga rec, which this
// process indexed and which just ended, at once (with the waiting global
// writes): exactly the entry this process wrote, so a fresher one another
// engine wrote for a reopened saga stays. An entry whose score is unknown
// here, or whose removal fails, is left to recovery (see Store).
//
// On a Cluster the same round trip writes rec's mission-index entry again
// (ZADD NX: one there stays as it is). The create wrote it on another node
// than the record, and replication is asynchronous: a master SIGKILLed
// right after acknowledging it can be failed over to a replica that never
// had it (make chaos-cluster lost a capacity charge that way), and the
// mission would stay out of ListMissions for good. An entry written again
// for a mission deleted meanwhile is one ListMissions skips and Trim
// drops, as any whose record is gone.
func (s *Store) unindexEnded(ctx context.Context, rec *Record) {
	s.idx.ended(rec.Key)
	if s.ordered {
		s.flush(ctx)
		return
	}
	pipe := s.rdb.Pipeline()
	done := s.takeSide(ctx, pipe)
	pipe.ZAddNX(ctx, MissionsKey, redis.Z{Score: float64(rec.CreatedAt.UnixMilli()), Member: rec.Key})
	_, _ = pipe.Exec(ctx)
	done()
}

// retainArg is the save script's retention argument for a saga that just
// became terminal in state st: a Completed or Compensated saga's keys expire
// after the retention TTL (none: they stay), a Failed saga's keys lose any
// expiry (it waits for an operator).
func (s *Store) retainArg(st State) string {
	switch {
	case st == Failed:
		return "persist"
	case s.retention.TTL > 0:
		return strconv.FormatInt(max(s.retention.TTL.Milliseconds(), 1), 10)
	}
	return ""
}
