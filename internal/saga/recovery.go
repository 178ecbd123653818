package saga

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// RecoveryOptions tune Engine.Recover. Zero fields take the defaults.
type RecoveryOptions struct {
	// Interval is the time between two scans for expired leases (default
	// 500ms). An orphaned saga is resumed at most LeaseTTL + Interval (plus
	// a round trip) after its owner's last renewal.
	Interval time.Duration
	// Batch bounds the sagas one scan claims (default 100); the rest wait
	// for the next scan, or for another engine.
	Batch int
	// MaxSagas stops claiming while the engine drives this many sagas
	// (default 1000), so that a replica takes over no more than it can run
	// and leaves the rest to its peers.
	MaxSagas int
}

func (o RecoveryOptions) withDefaults() RecoveryOptions {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.MaxSagas <= 0 {
		o.MaxSagas = 1000
	}
	return o
}

// Recover resumes, until ctx ends, the sagas whose lease expired — their
// owner died, hung or lost Redis — and those another engine handed off. It
// scans at once and then every Interval. Each expired saga is claimed
// atomically, only if its lease is still expired (epoch+1, this engine the
// owner, a fresh lease), so that of several engines recovering at once
// exactly one resumes it; sagas this engine already drives are skipped. A
// claimed saga is driven as by Run, in a goroutine of the engine and on a
// context no caller cancels: stopping Recover does not stop the sagas it
// resumed — Drain and Handoff do.
//
// Each resumption is logged ("saga recovered", with the previous owner and
// how long its lease had been expired) and measured
// (slammesh.saga.recovery.delay): the time from an owner's death to the
// resumption of its sagas is at most the lease TTL plus that delay, which
// Interval bounds. Its mission.started event says "resumed by <owner>, epoch
// <N>, lease of <previous owner> expired <d> ago".
func (e *Engine) Recover(ctx context.Context, opts RecoveryOptions) {
	opts = opts.withDefaults()
	if n, err := e.store.migrateLegacyIndex(ctx); err != nil {
		e.log.LogAttrs(ctx, slog.LevelWarn, "moving the unsharded active-lease set into its shards failed; retried at the next start",
			slog.String("error", err.Error()))
	} else if n > 0 {
		e.log.LogAttrs(ctx, slog.LevelInfo, "unsharded active-lease set moved into its shards", slog.Int("sagas", n))
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		if _, err := e.recoverOnce(ctx, opts); err != nil && ctx.Err() == nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "saga recovery scan failed", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recoverOnce is one scan: it claims the expired sagas it has room for and
// starts driving them. It returns how many it resumed.
func (e *Engine) recoverOnce(ctx context.Context, opts RecoveryOptions) (int, error) {
	// Index removals that failed (Redis, or the shard's Cluster node, was
	// unreachable when a saga ended) are sent again at every scan, so that
	// an idle engine does not leave them to the recovery of stale entries.
	e.store.flush(ctx)
	e.mu.Lock()
	room := opts.MaxSagas - len(e.running) - len(e.started)
	closed := e.closed
	e.mu.Unlock()
	if closed || room <= 0 {
		return 0, nil
	}
	// Shards that failed are reported; the entries of the others are
	// recovered all the same.
	entries, scanErr := e.store.expired(ctx, min(opts.Batch, room))
	// The resumed runs, and the claims that start them, must not end with
	// the scan: a claim that landed but whose saga is not driven would
	// strand the saga for a lease TTL.
	runCtx := context.WithoutCancel(ctx)
	n := 0
	errs := []error{scanErr}
	for _, entry := range entries {
		key := entry.key
		r, _, err := e.register(runCtx, key, false)
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil {
			// This engine drives it already and its renewal is late: the
			// next renewal extends the lease.
			continue
		}
		claimCtx, cancel := context.WithTimeout(runCtx, e.store.leaseTTL)
		c, err := e.store.recoverClaim(claimCtx, entry, e.owner, e.now())
		cancel()
		if errors.Is(err, ErrDamaged) {
			// It can never be driven: claiming it again every lease TTL
			// would only log this again.
			e.log.ErrorContext(ctx, "saga record damaged: recovery drops it from the active index; it waits for an operator (docs/architecture.md, \"Damaged records\")",
				slog.String("mission_id", key), slog.String("error", err.Error()))
			err = e.store.dropActive(runCtx, key)
		}
		if err != nil || c == nil {
			// Renewed, claimed by another engine or finished since the scan.
			e.unregister(r)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		n++
		e.recovering.Add(1)
		go func() {
			defer e.recovering.Done()
			e.resumeRecovered(runCtx, r, c)
		}()
	}
	return n, errors.Join(errs...)
}

// resumeRecovered drives a saga claimed by recovery, which r holds.
func (e *Engine) resumeRecovered(ctx context.Context, r *runner, c *recovered) {
	defer e.unregister(r)
	rec := c.rec
	how := resumedBy(e.owner, rec.Epoch) + ", lease of " + c.prevOwner + " expired " + c.expiredFor.String() + " ago"
	span := e.resumeSpan(ctx, rec, how)
	spanCtx := trace.ContextWithSpan(ctx, span)
	e.metrics.recovered.Add(spanCtx, 1, e.metrics.defAttr)
	e.metrics.recoveryDelay.Record(spanCtx, c.expiredFor.Seconds(), e.metrics.defAttr)
	e.log.LogAttrs(spanCtx, slog.LevelInfo, "saga recovered",
		slog.String("mission_id", rec.Key), slog.String("saga_id", rec.SagaID),
		slog.String("state", string(rec.State)), slog.String("previous_owner", c.prevOwner),
		slog.Int64("epoch", rec.Epoch), slog.Int64("lease_expired_ms", c.expiredFor.Milliseconds()))
	// drive logs why a run stopped early; the saga is then someone else's.
	_, _ = e.drive(r, rec, span, how, false)
}
