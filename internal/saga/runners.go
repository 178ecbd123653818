package saga

import (
	"context"
	"fmt"
)

// runner is one Run in progress.
type runner struct {
	key string
	// ctx bounds the forward path: it ends when the caller of Run cancels,
	// when Cancel is called, and when haltCtx ends. The mission deadline is
	// added by drive.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// haltCtx bounds everything, compensations included: it ends only when
	// this engine must stop driving the saga without another write (Handoff,
	// a lease lost to another engine).
	haltCtx context.Context
	halt    context.CancelCauseFunc
	// stopCaller detaches the caller's context from ctx.
	stopCaller func() bool
	done       chan struct{}
	// epoch is the epoch the run holds the saga at, 0 until it is known;
	// halted stops renewing its lease. Both are guarded by Engine.mu.
	epoch  int64
	halted bool
}

// awaitRun waits for the run r (nil: none) to return.
func awaitRun(ctx context.Context, r *runner) error {
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for its run to end: %w", context.Cause(ctx))
	}
}

// register reserves key for a run of this engine and builds the run's
// contexts from ctx. With takeStarted it also takes the saga's Start (or
// Resume), if any — even when the engine is closed, since that saga is
// already this engine's to drive; without, a started saga counts as running.
func (e *Engine) register(ctx context.Context, key string, takeStarted bool) (*runner, *startedSaga, error) {
	haltCtx, halt := context.WithCancelCause(context.WithoutCancel(ctx))
	fwd, cancel := context.WithCancelCause(haltCtx)
	r := &runner{key: key, ctx: fwd, cancel: cancel, haltCtx: haltCtx, halt: halt, done: make(chan struct{})}
	r.stopCaller = context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })

	e.mu.Lock()
	defer e.mu.Unlock()
	for takeStarted && e.started[key] != nil && e.running[key] != nil && ctx.Err() == nil {
		// A recovery scan's claim holds the key: it found the index entry
		// of an earlier create of the mission that failed (its Start was
		// retried), before this Start created it. Its claim finds the lease
		// live and lets go; refusing here would leave the started saga to
		// the heartbeat, renewed and never driven.
		other := e.running[key]
		e.mu.Unlock()
		select {
		case <-other.done:
		case <-ctx.Done():
		}
		e.mu.Lock()
	}
	s := e.started[key]
	var err error
	switch {
	case e.running[key] != nil, s != nil && !takeStarted:
		err = ErrRunning
	case s == nil && e.closed:
		err = ErrClosed
	}
	if err != nil {
		r.stop()
		return nil, nil, fmt.Errorf("run saga %s: %w", key, err)
	}
	delete(e.started, key)
	e.running[key] = r
	e.holdLocked()
	return r, s, nil
}

func (e *Engine) unregister(r *runner) {
	r.stop()
	e.mu.Lock()
	delete(e.running, r.key)
	e.releaseLocked()
	e.mu.Unlock()
	close(r.done)
}

// stop releases the run's contexts.
func (r *runner) stop() {
	r.stopCaller()
	r.cancel(nil)
	r.halt(nil)
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
