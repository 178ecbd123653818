// Package saga is a generic, durable saga engine on Redis: it runs a sequence
// of steps and, when one fails for good or the saga is cancelled, runs the
// compensations of every attempted step in reverse order. It knows nothing of
// gRPC or protobuf; the orchestrator supplies the step functions, the error
// classifier and the error describer.
//
// # Reading the engine
//
// The engine is the saga loop of the Temporal sample read once more, with two
// differences that matter for a distributed system:
//
//   - the step that failed (or timed out, or was interrupted) is compensated
//     too, not only the steps that succeeded: its outcome is unknown — the
//     reply may have been lost after the effect committed — and the services'
//     barrier (internal/barrier) makes a compensation of an action that never
//     ran a harmless no-op;
//   - the loop's state lives in Redis (Record), written before and after every
//     step attempt, so a saga survives its process.
//
// The forward path (execution.forward) runs each step with a per-attempt
// deadline (Policy.AttemptTimeout, or the step's entry in
// Policy.StepTimeouts); a failed attempt is classified (Definition.Classify):
// Retry is retried for as long as Policy.RetryBudget allows (time, not a
// count: a restarting service is down for seconds however many attempts fit
// in them), RetryFew up to Policy.FewAttempts more times, Fail not at all;
// back-off is exponential with full jitter, capped at Policy.MaxBackoff. A
// step that gives up because its attempts kept running past their deadline
// records the reason STEP_DEADLINE_EXCEEDED, naming the step, its deadline
// and its attempts; one that gives up after transient errors without a
// reason of their own (its service unreachable) records
// RETRY_BUDGET_EXHAUSTED, naming the step, the budget and the last error.
// Then the backward path (execution.compensate) runs on
// context.WithoutCancel, each compensation retried for
// Policy.CompensationRetryBudget on transient errors (default 10 minutes) or
// Policy.CompensationFewAttempts attempts on others; past that bound the
// saga is Failed — an operator's problem, never silently dropped.
//
// # Durability and fencing
//
// Engine.Start creates the record (idempotent on the mission key) and
// Engine.Run drives it; Engine.Begin is Start for a saga run at once: it
// creates the record Running, its first step's first attempt and its
// mission.started written by the create. Run first claims the saga —
// increments its epoch and names itself owner — unless it continues a Start
// or Begin of the same engine, which created the record already owned at
// epoch 1. Every later write is one
// EVALSHA (Store.Save) that compares the stored epoch with the record's and
// writes nothing on a mismatch, so an engine that lost the saga to another
// (a replica resuming it after a lease expired, say) learns it at its next
// write (ErrFenced) and stops, having written no event either: the events of
// a transition are written by the same script as the record change. A write
// whose reply is lost (a timeout) is sent again; the record's revision, which
// every write moves on by one, lets the script recognise a write that
// already landed and skip it, so no event is ever appended twice.
//
// Once a step is compensated its output is deleted from the record, in the
// write that records the compensation: the output (a map id, agent poses) is
// business data that a compensated saga must not keep.
//
// # Leases and recovery
//
// Ownership is a lease, held in the saga's record (expiry on the Redis
// server's clock). Every unfinished saga is also in the active-lease index —
// ActiveShards sorted sets, ActiveKey(mission) — scored by where recovery
// looks (see Store for the order of the writes that keep the index a
// superset of the unfinished sagas): Create gives it its first lease (so a
// saga whose creator dies before Run is recovered too), and every claim a
// fresh one. While an engine drives sagas, one heartbeat goroutine renews
// all their leases every LeaseTTL/3 in one pipeline of one script per saga
// (lease.go), each checking its saga's epoch: a saga taken over by another
// engine is reported lost, and its run is halted at once — no compensation,
// no further write — rather than at its next write; a cancellation recorded
// by another replica is reported too, and stops the current step.
//
// Engine.Recover scans every shard of the index every interval for entries
// whose score passed and claims each saga atomically, only if its record's
// lease expired and it is unfinished (epoch+1, a fresh
// lease), so that exactly one engine resumes it. A resumed saga (a Run on a
// Running or Compensating record) re-attempts its current step — safe
// because step services are idempotent through the barrier — or carries on
// compensating. Its mission.started event says "resumed by <owner>, epoch
// <N>" (MessageResumedPrefix) and, from recovery, how long the lease had been
// expired; its mission span is a child of the stored traceparent, so the
// trace id stays the mission's. An owner killed at time k is thus replaced by
// k + LeaseTTL + the scan interval: with the defaults (3s, 500ms), 3.5s.
//
// Engine.Drain closes an engine to new sagas and waits for its runs;
// Engine.Handoff stops the rest without a write and releases their leases
// (they expire now), so that another engine resumes them at its next scan
// instead of after the lease TTL — a rolling deploy does not wait for leases
// to expire, and does not compensate the missions it interrupts.
//
// Engine.Resume reopens a Failed saga — its compensation exhausted its
// attempts — for another round: the failed compensation gets a fresh budget,
// the saga is Compensating again under a new epoch and lease, and Run (or
// recovery, should the engine die) carries the compensation on.
//
// # Retention
//
// Store.WithRetention names the keys a mission owns besides its record and
// how long they outlive its end: the Save that records Completed or
// Compensated sets every one of them to expire after the retention, the one
// that records Failed (an operator must act) and every reopening (a
// teardown, a resumed compensation) remove any expiry, all inside the
// fenced script, so a saga an engine drives never loses a key. Store.Delete
// removes a finished mission now; Store.Trim is the janitor of the global
// mission index, which no per-mission script touches; Store.Vanished tells
// an expired or deleted mission from one that never existed.
//
// # Cancellation
//
// Engine.Cancel records the request in the record (not fenced: any replica may
// ask) and, if this process runs the saga, cancels its current step's context.
// A running saga compensates; a completed saga is torn down by Cancel itself;
// other states are left alone. A cancellation requested on another replica is
// seen by the owner at its next lease renewal or in the reply of its next
// write, whichever comes first — for a begun saga not yet run, the write
// after its first step: cancelled in that window (shorter than a renewal
// interval), the first step is called, then compensated.
//
// # Round trips
//
// A saga of n steps that succeeds costs n+1 round trips when Engine.Begin
// creates it (the create records the first step's start), n+2 after
// Engine.Start (Create, then one write before the first step); then one
// write per step that both records its outcome and starts the next one (the
// last one completes the saga) — no claim when Run follows Begin or Start
// on the same engine. A resumed run adds one claim. Each retry
// and each compensation attempt adds one write (a failed compensation attempt
// two: its failure is written before the back-off). No write is ever split
// into several round trips, and no JSON is involved: records are flat hashes.
// Leases add nothing per transition: Create and the claims set them in their
// own scripts, and the renewal is one round trip per engine and LeaseTTL/3,
// whatever the number of sagas.
package saga
