package saga

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Leases, seen from the engine that holds them.
//
// Every saga the engine drives (or has started and not yet run) is held under
// a lease in its record. One heartbeat goroutine per engine renews them all
// every LeaseTTL/3 with one pipeline of one script per saga (Store.renew;
// a Cluster client splits it per node), so a lease survives two missed
// renewals and costs one round trip per engine and tick, not per saga.
// The goroutine starts with the first saga the engine holds and ends at the
// first tick that finds it holding none (or when Drain or Handoff end it), so
// an idle engine runs no goroutine and a busy one does not start one per
// saga.
//
// The renewal checks each saga's epoch: a saga another engine took over (its
// lease had expired: this process was paused, or cut off from Redis) is
// reported lost and its run is halted at once — no further write, its
// in-flight step abandoned to the new owner, which repeats it safely thanks
// to the services' barrier. It also reports a cancellation recorded by
// another replica, which then stops the current step within one tick instead
// of at the next write.

// renewEvery is the heartbeat interval: a third of the lease, so that a
// lease survives two missed renewals.
func (e *Engine) renewEvery() time.Duration { return max(e.store.leaseTTL/3, time.Millisecond) }

// holdLocked starts the heartbeat unless it runs: the engine now holds a
// saga. Called with e.mu held.
func (e *Engine) holdLocked() {
	if e.beat == nil {
		b := &beat{stop: make(chan struct{}), done: make(chan struct{})}
		e.beat = b
		go e.heartbeat(b)
	}
}

// releaseLocked wakes Drain once the engine holds no saga any more. Called
// with e.mu held.
func (e *Engine) releaseLocked() {
	if e.idle != nil && len(e.running) == 0 && len(e.started) == 0 {
		close(e.idle)
		e.idle = nil
	}
}

// beat is a running heartbeat goroutine.
type beat struct {
	stop chan struct{} // closed to end it
	done chan struct{} // closed when it has ended
}

func (e *Engine) heartbeat(b *beat) {
	defer close(b.done)
	t := time.NewTicker(e.renewEvery())
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		e.mu.Lock()
		if e.beat != b {
			e.mu.Unlock()
			return // stopped: the tick raced the stop
		}
		if len(e.running) == 0 && len(e.started) == 0 {
			e.beat = nil
			e.mu.Unlock()
			// The index removals of the sagas that just ended need not wait
			// for this engine's next saga.
			ctx, cancel := context.WithTimeout(context.Background(), e.renewEvery())
			e.store.flush(ctx)
			cancel()
			return
		}
		e.mu.Unlock()
		e.renew()
	}
}

// stopHeartbeat ends the heartbeat goroutine, if any, and waits until it
// has ended, so that no renewal is in flight when it returns.
func (e *Engine) stopHeartbeat() {
	e.mu.Lock()
	b := e.beat
	e.beat = nil
	e.mu.Unlock()
	if b != nil {
		close(b.stop)
		<-b.done
	}
}

// renew extends the leases of every saga the engine holds and acts on what
// the renewal found.
func (e *Engine) renew() {
	leases := e.heldLeases()
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.renewEvery())
	defer cancel()
	notes, err := e.store.renew(ctx, leases)
	if err != nil {
		// The next tick tries again; two more misses and the leases expire,
		// which is what they are for.
		e.log.LogAttrs(ctx, slog.LevelWarn, "saga lease renewal failed",
			slog.Int("sagas", len(leases)), slog.String("error", err.Error()))
		return
	}
	for _, n := range notes {
		e.act(ctx, leases[n.i], n)
	}
}

// heldLeases is the sagas whose leases the engine must renew: those it runs
// at a known epoch and has not halted, and those started and not yet run.
func (e *Engine) heldLeases() []lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]lease, 0, len(e.running)+len(e.started))
	for k, r := range e.running {
		if r.epoch > 0 && !r.halted {
			out = append(out, lease{key: k, epoch: r.epoch})
		}
	}
	for k, s := range e.started {
		if !s.lost {
			out = append(out, lease{key: k, epoch: s.rec.Epoch})
		}
	}
	return out
}

// act applies what a renewal found out about lease l.
func (e *Engine) act(ctx context.Context, l lease, n leaseNote) {
	e.mu.Lock()
	r := e.running[l.key]
	if r != nil && r.epoch != l.epoch {
		r = nil // the run the renewal saw has ended; another one holds the key
	}
	if n.lost {
		if r != nil {
			r.halted = true
		}
		if s := e.started[l.key]; s != nil && s.rec.Epoch == l.epoch {
			s.lost = true
		}
	} else if s := e.started[l.key]; s != nil && s.rec.Epoch == l.epoch {
		// A cancellation recorded elsewhere while the saga waits for Run:
		// Run must stop before its first call, as after Engine.Cancel here
		// (a begun saga has no write before that call to learn it from).
		s.rec.Cancelled, s.rec.CancelReason = true, n.cancelReason
	}
	e.mu.Unlock()
	attrs := []slog.Attr{slog.String("mission_id", l.key), slog.Int64("epoch", l.epoch)}
	switch {
	case n.gone && !e.deletedSince(ctx, l.key):
		e.metrics.leasesLost.Add(ctx, 1, e.metrics.defAttr)
		e.log.LogAttrs(ctx, slog.LevelError, "saga record gone while the saga ran: Redis lost it (restarted without persistence, flushed, or failed over); stopping", attrs...)
		if r != nil {
			r.halt(&RecordGoneError{Op: fmt.Sprintf("renew the lease of %s at epoch %d", l.key, l.epoch)})
		}
	case n.lost:
		e.metrics.leasesLost.Add(ctx, 1, e.metrics.defAttr)
		e.log.LogAttrs(ctx, slog.LevelWarn, "saga lease lost to another engine: stopping without further writes", attrs...)
		if r != nil {
			r.halt(fmt.Errorf("lease of %s at epoch %d lost: %w", l.key, l.epoch, ErrFenced))
		}
	case r != nil:
		r.cancel(&cancelError{reason: n.cancelReason})
	}
}

// deletedSince reports whether the record of key, found gone by a
// renewal, went the ordinary way: another engine took the saga over and
// finished it, and it was deleted (or expired) since, leaving a tombstone.
// A failed read counts as not deleted: the run is fenced either way, only
// the log line differs.
func (e *Engine) deletedSince(ctx context.Context, key string) bool {
	gone, err := e.store.Tombstoned(ctx, key)
	return err == nil && gone
}

// Drain closes the engine to new sagas — Start, Resume, Recover, Run of a
// saga it did not start and Cancel's teardowns fail with ErrClosed, while a
// started saga may still be Run — and waits until it drives no saga any
// more, or ctx ends. Sagas still running then are left running: call
// Handoff to stop them.
func (e *Engine) Drain(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	held := len(e.running) + len(e.started)
	if held == 0 {
		e.mu.Unlock()
		e.stopHeartbeat()
		e.recovering.Wait()
		return nil
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
	}
	idle := e.idle
	e.mu.Unlock()
	select {
	case <-idle:
		e.stopHeartbeat()
		e.recovering.Wait()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain sagas: %d still driven: %w", e.held(), context.Cause(ctx))
	}
}

func (e *Engine) held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running) + len(e.started)
}

// Handoff closes the engine and stops driving every saga it holds, at once
// and without compensating any: each run stops before its next write (Run
// returns ErrHandedOff), its in-flight step or compensation is abandoned —
// the next owner repeats it, which the services' barrier makes safe — and,
// once the runs have returned, the leases are released: they expire now, so
// another engine's Recover resumes the sagas at its next scan instead of
// after the lease TTL. Handoff returns how many leases it released. If ctx
// ends before the runs have returned, nothing is released: the leases then
// expire as after a crash.
func (e *Engine) Handoff(ctx context.Context) (int, error) {
	e.mu.Lock()
	e.closed = true
	runners := make([]*runner, 0, len(e.running))
	for _, r := range e.running {
		r.halted = true
		runners = append(runners, r)
	}
	leases := make([]lease, 0, len(e.running)+len(e.started))
	spans := make([]trace.Span, 0, len(e.started))
	for k, s := range e.started {
		if !s.lost {
			leases = append(leases, lease{key: k, epoch: s.rec.Epoch})
		}
		spans = append(spans, s.span)
		delete(e.started, k)
	}
	e.releaseLocked()
	e.mu.Unlock()

	for _, sp := range spans {
		sp.SetAttributes(attribute.Bool("saga.handed_off", true))
		sp.End()
	}
	for _, r := range runners {
		r.halt(ErrHandedOff)
	}
	for _, r := range runners {
		select {
		case <-r.done:
		case <-ctx.Done():
			return 0, fmt.Errorf("hand off sagas: waiting for the run of %s to stop: %w", r.key, context.Cause(ctx))
		}
		// Written by drive before done was closed.
		if r.epoch > 0 {
			leases = append(leases, lease{key: r.key, epoch: r.epoch})
		}
	}
	// A renewal that listed these sagas before they halted must land before
	// the release, not after it.
	e.stopHeartbeat()
	n, err := e.store.release(ctx, leases)
	e.recovering.Wait()
	if err != nil {
		return 0, fmt.Errorf("hand off sagas: %w (the %d stopped sagas are resumed elsewhere once their leases expire)", err, len(leases))
	}
	e.metrics.handedOff.Add(ctx, int64(n), e.metrics.defAttr)
	if n > 0 {
		e.log.LogAttrs(ctx, slog.LevelInfo, "sagas handed off: leases released for recovery elsewhere", slog.Int("sagas", n))
	}
	return n, nil
}
