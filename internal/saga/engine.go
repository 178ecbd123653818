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
	// ErrClosed means the engine is draining or handed its sagas off: it
	// takes no new saga (Start, Resume, recovery, and Run of a saga it did
	// not start refuse).
	ErrClosed = errors.New("saga engine closed")
	// ErrHandedOff means Handoff stopped the run: the saga was left as its
	// record says, not compensated, for another engine to resume.
	ErrHandedOff = errors.New("saga handed off to another engine")
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
	// time.Now). Leases are measured on the Redis server's clock instead.
	Now func() time.Time
}

// Engine drives the sagas of one Definition, durably, through a Store. It is
// safe for concurrent use: one engine runs many sagas at once, each in the
// goroutine that called Run (or, for sagas it recovers, one of its own).
//
// While it drives any saga, the engine renews the leases of all the sagas it
// drives every LeaseTTL/3, in one round trip (see lease.go); an idle engine's
// heartbeat ends at its next tick, or at once with Drain or Handoff.
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
	// current step at once instead of at the next write, and so the heartbeat
	// knows which leases to renew.
	running map[string]*runner
	// started holds sagas created by Start (or reopened by Resume) and not yet
	// taken by Run: their still-open mission span and their record, already
	// owned, which spares Run the claim round trip.
	started map[string]*startedSaga
	// closed refuses new sagas once Drain or Handoff began.
	closed bool
	// idle, when not nil, is closed once the engine drives no saga (Drain
	// waits on it).
	idle chan struct{}
	// beat is the heartbeat goroutine renewing the leases; nil when none runs.
	beat *beat

	// recovering counts the goroutines driving sagas claimed by Recover.
	recovering sync.WaitGroup
}

type startedSaga struct {
	rec  *Record
	span trace.Span
	// how is the message of the run's mission.started event.
	how string
	// lost is set (under Engine.mu) when a lease renewal found the saga taken
	// over: Run will be fenced at its first write.
	lost bool
	// begun: created by Begin, so its mission.started and its first step's
	// first attempt are written already.
	begun bool
}

// NewEngine returns an engine for def storing records in store. When done
// with an engine, Drain it (or Handoff its sagas): that also ends its lease
// renewals.
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

// Owner returns the name this engine writes in the records it owns.
func (e *Engine) Owner() string { return e.owner }

// Start creates the saga of mission key in state Pending and returns at once;
// Run drives it. Start is idempotent on key: when a saga exists for key it
// returns that record with created false and writes nothing. sagaID may be
// empty, in which case a random id is generated; then a create of this
// call's that landed, lost its reply and was sent again by the Redis client
// still counts as created (the record holds the id this call drew).
//
// The new saga is owned by this engine (epoch 1) under a lease that the
// engine renews until Run has driven it to its end; should this process die
// before or during Run, the lease expires and another engine's Recover
// resumes the saga.
//
// Start opens the span "mission <key>" (a child of the span in ctx) and stores
// its traceparent in the record; a Run on the same engine continues and ends
// that span, so every created saga must be passed to Run.
func (e *Engine) Start(ctx context.Context, key, sagaID string, input []byte) (rec *Record, created bool, err error) {
	return e.start(ctx, key, sagaID, input, false)
}

// Begin is Start for a caller that runs the saga at once (the orchestrator's
// StartMission): the saga is created Running, with its first step recorded
// as attempted (attempt 1) and its mission.started event appended, in the
// create's round trip. Run then calls the first step without a write of its
// own, so a saga of n steps that succeeds costs n+1 round trips from its
// creation to its end, not n+2. As for any running saga, a cancellation
// that arrives before Run compensates the first step (its compensation is
// called; behind a barrier, a step whose action never ran compensates as a
// no-op), where Start's Pending saga would compensate nothing.
func (e *Engine) Begin(ctx context.Context, key, sagaID string, input []byte) (rec *Record, created bool, err error) {
	return e.start(ctx, key, sagaID, input, true)
}

func (e *Engine) start(ctx context.Context, key, sagaID string, input []byte, begin bool) (rec *Record, created bool, err error) {
	if key == "" || strings.ContainsAny(key, "{}") {
		return nil, false, fmt.Errorf("start saga %q: %w", key, ErrInvalidKey)
	}
	if e.isClosed() {
		return nil, false, fmt.Errorf("start saga %s: %w", key, ErrClosed)
	}
	generated := sagaID == ""
	if generated {
		sagaID = rand.Text()
	}
	// The create is the mission's first write: its round trips belong under
	// the mission span, like every later one.
	ctx, span := e.tracer.Start(ctx, "mission "+key, trace.WithAttributes(
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
	var events []Event
	if begin {
		rec.State = Running
		rec.Steps[0].State, rec.Steps[0].Attempts = StepRunning, 1
		events = []Event{newEvent(rec, span.SpanContext(), EventMissionStarted, "", 0, messageStarted, Failure{}, now)}
	}
	// A record with the saga id this call drew (128 random bits) is this
	// call's own, found by its create sent twice (see Store.create); one
	// claimed since (another epoch) is no longer this engine's to drive.
	ours := func(x *Record) bool {
		return generated && x.SagaID == sagaID && x.Owner == e.owner && x.Epoch == rec.Epoch
	}
	created, existing, err := e.store.create(ctx, rec, ours, events)
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
	e.started[key] = &startedSaga{rec: rec, span: span, how: messageStarted, begun: begin}
	e.holdLocked()
	e.mu.Unlock()
	return rec.clone(), true, nil
}

// Run drives the saga of mission key to a terminal state and returns its
// record: forward through the steps, or back through the compensations. A
// record found Running or Compensating (its engine died, or another replica
// hands it over) is resumed: the current step is attempted again, or the
// compensation continues. A terminal record is returned as is.
//
// Unless it continues a Start (or Resume) of this engine, Run takes the saga
// over, whoever holds it, by incrementing its epoch, which fences out any
// previous owner; Recover, not Run, is the way to take over only sagas
// whose owner is gone. If the epoch moves on while Run drives (another
// engine took over), Run stops — at its next write, or at once when the
// lease renewal notices — and returns ErrFenced. Handoff stops it with
// ErrHandedOff. Cancelling ctx stops the forward path and compensates (with
// code CANCELLED); compensations themselves ignore ctx. On error the
// returned record, if any, is this engine's last view, not necessarily what
// is stored.
func (e *Engine) Run(ctx context.Context, key string) (*Record, error) {
	return e.run(ctx, key, "")
}

// Cancel asks for the saga of mission key to be cancelled, from any replica:
//   - pending or running: the cancellation is recorded; the engine running it
//     stops its current step (at once if it runs in this process, else at its
//     next write or lease renewal) and compensates. Cancel returns without
//     waiting.
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
	if err := awaitRun(ctx, r); err != nil {
		return rec, fmt.Errorf("cancel saga %s: %w", key, err)
	}
	return e.run(ctx, key, messageTeardown)
}

// Resume reopens a Failed saga — one whose compensation gave up past its
// budget (Policy.CompensationRetryBudget, CompensationFewAttempts) — for another round of compensation, once
// an operator has removed what made it fail. The compensation that gave up
// gets a fresh budget of attempts (its attempt numbers keep counting); the
// saga goes back to Compensating with the error that made it compensate,
// owned by this engine at a new epoch and under a fresh lease; Resume
// returns it with resumed true, and it must then be passed to Run, which
// continues the compensation. Should this process die first, recovery
// resumes it elsewhere. A saga in any other state is returned unchanged,
// with resumed false.
func (e *Engine) Resume(ctx context.Context, key string) (rec *Record, resumed bool, err error) {
	if e.isClosed() {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, ErrClosed)
	}
	rec, resumed, err = e.store.resume(ctx, key, e.owner, e.now())
	if err != nil || !resumed {
		return rec, false, err
	}
	e.mu.Lock()
	r := e.running[key]
	e.mu.Unlock()
	// The run that declared the saga Failed may not have returned yet; Run
	// must find the key free.
	if err := awaitRun(ctx, r); err != nil {
		return rec, true, fmt.Errorf("resume saga %s: %w", key, err)
	}
	how := fmt.Sprintf("%s%s, epoch %d", MessageCompensationResumedPrefix, e.owner, rec.Epoch)
	span := e.resumeSpan(ctx, rec, how)
	e.mu.Lock()
	e.started[key] = &startedSaga{rec: rec, span: span, how: how}
	e.holdLocked()
	e.mu.Unlock()
	return rec.clone(), true, nil
}

func (e *Engine) run(ctx context.Context, key, how string) (*Record, error) {
	r, s, err := e.register(ctx, key, true)
	if err != nil {
		return nil, err
	}
	defer e.unregister(r)
	var rec *Record
	var span trace.Span
	begun := false
	if s != nil {
		if s.lost {
			// A renewal found the saga taken over before this run: stop
			// before any call (a begun saga's first write comes after its
			// first step's call, too late to fence it).
			err := fmt.Errorf("run saga %s at epoch %d: lease lost before the run: %w", key, s.rec.Epoch, ErrFenced)
			s.span.RecordError(err)
			s.span.SetStatus(codes.Error, err.Error())
			s.span.End()
			e.log.LogAttrs(ctx, slog.LevelWarn, "saga run stopped", slog.String("mission_id", key),
				slog.String("saga_id", s.rec.SagaID), slog.String("error", err.Error()))
			return s.rec, err
		}
		rec, span, how, begun = s.rec, s.span, s.how, s.begun
	} else {
		rec, err = e.store.claim(ctx, key, e.owner, e.now())
		if err != nil {
			return nil, err
		}
		if rec.State.Terminal() {
			return rec, nil
		}
		if how == "" {
			how = resumedBy(e.owner, rec.Epoch)
		}
		span = e.resumeSpan(ctx, rec, how)
	}
	return e.drive(r, rec, span, how, begun)
}

// drive runs the execution of rec, which r holds, and ends its span; begun
// says rec was created by Begin.
func (e *Engine) drive(r *runner, rec *Record, span trace.Span, how string, begun bool) (*Record, error) {
	defer span.End()
	e.mu.Lock()
	r.epoch = rec.Epoch
	e.mu.Unlock()
	if err := e.checkDefinition(rec); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		// Logged here, like every other reason drive stops early, since
		// recovery has no caller to report it to.
		e.log.LogAttrs(trace.ContextWithSpan(r.ctx, span), slog.LevelError, "saga run refused",
			slog.String("mission_id", rec.Key), slog.String("saga_id", rec.SagaID), slog.String("error", err.Error()))
		return rec, err
	}

	fwd := trace.ContextWithSpan(r.ctx, span)
	deadline := rec.CreatedAt.Add(e.policy.MissionDeadline).Sub(e.now())
	fwd, cancelDeadline := context.WithTimeoutCause(fwd, deadline, errMissionDeadline)
	defer cancelDeadline()
	halt := trace.ContextWithSpan(r.haltCtx, span)

	e.metrics.inFlight.Add(halt, 1, e.metrics.defAttr)
	defer e.metrics.inFlight.Add(context.WithoutCancel(halt), -1, e.metrics.defAttr)
	x := &execution{e: e, rec: rec, span: span, ctx: fwd, haltCtx: halt, how: how, begun: begun}
	err := x.drive()
	span.SetAttributes(attribute.String("saga.state", string(rec.State)))
	switch {
	case errors.Is(err, ErrHandedOff):
		span.SetAttributes(attribute.Bool("saga.handed_off", true))
		// Handoff logs whether the lease release that ends it landed.
		x.logf(slog.LevelInfo, "saga run stopped for a hand-off")
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		x.logf(slog.LevelWarn, "saga run stopped", slog.String("error", err.Error()))
	case rec.State != Completed:
		span.SetStatus(codes.Error, rec.Error.Code+" "+rec.Error.Reason+": "+rec.Error.Message)
	}
	return rec, err
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
