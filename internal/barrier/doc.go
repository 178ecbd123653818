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
// marks: saga, action, compensation, result. Each call runs in one optimistic
// transaction on it:
//
//  1. WATCH the barrier key, then read the marks;
//  2. decide from the marks alone (duplicate, forbidden, null, or run);
//  3. if it must run, call the service's callback, which may WATCH and read
//     business keys and queues its writes;
//  4. MULTI, the business writes, the new mark, the effect count, EXEC.
//
// EXEC commits only if no watched key changed since it was watched, and then
// commits every queued command together, so a mark is set if and only if its
// effect is applied, and each decision was taken on the marks as they still
// are at the commit. If EXEC fails (redis.TxFailedErr) the whole call starts
// again from step 1. Marks are only ever added, never removed, so the states
// are: none → action → action+compensation, or none → compensation(null).
// (The action's result, not a mark, is deleted by the compensation that
// undoes it: nothing may return it any more, and it is business data — a
// localization's poses — that a compensated mission must not leave behind.)
// Hence for a compensation racing its action, exactly one of two histories
// commits: the action first (effect), then the compensation sees the action
// and undoes it; or the compensation first (null), then the action sees the
// compensation and is forbidden. A compensation recorded with the action's
// effect left behind would need the compensation to commit "null" after the
// action committed, which its WATCH forbids.
//
// Every effect actually applied also increments EffectsKey(mission) field
// "<step>:action" or "<step>:compensation" in the same EXEC, so chaos tests
// can check that nothing took effect twice.
//
// # Using it in a service
//
// Do the expensive pure work (scan matching, grid fusion) before the call or
// in the callback; keep the callback a function of what it reads through the
// Tx, because it runs again when the transaction conflicts. Examples:
//
//	// mapping.AllocateMap: budget check and allocation, atomically.
//	res, outcome, err := b.Action(ctx, id, func(ctx context.Context, tx *barrier.Tx) ([]byte, error) {
//		if err := tx.Watch(ctx, capacityKey); err != nil {
//			return nil, err
//		}
//		used, err := tx.Reader().Get(ctx, capacityKey).Int64()
//		if err != nil && !errors.Is(err, redis.Nil) {
//			return nil, err
//		}
//		if used+cells > budget {
//			return nil, errCapacityExhausted // nothing written; the saga compensates
//		}
//		tx.Write(func(p redis.Pipeliner) {
//			p.IncrBy(ctx, capacityKey, cells)
//			p.HSet(ctx, mapKey, "map_id", mapID, "meta", meta, "cells", cells, "current", 1, "v1", grid)
//		})
//		return respBytes, nil
//	})
//
//	// mapping.ReleaseMap: undo with what the action stored.
//	outcome, err := b.Compensate(ctx, id, func(ctx context.Context, tx *barrier.Tx, res []byte) error {
//		cells := cellsFrom(res)
//		tx.Write(func(p redis.Pipeliner) {
//			p.DecrBy(ctx, capacityKey, cells)
//			p.Del(ctx, mapKey)
//		})
//		return nil
//	})
//
// Localization writes poses with HSET in tx.Write; merge watches and reads the
// map hash for the current version, writes "v<N+1>" and "current" in
// tx.Write, returns N+1 in its result, and RevertMerge deletes the version
// named by that result and sets current back.
//
// The capacity counter is a global key: on a single Redis primary the
// transaction spans it and the mission's keys freely; on a Redis Cluster it
// would be in another slot and MULTI/EXEC would be refused, so capacity would
// have to become per-slot budgets first.
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
