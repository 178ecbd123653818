package saga

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// More errors of the engine.
var (
	// ErrRunning means this engine is already running the saga (Run was
	// called twice concurrently for one key).
	ErrRunning = errors.New("saga already running in this engine")
	// ErrInvalidKey means a mission key is empty or contains a brace (which
	// would break the Redis hash tag).
	ErrInvalidKey = errors.New("invalid saga key")
	// ErrDefinitionMismatch means the stored record was written by another
	// definition (another name or other steps) than the engine's.
	ErrDefinitionMismatch = errors.New("saga record does not match the definition")
)

// Options are the engine's collaborators; every field is optional.
type Options struct {
	// Owner names this engine in records (default hostname:pid).
	Owner string
	// Tracer traces missions, step attempts and compensations (default no-op).
	Tracer trace.Tracer
	// Meter records the saga metrics (default no-op).
	Meter metric.Meter
	// Logger logs transitions (default discards). Lines carry mission_id and
	// saga_id and are logged with the mission span's context.
	Logger *slog.Logger
	// Now is the clock of record timestamps and the mission deadline (default
	// time.Now).
	Now func() time.Time
}

// Engine drives the sagas of one Definition, durably, through a Store. It is
// safe for concurrent use: one engine runs many sagas at once, each in the
// goroutine that called Run.
type Engine struct {
	store   *Store
	def     Definition
	policy  Policy
	owner   string
	tracer  trace.Tracer
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	mu sync.Mutex
	// running holds the sagas this engine is driving, so Cancel can stop the
	// current step at once instead of at the next write.
	running map[string]*runner
	// started holds sagas created by Start and not yet taken by Run: their
	// still-open mission span and their record, already owned (epoch 1), which
	// spares Run the claim round trip.
	started map[string]*startedSaga
}

type runner struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

type startedSaga struct {
	rec  *Record
	span trace.Span
}

// NewEngine returns an engine for def storing records in store.
func NewEngine(store *Store, def Definition, opts Options) (*Engine, error) {
	if err := def.validate(); err != nil {
		return nil, err
	}
	if def.Classify == nil {
		def.Classify = func(error) Class { return RetryFew }
	}
	if def.Describe == nil {
		def.Describe = DescribeDefault
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = host + ":" + strconv.Itoa(os.Getpid())
	}
	if opts.Tracer == nil {
		opts.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	if opts.Meter == nil {
		opts.Meter = metricnoop.NewMeterProvider().Meter("")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newMetrics(opts.Meter, def.Name)
	if err != nil {
		return nil, err
	}
	return &Engine{
		store:   store,
		def:     def,
		policy:  def.Policy.withDefaults(),
		owner:   opts.Owner,
		tracer:  opts.Tracer,
		log:     opts.Logger,
		now:     opts.Now,
		metrics: m,
		running: make(map[string]*runner),
		started: make(map[string]*startedSaga),
	}, nil
}

// Start creates the saga of mission key in state Pending and returns at once;
// Run drives it. Start is idempotent on key: when a saga exists for key it
// returns that record with created false and writes nothing. sagaID may be
// empty, in which case a random id is generated.
//
// Start opens the span "mission <key>" (a child of the span in ctx) and stores
// its traceparent in the record; a Run on the same engine continues and ends
// that span, so every created saga must be passed to Run.
func (e *Engine) Start(ctx context.Context, key, sagaID string, input []byte) (rec *Record, created bool, err error) {
	if key == "" || strings.ContainsAny(key, "{}") {
		return nil, false, fmt.Errorf("start saga %q: %w", key, ErrInvalidKey)
	}
	if sagaID == "" {
		sagaID = rand.Text()
	}
	_, span := e.tracer.Start(ctx, "mission "+key, trace.WithAttributes(
		attribute.String("mission.id", key), attribute.String("saga.id", sagaID)))
	now := e.now()
	rec = &Record{
		SagaID:      sagaID,
		Key:         key,
		Definition:  e.def.Name,
		State:       Pending,
		Steps:       make([]StepRecord, len(e.def.Steps)),
		Outputs:     make(map[string][]byte),
		Input:       input,
		TraceParent: traceParent(span.SpanContext()),
		Owner:       e.owner,
		Epoch:       1,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	for i, s := range e.def.Steps {
		rec.Steps[i] = StepRecord{Name: s.Name, State: StepPending}
	}
	created, existing, err := e.store.Create(ctx, rec)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, false, err
	}
	if !created {
		// The span only records that a duplicate start happened; the mission's
		// own trace is the one in existing.TraceParent.
		span.SetAttributes(attribute.Bool("saga.duplicate_start", true))
		span.End()
		return existing, false, nil
	}
	e.metrics.started.Add(ctx, 1, e.metrics.defAttr)
	e.mu.Lock()
	e.started[key] = &startedSaga{rec: rec, span: span}
	e.mu.Unlock()
	return rec.clone(), true, nil
}

// Run drives the saga of mission key to a terminal state and returns its
// record: forward through the steps, or back through the compensations. A
// record found Running or Compensating (its engine died, or another replica
// hands it over) is resumed: the current step is attempted again, or the
// compensation continues. A terminal record is returned as is.
//
// Run takes the saga over by incrementing its epoch, which fences out any
// previous owner. If the epoch moves on while Run drives (another engine took
// over), Run stops at its next write and returns ErrFenced. Cancelling ctx
// stops the forward path and compensates (with code CANCELLED); compensations
// themselves ignore ctx. On error the returned record, if any, is this
// engine's last view, not necessarily what is stored.
func (e *Engine) Run(ctx context.Context, key string) (*Record, error) {
	return e.run(ctx, key, "")
}

// Cancel asks for the saga of mission key to be cancelled, from any replica:
//   - pending or running: the cancellation is recorded; the engine running it
//     stops its current step (at once if it runs in this process, else at its
//     next write) and compensates. Cancel returns without waiting.
//   - completed: the mission is torn down — every step compensated in reverse
//     — and Cancel drives that teardown itself, returning the final record
//     (Compensated, or Failed if a compensation could not be completed).
//   - compensating, compensated, failed: nothing to do; the record is returned.
func (e *Engine) Cancel(ctx context.Context, key, reason string) (*Record, error) {
	rec, teardown, err := e.store.cancel(ctx, key, reason, e.now())
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	r := e.running[key]
	if s := e.started[key]; s != nil && !teardown {
		s.rec.Cancelled, s.rec.CancelReason = true, rec.CancelReason
	}
	e.mu.Unlock()
	if !teardown {
		if r != nil && (rec.State == Pending || rec.State == Running) {
			r.cancel(&cancelError{reason: rec.CancelReason})
		}
		return rec, nil
	}
	if r != nil {
		// The run that completed the saga has not returned yet; the teardown
		// must not race it for the registry entry.
		select {
		case <-r.done:
		case <-ctx.Done():
			return rec, fmt.Errorf("cancel saga %s: waiting for its run to end: %w", key, context.Cause(ctx))
		}
	}
	return e.run(ctx, key, messageTeardown)
}

func (e *Engine) run(ctx context.Context, key, how string) (*Record, error) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r, err := e.register(key, cancel)
	if err != nil {
		return nil, err
	}
	defer e.unregister(key, r)

	e.mu.Lock()
	s := e.started[key]
	delete(e.started, key)
	e.mu.Unlock()
	var rec *Record
	var span trace.Span
	if s != nil {
		rec, span, how = s.rec, s.span, messageStarted
	} else {
		rec, err = e.store.claim(ctx, key, e.owner, e.now())
		if err != nil {
			return nil, err
		}
		if rec.State.Terminal() {
			return rec, nil
		}
		if how == "" {
			how = messageResumed
			if rec.State == Pending {
				how = messageStarted
			}
		}
		span = e.resumeSpan(ctx, rec, how)
	}
	defer span.End()
	if err := e.checkDefinition(rec); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return rec, err
	}

	runCtx = trace.ContextWithSpan(runCtx, span)
	deadline := rec.CreatedAt.Add(e.policy.MissionDeadline).Sub(e.now())
	runCtx, cancelDeadline := context.WithTimeoutCause(runCtx, deadline, errMissionDeadline)
	defer cancelDeadline()

	e.metrics.inFlight.Add(ctx, 1, e.metrics.defAttr)
	defer e.metrics.inFlight.Add(context.WithoutCancel(ctx), -1, e.metrics.defAttr)
	x := &execution{e: e, rec: rec, span: span, ctx: runCtx, how: how}
	err = x.drive()
	span.SetAttributes(attribute.String("saga.state", string(rec.State)))
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		x.logf(slog.LevelWarn, "saga run stopped", slog.String("error", err.Error()))
	case rec.State != Completed:
		span.SetStatus(codes.Error, rec.Error.Code+" "+rec.Error.Reason+": "+rec.Error.Message)
	}
	return rec, err
}

func (e *Engine) register(key string, cancel context.CancelCauseFunc) (*runner, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, busy := e.running[key]; busy {
		return nil, fmt.Errorf("run saga %s: %w", key, ErrRunning)
	}
	r := &runner{cancel: cancel, done: make(chan struct{})}
	e.running[key] = r
	return r, nil
}

func (e *Engine) unregister(key string, r *runner) {
	e.mu.Lock()
	delete(e.running, key)
	e.mu.Unlock()
	close(r.done)
}

// resumeSpan opens the mission span of a saga this engine did not start: a
// child of the stored traceparent, so the trace id stays the mission's, linked
// to whatever span asked for the run (a recovery loop, a CancelMission call).
func (e *Engine) resumeSpan(ctx context.Context, rec *Record, how string) trace.Span {
	opts := []trace.SpanStartOption{trace.WithAttributes(
		attribute.String("mission.id", rec.Key),
		attribute.String("saga.id", rec.SagaID),
		attribute.String("saga.run", how),
	)}
	if caller := trace.SpanContextFromContext(ctx); caller.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: caller}))
	}
	if parent := parseTraceParent(rec.TraceParent); parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	_, span := e.tracer.Start(ctx, "mission "+rec.Key, opts...)
	return span
}

func (e *Engine) checkDefinition(rec *Record) error {
	if rec.Definition != e.def.Name || len(rec.Steps) != len(e.def.Steps) {
		return fmt.Errorf("saga %s: record of %q with %d steps, engine runs %q with %d: %w",
			rec.Key, rec.Definition, len(rec.Steps), e.def.Name, len(e.def.Steps), ErrDefinitionMismatch)
	}
	for i, s := range e.def.Steps {
		if rec.Steps[i].Name != s.Name {
			return fmt.Errorf("saga %s: step %d is %q in the record, %q in the definition: %w",
				rec.Key, i, rec.Steps[i].Name, s.Name, ErrDefinitionMismatch)
		}
	}
	return nil
}

// cancelError is the cause given to a running saga's context by Cancel.
type cancelError struct{ reason string }

func (c *cancelError) Error() string { return "saga cancelled: " + c.reason }

var errMissionDeadline = errors.New("mission deadline exceeded")

func cancelFailure(reason string) Failure {
	return Failure{Code: CodeCancelled, Reason: ReasonMissionCancelled, Message: "cancelled: " + reason}
}

// failureFromCause describes why the run context ended.
func failureFromCause(cause error) Failure {
	var ce *cancelError
	switch {
	case errors.As(cause, &ce):
		return cancelFailure(ce.reason)
	case errors.Is(cause, errMissionDeadline):
		return Failure{Code: CodeDeadlineExceeded, Reason: ReasonMissionDeadline, Message: cause.Error()}
	default:
		f := DescribeDefault(cause)
		f.Message = "run aborted: " + f.Message
		return f
	}
}

// sleep waits d or until ctx ends, and reports whether it waited the full d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
