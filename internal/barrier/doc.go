// Package barrier is the sub-transaction barrier of DTM, done on Redis: it
// makes a saga step's action and compensation safe against the three faults
// of a network between an orchestrator and a service.
//
// # The three faults
//
//   - Duplicate action: the orchestrator retries an action whose first
//     attempt committed but whose reply was lost. The barrier finds the
//     action mark, does nothing, and returns the result stored by the first
//     attempt (Outcome Duplicate) — no second effect.
//   - Null compensation: the orchestrator compensates a step whose action
//     never committed (it failed, timed out before reaching the service, or
//     is still in flight). The barrier finds no action mark, runs nothing,
//     succeeds (Outcome Null) and records the compensation as "null", which
//     forbids the action from now on.
//   - Hanging action: the action arrives after its compensation (a request
//     delayed in the network, or a retry racing the saga's rollback). The
//     barrier finds the compensation mark and rejects it with
//     ErrActionForbidden — no effect that nothing would ever undo. An
//     action after a compensation is rejected even if it had committed
//     before: its effect was undone, so its old result would be a lie.
//
// A compensation that is itself retried finds its own mark and does nothing
// (Outcome Duplicate): one undo per action.
//
// # Atomicity
//
// The barrier of (mission, step) is one hash, Key(mission, step), holding the
// marks: saga, action, compensation, result. Each call is ONE Lua script on
// the mission's keys (script.go), which Redis runs atomically — no other
// command interleaves with it — so reading the marks, deciding and writing
// are one indivisible step:
//
//  1. check the owner key (WithOwner) and the saga id;
//  2. decide from the marks alone (duplicate, forbidden, null, or run);
//  3. if it must run, check the plan's preconditions (Tx.Expect), then apply
//     the plan's business writes, the new mark and the effect count, and,
//     for an action, the plan's announcements (the step's progress events
//     on the mission stream).
//
// The service does its work — pure computation, and any reads of other data
// it needs — before the call, and hands the barrier a plan (Tx): the writes,
// recorded from a go-redis pipeline that is never executed and replayed by
// the script, and the preconditions the plan rests on. Where the old
// optimistic transaction WATCHed a business key (merge: the map's current
// version), the plan now states the value it read (Tx.Expect); if it changed,
// the script writes nothing and answers "stale", and the work is redone on
// fresh reads. So a mark is set if and only if its effect is applied, and
// every decision is taken on the marks and business values as they are at
// the commit. Marks are only ever added, never removed, so the states are:
// none → action → action+compensation, or none → compensation(null). (The
// action's result, not a mark, is deleted by the compensation that undoes
// it: nothing may return it any more, and it is business data — a
// localization's poses — that a compensated mission must not leave
// behind.) Hence for a compensation racing its action, exactly one of two
// histories commits, in the order Redis ran the two scripts: the action
// first (effect), then the compensation sees the action and undoes it; or
// the compensation first (null), then the action sees the compensation and
// is forbidden. A compensation recorded "null" with the action's effect left
// behind would need the two scripts to interleave, which Redis never does.
//
// Round trips: Commit — the service's path — is one script, one round trip,
// whatever the outcome. Action (a callback that only runs when the action
// must) takes a look first (one script that only decides) and, when it
// runs, the commit: two. Compensate takes one for a null or repeated
// compensation (the look marks a null compensation itself) and two when it
// undoes (the look fetches the result the undo needs). Only keys of the
// mission's slot may appear in a plan: global keys (the mapping capacity,
// the firehose) are written by separate, idempotent commands, before or
// after the call (services/mapping: a capacity reservation before; the
// step interceptor: the firehose copies after).
//
// Every effect actually applied also increments EffectsKey(mission) field
// "<step>:action" or "<step>:compensation" in the same script, so chaos
// tests can check that nothing took effect twice. (As with MULTI/EXEC, Redis
// does not roll back a script whose command fails midway — a WRONGTYPE on a
// business key — so the mark is written last: such a failure leaves the
// step unmarked, to be retried.)
//
// # Using it in a service
//
// Do the expensive pure work (scan matching, grid fusion) before the call;
// the plan is data. Examples:
//
//	// localization.LocalizeAgents: poses, with the action mark.
//	tx := b.NewTx()
//	tx.Write(func(p redis.Pipeliner) { p.HSet(ctx, posesKey, fields...) })
//	stored, outcome, err := b.Commit(ctx, id, tx, respBytes) // Duplicate: stored is the first result
//
//	// merge.MergeMaps: a new version, provided the map is still at the
//	// version fused onto; ErrStale means fuse again on the new version.
//	tx := b.NewTx()
//	mapstore.ExpectHead(tx, mission, mapID, base)
//	tx.Write(func(p redis.Pipeliner) { mapstore.AddVersion(ctx, p, mission, base+1, cells) })
//	_, _, err := b.Commit(ctx, id, tx, respBytes)
//
//	// mapping.ReleaseMap: undo with what the action stored.
//	outcome, err := b.Compensate(ctx, id, func(ctx context.Context, tx *barrier.Tx, res []byte) error {
//		tx.Write(func(p redis.Pipeliner) { mapstore.Delete(ctx, p, mission) })
//		return nil
//	})
//
// RevertMerge reads the map head, states it with ExpectHead, deletes the
// version named by the action's result and sets current back.
//
// # Expiry
//
// Barrier and effect keys get no expiry from the barrier: a mark that
// vanished while its saga could still act would let a hanging action
// through, and a completed mission's action marks are what a later teardown
// (CancelMission on a completed mission) needs to undo its steps. They live
// as long as the mission's saga record: the saga's end sets the retention
// of every key of the mission, barrier marks included, and a reopening
// removes it (internal/saga, Retention). With WithOwner, a call arriving
// after that end — or after the expiry or a deletion — is refused before it
// writes anything (ErrOwnerGone), so the barrier never creates a key that
// would outlive its mission; within the retention, a mission id keeps its
// one saga (another would be refused with ErrSagaMismatch).
package barrier
