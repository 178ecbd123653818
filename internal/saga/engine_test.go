package saga

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestRunCompletesStepsInOrder(t *testing.T) {
	t.Parallel()
	var seen []string
	f := newFixture(t, map[string]behaviour{
		"c": {act: func(_ context.Context, x *Exec) error {
			// Outputs of earlier steps and the input flow forward.
			seen = []string{string(x.Input()), string(x.Output("a")), string(x.Output("b")), x.SagaID(), x.Key(), x.Step()}
			x.SetOutput([]byte("c-out"))
			return nil
		}},
	})
	e := f.engine(t, Options{})
	rec := startRun(t, e, "m1")

	if rec.State != Completed {
		t.Fatalf("state = %s, want completed (error %+v)", rec.State, rec.Error)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if want := []string{"input", "a-out", "b-out", "saga-m1", "m1", "c"}; !slices.Equal(seen, want) {
		t.Errorf("step c saw %v, want %v", seen, want)
	}
	if got, want := events(t, f.rdb, "m1"), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	stored, err := f.store.Load(t.Context(), "m1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stepSummary(stored), []string{"a:succeeded:1/0", "b:succeeded:1/0", "c:succeeded:1/0"}; !slices.Equal(got, want) {
		t.Errorf("stored steps = %v, want %v", got, want)
	}
	if string(stored.Outputs["c"]) != "c-out" || stored.EndedAt.IsZero() {
		t.Errorf("stored record lacks output or end time: %+v", stored)
	}
	if n, _ := f.rdb.ZScore(t.Context(), ActiveKey("m1"), "m1").Result(); n != 0 {
		t.Errorf("completed saga still in %s", ActiveKey("m"))
	}
	if _, err := f.rdb.ZScore(t.Context(), MissionsKey, "m1").Result(); err != nil {
		t.Errorf("saga missing from %s: %v", MissionsKey, err)
	}
	if ttl := f.rdb.TTL(t.Context(), eventsKey("m1")).Val(); ttl <= 0 {
		t.Errorf("events stream TTL = %v, want the sink's expiry", ttl)
	}
}

func TestRunRetriesAndCompensates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		b         map[string]behaviour
		state     State
		calls     []string
		steps     []string
		events    []string
		errorCode string
		// outputs are the out.* fields left in the record: a compensated
		// step's output is deleted with it.
		outputs []string
	}{
		{
			name:  "business failure compensates at once, failed step included",
			b:     map[string]behaviour{"b": {fail: []error{errBusiness}}},
			state: Compensated,
			calls: []string{"a#1", "b#1", "~b#1", "~a#1"},
			steps: []string{"a:compensated:1/1", "b:compensated:1/1", "c:pending:0/0"},
			events: []string{"mission.started",
				"compensation.started b 1", "compensation.completed b 1",
				"compensation.started a 1", "compensation.completed a 1", "mission.compensated"},
			errorCode: "FAILED_PRECONDITION",
		},
		{
			name:  "transient failure retried until it succeeds",
			b:     map[string]behaviour{"b": {fail: []error{errTransient, errTransient}}},
			state: Completed,
			calls: []string{"a#1", "b#1", "b#2", "b#3", "c#1"},
			steps: []string{"a:succeeded:1/0", "b:succeeded:3/0", "c:succeeded:1/0"},
			events: []string{"mission.started", "step.retrying b 2", "step.retrying b 3",
				"mission.completed"},
			outputs: []string{"out.a", "out.b", "out.c"},
		},
		{
			name:  "transient failure retried up to MaxAttempts, then compensated",
			b:     map[string]behaviour{"b": {fail: []error{errTransient, errTransient, errTransient}}},
			state: Compensated,
			calls: []string{"a#1", "b#1", "b#2", "b#3", "~b#1", "~a#1"},
			steps: []string{"a:compensated:1/1", "b:compensated:3/1", "c:pending:0/0"},
			events: []string{"mission.started", "step.retrying b 2", "step.retrying b 3",
				"compensation.started b 1", "compensation.completed b 1",
				"compensation.started a 1", "compensation.completed a 1", "mission.compensated"},
			errorCode: "UNAVAILABLE",
		},
		{
			name:  "internal failure gets FewAttempts retries only",
			b:     map[string]behaviour{"c": {fail: []error{errInternal, errInternal, nil}}},
			state: Compensated,
			calls: []string{"a#1", "b#1", "c#1", "c#2", "~c#1", "~b#1", "~a#1"},
			steps: []string{"a:compensated:1/1", "b:compensated:1/1", "c:compensated:2/1"},
			events: []string{"mission.started", "step.retrying c 2",
				"compensation.started c 1", "compensation.completed c 1",
				"compensation.started b 1", "compensation.completed b 1",
				"compensation.started a 1", "compensation.completed a 1", "mission.compensated"},
			errorCode: "INTERNAL",
		},
		{
			name: "compensation retried until it succeeds",
			b: map[string]behaviour{
				"b": {fail: []error{errBusiness}},
				"a": {compFail: []error{errTransient, errTransient}},
			},
			state: Compensated,
			calls: []string{"a#1", "b#1", "~b#1", "~a#1", "~a#2", "~a#3"},
			steps: []string{"a:compensated:1/3", "b:compensated:1/1", "c:pending:0/0"},
			events: []string{"mission.started",
				"compensation.started b 1", "compensation.completed b 1",
				"compensation.started a 1", "compensation.failed a 1",
				"compensation.started a 2", "compensation.failed a 2",
				"compensation.started a 3", "compensation.completed a 3", "mission.compensated"},
			errorCode: "FAILED_PRECONDITION",
		},
		{
			name: "compensation past its bound fails the saga and stops",
			b: map[string]behaviour{
				"c": {fail: []error{errBusiness}},
				"b": {compFail: []error{errInternal, errInternal, errInternal}},
			},
			state: Failed,
			calls: []string{"a#1", "b#1", "c#1", "~c#1", "~b#1", "~b#2", "~b#3"},
			steps: []string{"a:succeeded:1/0", "b:compensation_failed:1/3", "c:compensated:1/1"},
			events: []string{"mission.started",
				"compensation.started c 1", "compensation.completed c 1",
				"compensation.started b 1", "compensation.failed b 1",
				"compensation.started b 2", "compensation.failed b 2",
				"compensation.started b 3", "compensation.failed b 3", "mission.failed"},
			errorCode: "INTERNAL",
			outputs:   []string{"out.a", "out.b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.b)
			rec := startRun(t, f.engine(t, Options{}), "m")
			if rec.State != tt.state {
				t.Fatalf("state = %s, want %s (error %+v)", rec.State, tt.state, rec.Error)
			}
			if got := f.calls.get(); !slices.Equal(got, tt.calls) {
				t.Errorf("calls = %v, want %v", got, tt.calls)
			}
			stored, err := f.store.Load(t.Context(), "m")
			if err != nil {
				t.Fatal(err)
			}
			if got := stepSummary(stored); !slices.Equal(got, tt.steps) {
				t.Errorf("stored steps = %v, want %v", got, tt.steps)
			}
			if got := events(t, f.rdb, "m"); !slices.Equal(got, tt.events) {
				t.Errorf("events = %v, want %v", got, tt.events)
			}
			if stored.Error.Code != tt.errorCode {
				t.Errorf("record error = %+v, want code %q", stored.Error, tt.errorCode)
			}
			if stored.State != tt.state {
				t.Errorf("stored state = %s, want %s", stored.State, tt.state)
			}
			var outputs []string
			for _, k := range f.rdb.HKeys(t.Context(), RecordKey("m")).Val() {
				if strings.HasPrefix(k, outputPrefix) {
					outputs = append(outputs, k)
				}
			}
			if slices.Sort(outputs); !slices.Equal(outputs, tt.outputs) {
				t.Errorf("record output fields = %v, want %v", outputs, tt.outputs)
			}
			if tt.state == Failed && !strings.Contains(stored.Error.Message, "compensation of b failed after 3 attempts") {
				t.Errorf("failed saga error message = %q", stored.Error.Message)
			}
		})
	}
}

// A compensation is handed its own step's output (and the earlier steps'),
// and the output goes once the step is undone: in the record returned, in
// the one stored, and in what a later compensation sees.
func TestCompensationSeesItsOutputThenDropsIt(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string][]string{}
	look := func(_ context.Context, x *Exec) error {
		mu.Lock()
		defer mu.Unlock()
		for _, step := range []string{"a", "b", "c"} {
			seen[x.Step()] = append(seen[x.Step()], step+"="+string(x.Output(step)))
		}
		return nil
	}
	f := newFixture(t, map[string]behaviour{
		"c": {fail: []error{errBusiness}},
		"b": {comp: look},
		"a": {comp: look},
	})
	rec := startRun(t, f.engine(t, Options{}), "m")
	if rec.State != Compensated {
		t.Fatalf("state = %s, want compensated", rec.State)
	}
	want := map[string][]string{
		"b": {"a=a-out", "b=b-out", "c="},
		"a": {"a=a-out", "b=", "c="},
	}
	for step, w := range want {
		if !slices.Equal(seen[step], w) {
			t.Errorf("compensation of %s saw outputs %v, want %v", step, seen[step], w)
		}
	}
	if len(rec.Outputs) != 0 {
		t.Errorf("returned record keeps outputs %v", rec.Outputs)
	}
	stored, err := f.store.Load(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Outputs) != 0 {
		t.Errorf("stored record keeps outputs %v", stored.Outputs)
	}
}

// blockingStep returns a behaviour whose action announces it started and
// then blocks until its context ends, returning the context's error.
func blockingStep(started chan<- struct{}) behaviour {
	var once sync.Once
	return behaviour{act: func(ctx context.Context, _ *Exec) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	}}
}

// compContexts records whether each compensation ran on a live context.
type compContexts struct {
	mu    sync.Mutex
	alive map[string]bool
}

func (c *compContexts) behaviour() func(ctx context.Context, x *Exec) error {
	return func(ctx context.Context, x *Exec) error {
		c.mu.Lock()
		c.alive[x.Step()] = ctx.Err() == nil
		c.mu.Unlock()
		return nil
	}
}

func TestCallerCancellationStillCompensates(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	cc := &compContexts{alive: map[string]bool{}}
	b := blockingStep(started)
	b.comp = cc.behaviour()
	f := newFixture(t, map[string]behaviour{"a": {comp: cc.behaviour()}, "b": b})
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	rec, err := e.Run(ctx, "m")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec.State != Compensated || rec.Error.Code != CodeCancelled {
		t.Fatalf("state %s error %+v, want compensated with CANCELLED", rec.State, rec.Error)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if !cc.alive["a"] || !cc.alive["b"] {
		t.Errorf("compensations ran on a cancelled context: %v", cc.alive)
	}
	stored, err := f.store.Load(t.Context(), "m")
	if err != nil || stored.State != Compensated {
		t.Fatalf("stored state = %v, %v; want compensated", stored, err)
	}
}

func TestCancelRunningSagaStopsStepAndCompensates(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": blockingStep(started)})
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(e, "m")
	awaitClosed(t, started, "step b to start")
	rec, err := e.Cancel(t.Context(), "m", "operator said so")
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if !rec.Cancelled || rec.CancelReason != "operator said so" {
		t.Errorf("Cancel returned %+v, want the cancellation recorded", rec)
	}
	r := awaitRunResult(t, done)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if r.rec.State != Compensated || r.rec.Error.Reason != ReasonMissionCancelled {
		t.Fatalf("state %s error %+v, want compensated for MISSION_CANCELLED", r.rec.State, r.rec.Error)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

func TestCancelFromAnotherReplicaIsSeenAtNextWrite(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(context.Context, *Exec) error {
		close(started)
		<-release // a remote step that finishes despite the cancellation
		return nil
	}}})
	owner := f.engine(t, Options{Owner: "replica-1"})
	other := f.engine(t, Options{Owner: "replica-2"})
	if _, _, err := owner.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(owner, "m")
	awaitClosed(t, started, "step b to start")
	if _, err := other.Cancel(t.Context(), "m", "from replica 2"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	close(release)
	r := awaitRunResult(t, done)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if rec := r.rec; rec.State != Compensated || rec.Error.Reason != ReasonMissionCancelled {
		t.Fatalf("record %+v, want compensated for MISSION_CANCELLED", rec)
	}
	// b succeeded, c was about to start when the write revealed the
	// cancellation: c's compensation is a null compensation, then b, then a.
	if got, want := f.calls.get(), []string{"a#1", "b#1", "~c#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

func TestCancelCompletedSagaTearsItDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	startRun(t, e, "m")
	rec, err := e.Cancel(t.Context(), "m", "mission over")
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if rec.State != Compensated || rec.Error.Reason != ReasonMissionCancelled {
		t.Fatalf("state %s error %+v, want compensated for MISSION_CANCELLED", rec.State, rec.Error)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1", "~c#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	want := []string{"mission.started", "mission.completed", "mission.started",
		"compensation.started c 1", "compensation.completed c 1",
		"compensation.started b 1", "compensation.completed b 1",
		"compensation.started a 1", "compensation.completed a 1", "mission.compensated"}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); err == nil {
		t.Errorf("torn-down saga still in %s", ActiveKey("m"))
	}

	// Cancelling again, or cancelling a compensated saga, changes nothing.
	again, err := e.Cancel(t.Context(), "m", "twice")
	if err != nil || again.State != Compensated || again.CancelReason != "mission over" {
		t.Errorf("second Cancel = %+v, %v; want the compensated record unchanged", again, err)
	}
	if n := len(f.calls.get()); n != 6 {
		t.Errorf("second Cancel ran steps: %v", f.calls.get())
	}
	if _, err := e.Cancel(t.Context(), "nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel of a missing saga: %v, want ErrNotFound", err)
	}
}

func TestCancelPendingSagaRunsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cancel(t.Context(), "m", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Run(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != Compensated || len(f.calls.get()) != 0 {
		t.Errorf("state %s calls %v; want compensated with no step called", rec.State, f.calls.get())
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.compensated"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestStartIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		ids     = map[string]bool{}
	)
	for i := range n {
		wg.Go(func() {
			rec, c, err := e.Start(t.Context(), "m", "saga-"+string(rune('a'+i)), nil)
			if err != nil {
				t.Errorf("Start: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if c {
				created++
			}
			ids[rec.SagaID] = true
		})
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Fatalf("created %d sagas with ids %v, want exactly one", created, ids)
	}
	if rec, err := e.Run(t.Context(), "m"); err != nil || rec.State != Completed {
		t.Fatalf("Run = %+v, %v", rec, err)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if _, _, err := e.Start(t.Context(), "bad{key}", "", nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Start with a brace in the key: %v, want ErrInvalidKey", err)
	}
}

func TestFencedOwnerStopsWithoutWriting(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(context.Context, *Exec) error {
		close(started)
		<-release
		return nil
	}}})
	e := f.engine(t, Options{Owner: "old"})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(e, "m")
	awaitClosed(t, started, "step b to start")
	// Another replica takes the saga over while b runs.
	taken, err := f.store.claim(t.Context(), "m", "new", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	before := events(t, f.rdb, "m")
	close(release)
	r := awaitRunResult(t, done)
	if !errors.Is(r.err, ErrFenced) {
		t.Fatalf("Run error = %v, want ErrFenced", r.err)
	}
	after, err := f.store.Load(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if after.Owner != "new" || after.Epoch != taken.Epoch || !slices.Equal(stepSummary(after), stepSummary(taken)) {
		t.Errorf("fenced owner changed the record: %+v, want %+v", after, taken)
	}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, before) {
		t.Errorf("fenced owner wrote events: %v, before %v", got, before)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1"}; !slices.Equal(got, want) {
		t.Errorf("fenced owner went on calling steps: %v", got)
	}
}

func TestResumeContinuesCurrentStepInSameTrace(t *testing.T) {
	t.Parallel()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	crashed := make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(_ context.Context, x *Exec) error {
		if x.Attempt() == 1 {
			close(crashed)
			runtime.Goexit() // the process dies mid-step: nothing after this runs
		}
		x.SetOutput([]byte("b-out"))
		return nil
	}}})
	first := f.engine(t, Options{Owner: "first", Tracer: tp.Tracer("first")})
	startRec, _, err := first.Start(t.Context(), "m", "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = first.Run(context.Background(), "m") }()
	awaitClosed(t, crashed, "the first run to die")

	stored, err := f.store.Load(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if stored.State != Running || stored.Current != 1 || stored.Steps[1].State != StepRunning {
		t.Fatalf("record after the crash = %s current %d %v, want running at b", stored.State, stored.Current, stepSummary(stored))
	}

	second := f.engine(t, Options{Owner: "second", Tracer: tp.Tracer("second")})
	rec, err := second.Run(t.Context(), "m")
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if rec.State != Completed || rec.Owner != "second" || rec.Epoch != startRec.Epoch+1 {
		t.Fatalf("resumed record %s owner %s epoch %d", rec.State, rec.Owner, rec.Epoch)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "b#2", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	msgs, err := f.rdb.XRange(t.Context(), eventsKey("m"), "-", "+").Result()
	if want := "resumed by second, epoch 2"; err != nil || msgs[1].Values["message"] != want {
		t.Errorf("second mission.started = %v, %v; want message %q", msgs, err, want)
	}

	parent := parseTraceParent(startRec.TraceParent)
	if !parent.IsValid() {
		t.Fatalf("record traceparent %q is invalid", startRec.TraceParent)
	}
	var names []string
	for _, s := range recorder.Ended() {
		if s.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("span %q in trace %s, want the mission's %s", s.Name(), s.SpanContext().TraceID(), parent.TraceID())
		}
		if s.Name() == "mission m" && s.Parent().SpanID() == parent.SpanID() {
			names = append(names, "resumed mission span")
		}
		if strings.HasPrefix(s.Name(), "step ") {
			names = append(names, s.Name())
		}
	}
	slices.Sort(names)
	// Goexit ran the first run's deferred calls, so its b span ended too.
	want := []string{"resumed mission span", "step a attempt 1", "step b attempt 1", "step b attempt 2", "step c attempt 1"}
	if !slices.Equal(names, want) {
		t.Errorf("ended spans %v, want %v", names, want)
	}
}

func TestRunRefusesAnotherDefinition(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if _, _, err := f.engine(t, Options{}).Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	other := f.def
	other.Steps = other.Steps[:2]
	e := newTestEngine(t, f.store, other, Options{})
	if _, err := e.Run(t.Context(), "m"); !errors.Is(err, ErrDefinitionMismatch) {
		t.Errorf("Run with two steps of three: %v, want ErrDefinitionMismatch", err)
	}
	if len(f.calls.get()) != 0 {
		t.Errorf("steps ran: %v", f.calls.get())
	}
}

func TestMissionDeadlineCompensates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := f.engine(t, Options{Now: clock})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(5*time.Minute + time.Second) // default MissionDeadline passed before Run
	mu.Unlock()
	rec, err := e.Run(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != Compensated || rec.Error.Reason != ReasonMissionDeadline || len(f.calls.get()) != 0 {
		t.Errorf("state %s error %+v calls %v; want compensated for MISSION_DEADLINE, no step", rec.State, rec.Error, f.calls.get())
	}
}

func TestRunTwiceConcurrentlyIsRefused(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"a": {act: func(context.Context, *Exec) error {
		close(started)
		<-release
		return nil
	}}})
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(e, "m")
	awaitClosed(t, started, "step a to start")
	if _, err := e.Run(t.Context(), "m"); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	close(release)
	if r := awaitRunResult(t, done); r.err != nil {
		t.Errorf("first Run: %v", r.err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	f := newFixture(t, map[string]behaviour{"c": {fail: []error{errBusiness}}})
	e := f.engine(t, Options{Meter: mp.Meter("saga")})
	// Exported at 0 before any saga: absent would read as no data.
	for _, name := range []string{"slammesh.saga.in_flight", "slammesh.saga.failed", "slammesh.saga.leases_lost"} {
		if v, ok := metricTotals(t, reader)[name]; !ok || v != 0 {
			t.Errorf("%s before any saga = %d (exported: %v), want 0", name, v, ok)
		}
	}
	startRun(t, e, "m")

	got := metricTotals(t, reader)
	want := map[string]int64{
		"slammesh.saga.started":               1,
		"slammesh.saga.compensated":           1,
		"slammesh.saga.in_flight":             0,
		"slammesh.saga.step.duration":         3,
		"slammesh.saga.compensation.duration": 3,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %d, want %d (all: %v)", name, got[name], w, got)
		}
	}
	if got["slammesh.saga.completed"] != 0 || got["slammesh.saga.failed"] != 0 {
		t.Errorf("unexpected outcome counters: %v", got)
	}
}

func TestBackoffIsFullJitterUnderCap(t *testing.T) {
	t.Parallel()
	p := Policy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}.withDefaults()
	for _, tt := range []struct {
		retry   int
		ceiling time.Duration
	}{{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 40 * time.Millisecond}, {4, 50 * time.Millisecond}, {60, 50 * time.Millisecond}} {
		var top time.Duration
		for range 2000 {
			d := p.backoff(tt.retry)
			if d < 0 || d > tt.ceiling {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", tt.retry, d, tt.ceiling)
			}
			top = max(top, d)
		}
		// With 2000 uniform draws the largest is above 90% of the ceiling
		// except with probability 0.9^2000.
		if top < tt.ceiling*9/10 {
			t.Errorf("backoff(%d) never above %v: not spread up to the ceiling %v", tt.retry, top, tt.ceiling)
		}
	}
}

func TestCancelDuringLastStepFromAnotherReplicaTearsDown(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	compStarted, compRelease := make(chan struct{}), make(chan struct{})
	f := newFixture(t, map[string]behaviour{"c": {
		act: func(context.Context, *Exec) error {
			close(started)
			<-release
			return nil
		},
		comp: func(context.Context, *Exec) error {
			close(compStarted)
			<-compRelease
			return nil
		},
	}})
	owner := f.engine(t, Options{Owner: "replica-1"})
	other := f.engine(t, Options{Owner: "replica-2"})
	if _, _, err := owner.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(owner, "m")
	awaitClosed(t, started, "step c to start")
	if _, err := other.Cancel(t.Context(), "m", "late"); err != nil {
		t.Fatal(err)
	}
	close(release)
	// The write that completed the saga revealed the cancellation: the saga
	// is reopened, and back in the active set while it is torn down.
	awaitClosed(t, compStarted, "the teardown to start")
	if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); err != nil {
		t.Errorf("saga being torn down is not in %s: %v", ActiveKey("m"), err)
	}
	close(compRelease)
	r := awaitRunResult(t, done)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if rec := r.rec; rec.State != Compensated || rec.Error.Reason != ReasonMissionCancelled {
		t.Fatalf("record %+v, want compensated for MISSION_CANCELLED", rec)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1", "~c#1", "~b#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); err == nil {
		t.Errorf("torn-down saga still in %s", ActiveKey("m"))
	}
}
