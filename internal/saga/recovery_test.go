package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The recovery tests use short leases and scans, so that an expiry takes a
// fraction of a second.
const (
	testLease = 300 * time.Millisecond
	testScan  = 25 * time.Millisecond
)

// renewalBlackout fails one engine's lease renewals while on: as far as its
// leases go the engine is paused or cut off from Redis, while its runs carry
// on — the situation fencing exists for. A process killed mid-step looks the
// same to the other replicas, minus the late write this lets a test observe.
type renewalBlackout struct{ on atomic.Bool }

func (h *renewalBlackout) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *renewalBlackout) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if a := cmd.Args(); h.on.Load() && cmd.Name() == "evalsha" && len(a) > 1 && a[1] == renewScript.Hash() {
			err := fmt.Errorf("injected renewal blackout: %w", net.ErrClosed)
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *renewalBlackout) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return failInPipeline(next, func(cmd redis.Cmder) error {
		if a := cmd.Args(); h.on.Load() && cmd.Name() == "evalsha" && len(a) > 1 && a[1] == renewScript.Hash() {
			return fmt.Errorf("injected renewal blackout: %w", net.ErrClosed)
		}
		return nil
	})
}

// failInPipeline is a pipeline hook that fails the commands fail returns an
// error for, as a ProcessHook failing them would, and runs the others.
func failInPipeline(next redis.ProcessPipelineHook, fail func(redis.Cmder) error) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		rest := make([]redis.Cmder, 0, len(cmds))
		var first error
		for _, c := range cmds {
			if err := fail(c); err != nil {
				c.SetErr(err)
				first = cmp.Or(first, err)
				continue
			}
			rest = append(rest, c)
		}
		if len(rest) > 0 {
			if err := next(ctx, rest); err != nil {
				return err
			}
		}
		return first
	}
}

// recovering runs e's recovery loop until the test ends.
func recovering(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Recover(ctx, RecoveryOptions{Interval: testScan})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// await polls cond until it holds, failing the test after a generous bound.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitStored waits until the stored record of key is in state want.
func awaitStored(t *testing.T, s *Store, key string, want State) *Record {
	t.Helper()
	var rec *Record
	await(t, fmt.Sprintf("saga %s to be %s", key, want), func() bool {
		r, err := s.Load(context.Background(), key)
		if err != nil {
			t.Fatalf("Load(%s): %v", key, err)
		}
		rec = r
		return r.State == want
	})
	return rec
}

// messages returns the message of each of the mission's events.
func messages(t *testing.T, rdb redis.UniversalClient, key string) []string {
	t.Helper()
	msgs, err := rdb.XRange(t.Context(), eventsKey(key), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i], _ = m.Values["message"].(string)
	}
	return out
}

// leaseExpiredFor parses the "lease of <owner> expired <d> ago" part of a
// recovery's mission.started message.
func leaseExpiredFor(t *testing.T, msg, prevOwner string) time.Duration {
	t.Helper()
	_, rest, ok := strings.Cut(msg, ", lease of "+prevOwner+" expired ")
	d, ago := strings.CutSuffix(rest, " ago")
	dur, err := time.ParseDuration(d)
	if !ok || !ago || err != nil {
		t.Fatalf("message %q does not say how long the lease of %s had been expired", msg, prevOwner)
	}
	return dur
}

func TestRecoveryTakesOverFromAnOwnerCutOff(t *testing.T) {
	t.Parallel()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(_ context.Context, x *Exec) error {
		if x.Attempt() == 1 {
			// The first owner's call: a slow service, still busy when its
			// caller is cut off, answering long after. Behind the barrier
			// the two calls of b are one effect.
			close(started)
			<-release
		}
		return nil
	}}})
	blackout := &renewalBlackout{}
	a := f.replica(t, "A", testLease, Options{Tracer: tp.Tracer("A")}, blackout)
	b := f.replica(t, "B", testLease, Options{Tracer: tp.Tracer("B"), Meter: mp.Meter("B")})
	startRec, _, err := a.Start(t.Context(), "m", "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")
	blackout.on.Store(true)
	recovering(t, b)

	rec := awaitStored(t, f.store, "m", Completed)
	if rec.Owner != "B" || rec.Epoch != 2 {
		t.Errorf("completed by %s at epoch %d, want B at 2", rec.Owner, rec.Epoch)
	}
	eventsBefore := events(t, f.rdb, "m")
	hashBefore := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val()

	// A's call returns: A's next write is fenced and writes nothing.
	close(release)
	r := awaitRunResult(t, done)
	if !errors.Is(r.err, ErrFenced) {
		t.Fatalf("A's Run = %v, want ErrFenced", r.err)
	}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, eventsBefore) {
		t.Errorf("fenced owner wrote events: %v, before %v", got, eventsBefore)
	}
	if got := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val(); !maps.Equal(got, hashBefore) {
		t.Errorf("fenced owner changed the record:\n got %v\nwant %v", got, hashBefore)
	}
	awaitUnindexed(t, f.rdb, "m")

	// b ran twice — A's call and B's retry — and nothing else ran again.
	if got, want := f.calls.get(), []string{"a#1", "b#1", "b#2", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	msgs := messages(t, f.rdb, "m")
	if msgs[0] != "started" || !strings.HasPrefix(msgs[1], MessageResumedPrefix+"B, epoch 2, ") {
		t.Errorf("mission.started messages = %q, want started, then resumed by B at epoch 2", msgs[:2])
	}
	// The scan runs every 25ms; the bound leaves room for a loaded machine.
	if d := leaseExpiredFor(t, msgs[1], "A"); d > time.Second {
		t.Errorf("resumed %v after the lease expired, want within a scan or so", d)
	}

	// The resumed run continues the mission's trace. B's mission span ends
	// just after its last save, which the test may see first: wait for it.
	parent := parseTraceParent(startRec.TraceParent)
	resumedSpan := func() bool {
		for _, s := range recorder.Ended() {
			if s.Name() == "mission m" && s.Parent().SpanID() == parent.SpanID() {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !resumedSpan() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !resumedSpan() {
		t.Error("no resumed mission span under the stored traceparent")
	}
	for _, s := range recorder.Ended() {
		if s.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("span %q in trace %s, want the mission's %s", s.Name(), s.SpanContext().TraceID(), parent.TraceID())
		}
	}

	got := metricTotals(t, reader)
	if got["slammesh.saga.recovered"] != 1 || got["slammesh.saga.recovery.delay"] != 1 {
		t.Errorf("B's recovery metrics = %v, want one recovery measured", got)
	}
}

func TestRecoveryRunsASagaWhoseCreatorDiedBeforeRunningIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	blackout := &renewalBlackout{}
	blackout.on.Store(true) // A dies right after Start: no renewal lands
	a := f.replica(t, "A", testLease, Options{}, blackout)
	b := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	recovering(t, b)
	rec := awaitStored(t, f.store, "m", Completed)
	if rec.Owner != "B" || rec.Epoch != 2 {
		t.Errorf("completed by %s at epoch %d, want B at 2", rec.Owner, rec.Epoch)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if msg := messages(t, f.rdb, "m")[0]; !strings.HasPrefix(msg, MessageResumedPrefix+"B, epoch 2, lease of A expired ") {
		t.Errorf("mission.started message = %q, want a resumption by B", msg)
	}

	// A comes back and runs the saga it started: its first write is fenced.
	if _, err := a.Run(t.Context(), "m"); !errors.Is(err, ErrFenced) {
		t.Errorf("A's late Run = %v, want ErrFenced", err)
	}
	if got := events(t, f.rdb, "m"); len(got) != 2 {
		t.Errorf("A's late Run wrote events: %v", got)
	}
	if n := len(f.calls.get()); n != 3 {
		t.Errorf("A's late Run called steps: %v", f.calls.get())
	}
}

func TestRecoveryLeavesTheSagasOfALiveOwnerAlone(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(_ context.Context, x *Exec) error {
		if x.Attempt() > 1 {
			t.Errorf("step b attempted again (attempt %d): the saga was taken from its live owner", x.Attempt())
			return nil
		}
		close(started)
		<-release
		return nil
	}}})
	a := f.replica(t, "A", testLease, Options{})
	b := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")
	recovering(t, b)

	// Wait until A's renewals have carried the lease two whole TTLs past
	// its first expiry, B scanning all along: without them B would have
	// taken the saga.
	first := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Val()
	await(t, "A to renew its lease", func() bool {
		return f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Val() >= first+float64(2*testLease.Milliseconds())
	})
	if n, err := b.recoverOnce(t.Context(), RecoveryOptions{}.withDefaults()); n != 0 || err != nil {
		t.Errorf("B's scan resumed %d sagas (%v), want none", n, err)
	}
	close(release)
	r := awaitRunResult(t, done)
	if r.err != nil || r.rec.State != Completed {
		t.Fatalf("A's Run = %v, %v; want completed", r.rec, r.err)
	}
	stored, err := f.store.Load(t.Context(), "m")
	if err != nil || stored.Owner != "A" || stored.Epoch != 1 {
		t.Errorf("stored record = %+v, %v; want owned by A at epoch 1 throughout", stored, err)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := messages(t, f.rdb, "m"), []string{"started", ""}; !slices.Equal(got, want) {
		t.Errorf("event messages = %q, want %q (no resumption)", got, want)
	}
}

func TestHandoffIsPickedUpAtTheNextScan(t *testing.T) {
	t.Parallel()
	// Leases long enough that only the release can explain a quick pickup.
	const lease = time.Minute
	started := make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(ctx context.Context, x *Exec) error {
		if x.Attempt() == 1 {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}})
	a := f.replica(t, "A", lease, Options{})
	b := f.replica(t, "B", lease, Options{})
	recovering(t, b)
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")

	begin := time.Now()
	n, err := a.Handoff(t.Context())
	if n != 1 || err != nil {
		t.Fatalf("Handoff = %d, %v; want 1 saga handed off", n, err)
	}
	if r := awaitRunResult(t, done); !errors.Is(r.err, ErrHandedOff) {
		t.Errorf("A's Run = %v, want ErrHandedOff", r.err)
	}
	rec := awaitStored(t, f.store, "m", Completed)
	if took := time.Since(begin); took > lease/10 {
		t.Errorf("picked up after %v, want well under the %v lease", took, lease)
	}
	if rec.Owner != "B" || rec.Epoch != 2 {
		t.Errorf("completed by %s at epoch %d, want B at 2", rec.Owner, rec.Epoch)
	}
	// Nothing was compensated: A stopped without a write, B carried on.
	if got, want := f.calls.get(), []string{"a#1", "b#1", "b#2", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if msg := messages(t, f.rdb, "m")[1]; !strings.HasPrefix(msg, MessageResumedPrefix+"B, epoch 2, lease of A expired ") {
		t.Errorf("B's mission.started message = %q", msg)
	}
	if _, _, err := a.Start(t.Context(), "m2", "s2", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Handoff = %v, want ErrClosed", err)
	}
}

func TestRenewalHaltsARunWhoseSagaWasTakenOver(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	stepCause := make(chan error, 1)
	f := newFixture(t, map[string]behaviour{"b": {act: func(ctx context.Context, _ *Exec) error {
		close(started)
		<-ctx.Done()
		stepCause <- context.Cause(ctx)
		return ctx.Err()
	}}})
	a := f.replica(t, "A", testLease, Options{})
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")
	// Another engine takes the saga over (an explicit Run elsewhere).
	if _, err := f.store.claim(t.Context(), "m", "usurper", time.Now()); err != nil {
		t.Fatal(err)
	}
	eventsBefore := events(t, f.rdb, "m")
	hashBefore := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val()

	r := awaitRunResult(t, done)
	if !errors.Is(r.err, ErrFenced) {
		t.Fatalf("A's Run = %v, want ErrFenced", r.err)
	}
	// The step was stopped by the renewal, not by its attempt deadline.
	if cause := <-stepCause; !errors.Is(cause, ErrFenced) {
		t.Errorf("step b stopped by %v, want the lost lease", cause)
	}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, eventsBefore) {
		t.Errorf("halted owner wrote events: %v, before %v", got, eventsBefore)
	}
	if got := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val(); !maps.Equal(got, hashBefore) {
		t.Errorf("halted owner changed the record:\n got %v\nwant %v", got, hashBefore)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v (no compensation by the halted owner)", got, want)
	}
}

// TestRenewalHaltsARunWhoseRecordIsGone: the record disappeared while the
// saga ran. Without a tombstone, Redis lost it (a restart without
// persistence, a flush): the run stops as a fenced one, writing nothing,
// and its error says the record is gone rather than that another owner
// took it over. With one, the saga was taken over, finished and deleted
// meanwhile (the owner was paused): an ordinary fencing.
func TestRenewalHaltsARunWhoseRecordIsGone(t *testing.T) {
	t.Parallel()
	for _, deleted := range []bool{false, true} {
		t.Run(fmt.Sprintf("tombstone=%v", deleted), func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{})
			f := newFixture(t, map[string]behaviour{"b": {act: func(ctx context.Context, _ *Exec) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			}}})
			a := f.replica(t, "A", testLease, Options{})
			if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
				t.Fatal(err)
			}
			done := runInBackground(a, "m")
			awaitClosed(t, started, "A to call step b")
			if deleted {
				if err := f.rdb.ZAdd(t.Context(), GoneKey, redis.Z{Score: 1, Member: "m"}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.rdb.Del(t.Context(), RecordKey("m")).Err(); err != nil {
				t.Fatal(err)
			}
			r := awaitRunResult(t, done)
			var gone *RecordGoneError
			if !errors.Is(r.err, ErrFenced) || errors.As(r.err, &gone) == deleted {
				t.Fatalf("A's Run = %v, want ErrFenced, a RecordGoneError only without a tombstone", r.err)
			}
			if !deleted && strings.Contains(r.err.Error(), "another owner") {
				t.Errorf("A's Run = %v: names another owner for a record Redis lost", r.err)
			}
			if n := f.rdb.Exists(t.Context(), RecordKey("m")).Val(); n != 0 {
				t.Errorf("the halted run wrote the record again")
			}
			if got, want := f.calls.get(), []string{"a#1", "b#1"}; !slices.Equal(got, want) {
				t.Errorf("calls = %v, want %v (no compensation by the halted run)", got, want)
			}
		})
	}
}

func TestRenewalStopsAStepCancelledFromAnotherReplica(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	stepCause := make(chan error, 1)
	f := newFixture(t, map[string]behaviour{"b": {act: func(ctx context.Context, _ *Exec) error {
		close(started)
		<-ctx.Done()
		stepCause <- context.Cause(ctx)
		return ctx.Err()
	}}})
	a := f.replica(t, "A", testLease, Options{})
	other := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")
	if _, err := other.Cancel(t.Context(), "m", "from B"); err != nil {
		t.Fatal(err)
	}
	r := awaitRunResult(t, done)
	if r.err != nil || r.rec.State != Compensated || r.rec.Error.Reason != ReasonMissionCancelled {
		t.Fatalf("A's Run = %+v, %v; want compensated for MISSION_CANCELLED", r.rec, r.err)
	}
	// Stopped by the cancellation the renewal found, not by the 5s attempt
	// deadline.
	var ce *cancelError
	if cause := <-stepCause; !errors.As(cause, &ce) || ce.reason != "from B" {
		t.Errorf("step b stopped by %v, want the cancellation", cause)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

func TestResumeCompensatesAFailedSagaOnceTheFaultIsGone(t *testing.T) {
	t.Parallel()
	// b's compensation fails four times; the bound is three: the saga is
	// Failed, an operator resumes it, and the fifth attempt succeeds.
	b := map[string]behaviour{
		"c": {fail: []error{errBusiness}},
		"b": {compFail: []error{errInternal, errInternal, errInternal, errInternal}},
	}
	wantCalls := []string{"a#1", "b#1", "c#1", "~c#1", "~b#1", "~b#2", "~b#3", "~b#4", "~b#5", "~a#1"}
	wantEvents := []string{"mission.started",
		"compensation.started c 1", "compensation.completed c 1",
		"compensation.started b 1", "compensation.failed b 1",
		"compensation.started b 2", "compensation.failed b 2",
		"compensation.started b 3", "compensation.failed b 3", "mission.failed",
		"mission.started",
		"compensation.started b 4", "compensation.failed b 4",
		"compensation.started b 5", "compensation.completed b 5",
		"compensation.started a 1", "compensation.completed a 1", "mission.compensated"}
	tests := []struct {
		name string
		// dies: the resuming engine dies before running the compensation,
		// which another engine's recovery then does.
		dies       bool
		wantPrefix string
	}{
		{"driven by the resuming engine", false, MessageCompensationResumedPrefix + "A, epoch 2"},
		{"recovered after the resuming engine died", true, MessageResumedPrefix + "B, epoch 3, lease of A expired "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, b)
			blackout := &renewalBlackout{}
			a := f.replica(t, "A", testLease, Options{}, blackout)
			if rec := startRun(t, a, "m"); rec.State != Failed {
				t.Fatalf("state = %s, want failed", rec.State)
			}
			if tt.dies {
				blackout.on.Store(true)
			}
			rec, resumed, err := a.Resume(t.Context(), "m")
			if err != nil || !resumed {
				t.Fatalf("Resume = %v, %v; want resumed", resumed, err)
			}
			if rec.State != Compensating || rec.Epoch != 2 || rec.Steps[1].CompBase != 3 || rec.Steps[1].State != StepCompensating {
				t.Errorf("resumed record: %s epoch %d, b %s with base %d; want compensating at epoch 2, b compensating from 3",
					rec.State, rec.Epoch, rec.Steps[1].State, rec.Steps[1].CompBase)
			}
			if rec.Error.Reason != "INSUFFICIENT_OVERLAP" {
				t.Errorf("resumed record error = %+v, want the failure that made it compensate", rec.Error)
			}

			var final *Record
			if !tt.dies {
				if final, err = a.Run(t.Context(), "m"); err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				recovering(t, f.replica(t, "B", testLease, Options{}))
				final = awaitStored(t, f.store, "m", Compensated)
				if _, err := a.Run(t.Context(), "m"); !errors.Is(err, ErrFenced) {
					t.Errorf("A's late Run = %v, want ErrFenced", err)
				}
			}
			if final.State != Compensated || final.Error.Code != "FAILED_PRECONDITION" || final.Error.Reason != "INSUFFICIENT_OVERLAP" {
				t.Errorf("final state %s error %+v, want compensated for the original failure", final.State, final.Error)
			}
			stored, err := f.store.Load(t.Context(), "m")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := stepSummary(stored), []string{"a:compensated:1/1", "b:compensated:1/5", "c:compensated:1/1"}; !slices.Equal(got, want) {
				t.Errorf("stored steps = %v, want %v", got, want)
			}
			if got := f.calls.get(); !slices.Equal(got, wantCalls) {
				t.Errorf("calls = %v, want %v", got, wantCalls)
			}
			if got := events(t, f.rdb, "m"); !slices.Equal(got, wantEvents) {
				t.Fatalf("events = %v, want %v", got, wantEvents)
			}
			if msg := messages(t, f.rdb, "m")[10]; !strings.HasPrefix(msg, tt.wantPrefix) {
				t.Errorf("second mission.started message = %q, want prefix %q", msg, tt.wantPrefix)
			}
			if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); !errors.Is(err, redis.Nil) {
				t.Errorf("compensated saga still in %s: %v", ActiveKey("m"), err)
			}
		})
	}

	t.Run("a second give-up counts from the resume", func(t *testing.T) {
		t.Parallel()
		// Six failures: three before the resume, three after it.
		errs := slices.Repeat([]error{errInternal}, 6)
		f := newFixture(t, map[string]behaviour{"c": {fail: []error{errBusiness}}, "b": {compFail: errs}})
		e := f.engine(t, Options{})
		if rec := startRun(t, e, "m"); rec.State != Failed || !strings.Contains(rec.Error.Message, "compensation of b failed after 3 attempts over ") {
			t.Fatalf("first give-up: %s %q", rec.State, rec.Error.Message)
		}
		if _, resumed, err := e.Resume(t.Context(), "m"); err != nil || !resumed {
			t.Fatalf("Resume = %v, %v; want resumed", resumed, err)
		}
		rec, err := e.Run(t.Context(), "m")
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != Failed || !regexp.MustCompile(`compensation of b failed after 3 attempts over \S+ since it was resumed \(6 in all\): `).MatchString(rec.Error.Message) {
			t.Errorf("second give-up: %s %q, want its 3 attempts since the resume of 6 in all", rec.State, rec.Error.Message)
		}
	})

	t.Run("other states are left alone", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		e := f.engine(t, Options{})
		startRun(t, e, "done")
		rec, resumed, err := e.Resume(t.Context(), "done")
		if err != nil || resumed || rec.State != Completed || rec.Epoch != 1 {
			t.Errorf("Resume of a completed saga = %s epoch %d, resumed %v, %v; want it unchanged", rec.State, rec.Epoch, resumed, err)
		}
		if _, _, err := e.Resume(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resume of a missing saga = %v, want ErrNotFound", err)
		}
	})
}

func TestDrainWaitsForRunningSagasAndClosesTheEngine(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(context.Context, *Exec) error {
		close(started)
		<-release
		return nil
	}}})
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(e, "m")
	awaitClosed(t, started, "step b to start")

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := e.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a saga running = %v, want the deadline", err)
	}
	if _, _, err := e.Start(t.Context(), "m2", "s2", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Start while draining = %v, want ErrClosed", err)
	}
	close(release)
	if err := e.Drain(t.Context()); err != nil {
		t.Errorf("Drain: %v", err)
	}
	if r := awaitRunResult(t, done); r.err != nil || r.rec.State != Completed {
		t.Errorf("Run = %v, %v; want completed despite the drain", r.rec, r.err)
	}
	if n, err := e.Handoff(t.Context()); n != 0 || err != nil {
		t.Errorf("Handoff of a drained engine = %d, %v; want nothing to hand off", n, err)
	}
}

func TestRecoverClaimTakesOnlyExpiredUnfinishedSagas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup prepares saga "m"; the store's leases last an hour.
		setup func(t *testing.T, f *fixture)
		// expired says whether a scan lists "m".
		expired bool
		claimed bool
		// inActive says whether "m" is left in ActiveKey.
		inActive bool
	}{
		{
			name:     "lease still valid",
			setup:    func(t *testing.T, f *fixture) { createPending(t, f) },
			inActive: true,
		},
		{
			name: "lease expired",
			setup: func(t *testing.T, f *fixture) {
				createPending(t, f)
				expireLease(t, f, "m")
			},
			expired:  true,
			claimed:  true,
			inActive: true,
		},
		{
			name: "terminal record left in the active set",
			setup: func(t *testing.T, f *fixture) {
				rec := fullRecord("m")
				if _, _, err := f.store.Create(t.Context(), rec); err != nil {
					t.Fatal(err)
				}
				f.rdb.ZAdd(t.Context(), ActiveKey("m"), redis.Z{Score: 1, Member: "m"})
			},
			expired: true,
		},
		{
			name: "record missing",
			setup: func(t *testing.T, f *fixture) {
				f.rdb.ZAdd(t.Context(), ActiveKey("m"), redis.Z{Score: 1, Member: "m"})
			},
			expired: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			tt.setup(t, f)
			entries, err := f.store.expired(t.Context(), 10)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(entries, func(e indexEntry) bool { return e.key == "m" })
			if (i >= 0) != tt.expired {
				t.Errorf("expired() = %v, want m listed: %v", entries, tt.expired)
			}
			entry := indexEntry{key: "m", score: int64(f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Val())}
			if i >= 0 {
				entry = entries[i]
			}
			c, err := f.store.recoverClaim(t.Context(), entry, "B", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if (c != nil) != tt.claimed {
				t.Fatalf("claimed = %v, want %v", c != nil, tt.claimed)
			}
			if c != nil && (c.rec.Owner != "B" || c.rec.Epoch != 2 || c.prevOwner != "replica-1" || c.expiredFor <= 0) {
				t.Errorf("claim = owner %s epoch %d, previous %s, expired for %v", c.rec.Owner, c.rec.Epoch, c.prevOwner, c.expiredFor)
			}
			score, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result()
			if (err == nil) != tt.inActive {
				t.Errorf("in %s = %v (%v), want %v", ActiveKey("m"), err == nil, err, tt.inActive)
			}
			if c != nil && score < float64(time.Now().Add(quietLease/2).UnixMilli()) {
				t.Errorf("claimed lease expires at %v, want a fresh lease", time.UnixMilli(int64(score)))
			}
		})
	}
}

// expireLease makes the lease of saga key expire long ago: in its record
// (the lease) and in the active index (where recovery looks).
func expireLease(t *testing.T, f *fixture, key string) {
	t.Helper()
	if err := f.rdb.HSet(t.Context(), RecordKey(key), fieldLease, 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZAdd(t.Context(), ActiveKey(key), redis.Z{Score: 1, Member: key}).Err(); err != nil {
		t.Fatal(err)
	}
}

// createPending creates saga "m", pending, owned by replica-1 at epoch 1.
func createPending(t *testing.T, f *fixture) {
	t.Helper()
	rec := fullRecord("m")
	rec.State, rec.Epoch, rec.EndedAt = Pending, 1, time.Time{}
	if _, _, err := f.store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
}

// TestStartedRunWaitsForARecoveryProbe: a recovery scan may hold a key
// (its claim in flight) when Start creates the saga — the scan found the
// index entry an earlier, failed create of the mission left. The started
// saga's run must wait for the probe to let go, not be refused: refused,
// the saga stayed Pending for good, its lease renewed by a live owner
// that never drove it (seen in the cluster chaos run, a master SIGKILLed).
func TestStartedRunWaitsForARecoveryProbe(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.replica(t, "A", testLease, Options{})
	probe, _, err := e.register(t.Context(), "m", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		e.unregister(probe)
		t.Fatal(err)
	}
	done := runInBackground(e, "m")
	time.Sleep(50 * time.Millisecond) // the run reaches the probe's key
	e.unregister(probe)               // the claim found the lease live
	r := awaitRunResult(t, done)
	if r.err != nil || r.rec.State != Completed {
		t.Fatalf("Run of the started saga = %v, %v; want completed", r.rec, r.err)
	}
}
