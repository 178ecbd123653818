package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// execution is one Run of one saga: the record being driven and the events
// waiting for the next write.
//
// Every transition is one Save — one round trip — carrying the record change
// and its events. Where two transitions follow each other with nothing in
// between (step i succeeded, step i+1 starts; a step failed, compensation
// starts), they share one Save, so a saga of n steps that succeeds costs n+1
// writes after Start.
type execution struct {
	e    *Engine
	rec  *Record
	span trace.Span
	// ctx carries the mission span; it is cancelled by Cancel, by the caller
	// of Run, by the mission deadline and by haltCtx, and bounds only the
	// forward path.
	ctx context.Context
	// haltCtx carries the mission span too; it ends only when the engine must
	// stop driving the saga without another write (Handoff, a lost lease),
	// and bounds the compensations.
	haltCtx context.Context
	how     string
	events  []Event
	// begun: the saga was created by Engine.Begin, its mission.started and
	// its first step's first attempt written already; cleared once used.
	begun bool
}

func (x *execution) drive() error {
	if !x.begun {
		x.emit(EventMissionStarted, "", 0, x.how, Failure{})
	}
	x.logf(slog.LevelInfo, "saga "+x.how, slog.String("state", string(x.rec.State)))
	if x.rec.State == Pending || x.rec.State == Running {
		x.rec.State = Running
		if err := x.forward(); err != nil {
			return err
		}
		if x.rec.State == Completed {
			if !x.rec.Cancelled {
				return nil
			}
			// A Cancel landed while the last step ran and was seen only in the
			// reply of the write that completed the saga: tear it down.
			x.rec.State = Compensating
			x.rec.EndedAt = time.Time{}
			x.logf(slog.LevelWarn, "saga tearing down after a late cancel")
		}
	}
	if x.rec.Error.IsZero() && x.rec.Cancelled {
		// A teardown (reopened by Cancel, or just above): the cancellation is
		// why it compensates.
		x.rec.Error = cancelFailure(x.rec.CancelReason)
		x.rec.Cause = x.rec.Error
	}
	return x.compensate()
}

// halted returns why the run must stop at once, without another write
// (ErrHandedOff, or ErrFenced when the lease was lost), or nil.
func (x *execution) halted() error {
	if cause := context.Cause(x.haltCtx); cause != nil {
		return fmt.Errorf("saga %s: %w", x.rec.Key, cause)
	}
	return nil
}

// forward runs the steps from the current one. It returns nil with the record
// Completed, or with the record Compensating when a step failed for good or
// the run was stopped.
func (x *execution) forward() error {
	rec, p := x.rec, x.e.policy
	for i := rec.Current; i < len(rec.Steps); i++ {
		rec.Current = i
		sr := &rec.Steps[i]
		if sr.State == StepSucceeded {
			continue
		}
		if err := x.halted(); err != nil {
			return err
		}
		if f, stop := x.stopped(); stop {
			x.abort(f)
			return nil
		}
		if x.begun {
			// Begin recorded this attempt when it created the saga.
			x.begun = false
		} else {
			if p.MaxAttempts > 0 && sr.Attempts >= p.MaxAttempts {
				// Only a resume gets here: earlier runs used every attempt
				// and died before recording the outcome.
				f := sr.Error
				if f.IsZero() {
					f = Failure{Code: "ABORTED", Message: "attempts exhausted by earlier runs"}
				}
				x.abort(f)
				return nil
			}
			sr.Attempts++
			sr.State = StepRunning
			if err := x.save(); err != nil {
				return err
			}
		}
		// The retry budget is counted from the first attempt of this run: a
		// resumed step gets a fresh one, like a resumed compensation.
		began := time.Now()
		timedOut := 0
		for {
			if err := x.halted(); err != nil {
				return err
			}
			if f, stop := x.stopped(); stop {
				x.abort(f)
				return nil
			}
			out, expired, err := x.attempt(i)
			if herr := x.halted(); herr != nil {
				// The attempt's outcome is unknown to the record; the next
				// owner repeats it.
				return herr
			}
			if err == nil {
				sr.State = StepSucceeded
				if len(out) > 0 {
					rec.Outputs[sr.Name] = out
				}
				break
			}
			f := x.e.def.Describe(err)
			sr.Error = f
			if cause := context.Cause(x.ctx); cause != nil {
				x.abort(failureFromCause(cause))
				return nil
			}
			if expired {
				timedOut++
			}
			delay := p.backoff(sr.Attempts)
			class := x.e.def.Classify(err)
			if p.giveUp(class, sr.Attempts, time.Since(began), delay) {
				switch {
				case expired:
					f = x.deadlineFailure(sr, timedOut, time.Since(began))
					sr.Error = f
				case class == Retry && f.Reason == "" && !(p.MaxAttempts > 0 && sr.Attempts >= p.MaxAttempts):
					f = x.budgetFailure(sr, f, time.Since(began))
					sr.Error = f
				}
				x.abort(f)
				return nil
			}
			sr.Attempts++
			msg := fmt.Sprintf("attempt %d in %s after: %s", sr.Attempts, delay.Round(time.Microsecond), f.Message)
			x.emit(EventStepRetrying, sr.Name, sr.Attempts, msg, f)
			x.logf(slog.LevelWarn, "saga step retrying", slog.String("step", sr.Name),
				slog.Int("attempt", sr.Attempts), slog.String("error", f.Message))
			if err := x.save(); err != nil {
				return err
			}
			sleep(x.ctx, delay) // a stop during the wait is seen at the top of the loop
		}
	}
	rec.State = Completed
	rec.EndedAt = x.e.now()
	x.emit(EventMissionCompleted, "", 0, "", Failure{})
	if err := x.save(); err != nil {
		return err
	}
	x.e.metrics.completed.Add(x.ctx, 1, x.e.metrics.defAttr)
	x.logf(slog.LevelInfo, "saga completed")
	return nil
}

// stopped reports whether the forward path must stop, and why.
func (x *execution) stopped() (Failure, bool) {
	if x.rec.Cancelled {
		return cancelFailure(x.rec.CancelReason), true
	}
	if cause := context.Cause(x.ctx); cause != nil {
		return failureFromCause(cause), true
	}
	return Failure{}, false
}

// deadlineFailure is the failure of step sr when it gave up after its last
// attempt ran past the step's attempt deadline: timedOut of its attempts in
// this run did, over elapsed. The message says what an operator can change.
func (x *execution) deadlineFailure(sr *StepRecord, timedOut int, elapsed time.Duration) Failure {
	p := x.e.policy
	return Failure{
		Code:   CodeDeadlineExceeded,
		Reason: ReasonStepDeadlineExceeded,
		Message: fmt.Sprintf("step %s exceeded its attempt deadline of %s on %d of %d attempts (%s of its %s retry budget): "+
			"the step is slower than its deadline here; raise it (orchestrator --step-timeout %s=<duration>)",
			sr.Name, p.timeout(sr.Name), timedOut, sr.Attempts, elapsed.Round(time.Millisecond), p.RetryBudget, sr.Name),
	}
}

// attemptsWord is "1 attempt" or "n attempts".
func attemptsWord(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// budgetFailure is the failure of step sr given up after transient errors
// without a reason of their own (last is the last of them), elapsed since
// its first attempt of this run.
func (x *execution) budgetFailure(sr *StepRecord, last Failure, elapsed time.Duration) Failure {
	return Failure{
		Code:   last.Code,
		Reason: ReasonRetryBudgetExhausted,
		Message: fmt.Sprintf("step %s still failed after %s over %s, when one more would have run past its %s retry budget (orchestrator --retry-budget); last error: %s",
			sr.Name, attemptsWord(sr.Attempts), elapsed.Round(time.Millisecond), x.e.policy.RetryBudget, last.Message),
	}
}

// abort turns the saga to compensation. The transition is written with the
// first compensation's start.
func (x *execution) abort(f Failure) {
	sr := &x.rec.Steps[x.rec.Current]
	if sr.State == StepRunning {
		sr.State = StepFailed
		if sr.Error.IsZero() {
			sr.Error = f
		}
	}
	x.rec.State = Compensating
	x.rec.Error = f
	x.rec.Cause = f
	x.logf(slog.LevelWarn, "saga compensating", slog.String("step", sr.Name),
		slog.String("code", f.Code), slog.String("reason", f.Reason), slog.String("error", f.Message))
}

// compensate undoes, in reverse order, every step that was attempted —
// including one whose last attempt failed or was interrupted, since its effect
// is unknown — on a context the caller cannot cancel (only a halt stops it).
// It stops at the first compensation that exhausts its attempts and declares
// the saga Failed: the earlier steps are left for an operator, because undoing
// them before a later step is undone is what the reverse order exists to
// prevent. The attempts are counted from the step's CompBase, so that a saga
// an operator resumed gets a fresh budget.
func (x *execution) compensate() error {
	rec, p := x.rec, x.e.policy
	ctx := x.haltCtx
	for i := len(rec.Steps) - 1; i >= 0; i-- {
		sr := &rec.Steps[i]
		if sr.State == StepPending || sr.State == StepCompensated {
			continue
		}
		rec.Current = i
		if x.e.def.Steps[i].Compensate == nil {
			x.compensated(sr)
			continue
		}
		// The budget runs from the first attempt of this run: a compensation
		// an operator resumed, or another engine took over, gets a fresh one.
		began := time.Now()
		for {
			sr.CompAttempts++
			sr.State = StepCompensating
			x.emit(EventCompensationStarted, sr.Name, sr.CompAttempts, "", Failure{})
			if err := x.save(); err != nil {
				return err
			}
			_, err := x.compensateAttempt(ctx, i)
			if err == nil {
				x.compensated(sr)
				x.emit(EventCompensationCompleted, sr.Name, sr.CompAttempts, "", Failure{})
				break
			}
			if herr := x.halted(); herr != nil {
				return herr
			}
			f := x.e.def.Describe(err)
			sr.Error = f
			used := sr.CompAttempts - sr.CompBase
			delay := p.backoff(used)
			if p.giveUpCompensation(x.e.def.Classify(err), used, time.Since(began), delay) {
				return x.fail(sr, f, time.Since(began))
			}
			msg := fmt.Sprintf("retrying in %s: %s", delay.Round(time.Microsecond), f.Message)
			x.emit(EventCompensationFailed, sr.Name, sr.CompAttempts, msg, f)
			x.logf(slog.LevelWarn, "saga compensation retrying", slog.String("step", sr.Name),
				slog.Int("attempt", sr.CompAttempts), slog.String("error", f.Message))
			if err := x.save(); err != nil {
				return err
			}
			sleep(ctx, delay)
		}
	}
	rec.State = Compensated
	rec.EndedAt = x.e.now()
	x.emit(EventMissionCompensated, "", 0, rec.Error.Message, rec.Error)
	if err := x.save(); err != nil {
		return err
	}
	x.e.metrics.compensated.Add(ctx, 1, x.e.metrics.defAttr)
	x.logf(slog.LevelInfo, "saga compensated", slog.String("code", rec.Error.Code), slog.String("reason", rec.Error.Reason))
	return nil
}

// compensated records that sr is undone. Its output goes with it, in the
// same save: the compensation that needed it is over, no later compensation
// reads a later step's output, and it is the business data (a map id, agent
// poses) that an undone step must not leave behind.
func (x *execution) compensated(sr *StepRecord) {
	sr.State = StepCompensated
	delete(x.rec.Outputs, sr.Name)
}

// fail ends the saga Failed because the compensation of sr gave up.
func (x *execution) fail(sr *StepRecord, f Failure, elapsed time.Duration) error {
	rec := x.rec
	sr.State = StepCompensationFailed
	rec.State = Failed
	rec.EndedAt = x.e.now()
	// The budget, and elapsed, run from the last resume: say so, or a
	// second give-up reads as its chapter's attempts spent in its time.
	attempts := fmt.Sprintf("%s over %s", attemptsWord(sr.CompAttempts), elapsed.Round(time.Millisecond))
	if sr.CompBase > 0 {
		attempts = fmt.Sprintf("%s over %s since it was resumed (%d in all)", attemptsWord(sr.CompAttempts-sr.CompBase), elapsed.Round(time.Millisecond), sr.CompAttempts)
	}
	rec.Error = Failure{
		Code:    f.Code,
		Reason:  f.Reason,
		Message: fmt.Sprintf("compensation of %s failed after %s: %s", sr.Name, attempts, f.Message),
	}
	x.emit(EventCompensationFailed, sr.Name, sr.CompAttempts, "giving up: "+f.Message, f)
	x.emit(EventMissionFailed, "", 0, rec.Error.Message, rec.Error)
	if err := x.save(); err != nil {
		return err
	}
	x.e.metrics.failed.Add(context.WithoutCancel(x.ctx), 1, x.e.metrics.defAttr)
	x.logf(slog.LevelError, "saga failed: operator action needed", slog.String("step", sr.Name),
		slog.String("code", f.Code), slog.String("reason", f.Reason), slog.String("error", rec.Error.Message))
	return nil
}

// attempt runs one attempt of step i's action under its own span and
// deadline; expired reports that the attempt ran out of its deadline.
func (x *execution) attempt(i int) (out []byte, expired bool, err error) {
	step, sr := x.e.def.Steps[i], &x.rec.Steps[i]
	ex := &Exec{rec: x.rec, step: i, attempt: sr.Attempts}
	expired, err = x.call(x.ctx, "step ", step.Name, sr.Attempts, x.e.metrics.stepDuration, func(ctx context.Context) error {
		return step.Action(ctx, ex)
	})
	if err != nil {
		return nil, expired, err
	}
	return ex.output, false, nil
}

// compensateAttempt runs one attempt of step i's compensation.
func (x *execution) compensateAttempt(ctx context.Context, i int) (expired bool, err error) {
	step, sr := x.e.def.Steps[i], &x.rec.Steps[i]
	ex := &Exec{rec: x.rec, step: i, attempt: sr.CompAttempts}
	return x.call(ctx, "compensate ", step.Name, sr.CompAttempts, x.e.metrics.compDuration, func(ctx context.Context) error {
		return step.Compensate(ctx, ex)
	})
}

// attemptExpired reports whether an attempt that failed under ctx, a child
// of parent carrying the attempt deadline, failed because that deadline
// passed: ctx ended by its deadline, or the deadline is already past at now
// while ctx's timer has not fired yet. The second case is common: gRPC's
// client turns a server's RST_STREAM at the propagated deadline into
// DEADLINE_EXCEEDED as soon as the deadline is past, before the context's
// own timer goroutine marks ctx done. An earlier end of parent (a stop, a
// cancel) is not the attempt's deadline.
func attemptExpired(ctx, parent context.Context, now time.Time) bool {
	if parent.Err() != nil {
		return false
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !now.Before(dl)
}

// call runs fn under the step's attempt deadline. expired reports that fn
// failed once that deadline (not an earlier end of ctx) had passed.
func (x *execution) call(ctx context.Context, kind, step string, attempt int, h metric.Float64Histogram, fn func(context.Context) error) (expired bool, err error) {
	ctx, span := x.e.tracer.Start(ctx, kind+step+" attempt "+strconv.Itoa(attempt), trace.WithAttributes(
		attribute.String("mission.id", x.rec.Key),
		attribute.String("saga.id", x.rec.SagaID),
		attribute.String("step", step),
		attribute.Int("attempt", attempt),
	))
	defer span.End()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, x.e.policy.timeout(step))
	defer cancel()
	start := time.Now()
	err = fn(ctx)
	outcome := "ok"
	if err != nil {
		outcome = "error"
		expired = attemptExpired(ctx, parent, time.Now())
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	h.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(
		attribute.String("saga.definition", x.e.def.Name),
		attribute.String("step", step),
		attribute.String("outcome", outcome),
	))
	return expired, err
}

// emit queues an event for the next save.
func (x *execution) emit(t EventType, step string, attempt int, msg string, f Failure) {
	x.events = append(x.events, newEvent(x.rec, x.span.SpanContext(), t, step, attempt, msg, f, x.e.now()))
}

// newEvent is an event of rec's saga under the mission span sc, at now.
func newEvent(rec *Record, sc trace.SpanContext, t EventType, step string, attempt int, msg string, f Failure, now time.Time) Event {
	return Event{
		Type:        t,
		MissionID:   rec.Key,
		SagaID:      rec.SagaID,
		Step:        step,
		Attempt:     attempt,
		Progress:    progress(rec),
		Message:     msg,
		ErrorCode:   f.Code,
		ErrorReason: f.Reason,
		TraceID:     traceID(sc),
		SpanID:      spanID(sc),
		Time:        now,
	}
}

// progress is the share of rec's steps that succeeded.
func progress(rec *Record) float64 {
	done := 0
	for _, s := range rec.Steps {
		if s.State == StepSucceeded {
			done++
		}
	}
	return float64(done) / float64(len(rec.Steps))
}

// save writes the record and the queued events. A Redis error is retried with
// back-off — Store.Save is idempotent, so a write whose reply was lost is not
// applied twice and its events are not appended twice; ErrFenced is not
// retried. Writes use a context the caller cannot cancel: the transition that
// records a cancellation must still be written. A halted run writes nothing:
// save returns why it halted.
func (x *execution) save() error {
	p := x.e.policy
	x.rec.UpdatedAt = x.e.now()
	events := x.events
	x.events = nil
	base := context.WithoutCancel(x.ctx)
	for n := 1; ; n++ {
		if err := x.halted(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(base, p.AttemptTimeout)
		err := x.e.store.Save(ctx, x.rec, events...)
		cancel()
		limit := saveAttempts
		if p.MaxAttempts > 0 {
			limit = p.MaxAttempts
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrFenced) || n >= limit:
			return err
		}
		x.logf(slog.LevelWarn, "saga write retrying", slog.Int("attempt", n), slog.String("error", err.Error()))
		sleep(x.haltCtx, p.backoff(n))
	}
}

func (x *execution) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String("mission_id", x.rec.Key), slog.String("saga_id", x.rec.SagaID))
	x.e.log.LogAttrs(x.ctx, level, msg, attrs...)
}
