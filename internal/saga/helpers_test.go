package saga

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/slammesh/slammesh/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// streamSink publishes events to a per-mission stream, the way the progress
// publisher does, so tests read what a real consumer would.
type streamSink struct{}

func eventsKey(missionID string) string { return "slammesh:{" + missionID + "}:events" }

func (streamSink) Append(pipe redis.Pipeliner, e Event) {
	pipe.XAdd(context.Background(), &redis.XAddArgs{
		Stream: eventsKey(e.MissionID),
		MaxLen: 10000,
		Approx: true,
		Values: []any{
			"type", string(e.Type), "step", e.Step, "attempt", e.Attempt, "message", e.Message,
			"error_code", e.ErrorCode, "error_reason", e.ErrorReason, "trace_id", e.TraceID,
			"progress", e.Progress,
		},
	})
}

func (streamSink) ExpireMission(pipe redis.Pipeliner, missionID string) {
	pipe.Expire(context.Background(), eventsKey(missionID), time.Hour)
}

// events returns the mission's events as "type", "type step attempt" for step
// events.
func events(t *testing.T, rdb redis.UniversalClient, key string) []string {
	t.Helper()
	msgs, err := rdb.XRange(t.Context(), eventsKey(key), "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE: %v", err)
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		s := m.Values["type"].(string)
		if step := m.Values["step"].(string); step != "" {
			s += " " + step + " " + m.Values["attempt"].(string)
		}
		out = append(out, s)
	}
	return out
}

// stepErr is the error fake steps fail with; the test classifier and
// describer read it the way the orchestrator reads a gRPC status.
type stepErr struct {
	class        Class
	code, reason string
}

func (e *stepErr) Error() string { return e.code + " " + e.reason }

var (
	errTransient = &stepErr{class: Retry, code: "UNAVAILABLE", reason: "FLAKY"}
	errInternal  = &stepErr{class: RetryFew, code: "INTERNAL", reason: "BUG"}
	errBusiness  = &stepErr{class: Fail, code: "FAILED_PRECONDITION", reason: "INSUFFICIENT_OVERLAP"}
)

func classify(err error) Class {
	var se *stepErr
	if errors.As(err, &se) {
		return se.class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Retry
	}
	return RetryFew
}

func describe(err error) Failure {
	var se *stepErr
	if errors.As(err, &se) {
		return Failure{Code: se.code, Reason: se.reason, Message: err.Error()}
	}
	return DescribeDefault(err)
}

// calls records the step calls of one saga in order: "a#1" is attempt 1 of
// a's action, "~a#1" attempt 1 of its compensation.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
}

func (c *calls) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// behaviour scripts a fake step: the error of each attempt (nil or past the
// end: success), or a function taking over the attempt.
type behaviour struct {
	fail     []error
	compFail []error
	act      func(ctx context.Context, x *Exec) error
	comp     func(ctx context.Context, x *Exec) error
}

// fakeSteps builds steps named names whose actions set output "<name>-out" and
// record their calls.
func fakeSteps(c *calls, names []string, b map[string]behaviour) []Step {
	steps := make([]Step, len(names))
	for i, name := range names {
		bh := b[name]
		steps[i] = Step{
			Name: name,
			Action: func(ctx context.Context, x *Exec) error {
				c.add(name + "#" + strconv.Itoa(x.Attempt()))
				if bh.act != nil {
					return bh.act(ctx, x)
				}
				if n := x.Attempt() - 1; n < len(bh.fail) && bh.fail[n] != nil {
					return bh.fail[n]
				}
				x.SetOutput([]byte(name + "-out"))
				return nil
			},
			Compensate: func(ctx context.Context, x *Exec) error {
				c.add("~" + name + "#" + strconv.Itoa(x.Attempt()))
				if bh.comp != nil {
					return bh.comp(ctx, x)
				}
				if n := x.Attempt() - 1; n < len(bh.compFail) && bh.compFail[n] != nil {
					return bh.compFail[n]
				}
				return nil
			},
		}
	}
	return steps
}

// testPolicy keeps back-offs tiny so that retries do not slow the tests.
var testPolicy = Policy{
	MaxAttempts:             3,
	FewAttempts:             1,
	AttemptTimeout:          5 * time.Second,
	InitialBackoff:          100 * time.Microsecond,
	MaxBackoff:              time.Millisecond,
	CompensationMaxAttempts: 3,
}

type fixture struct {
	srv   *redistest.Server
	rdb   redis.UniversalClient
	store *Store
	calls *calls
	def   Definition
}

// quietLease is the lease TTL of the tests that are not about leases: long
// enough that no renewal ticks during a test, so a cancellation from another
// replica is seen at the owner's next write, deterministically.
const quietLease = time.Hour

func newFixture(t testing.TB, b map[string]behaviour) *fixture {
	t.Helper()
	return newFixtureOn(t, redistest.Start(t), b)
}

// newFixtureOn is newFixture on the Redis srv.
func newFixtureOn(t testing.TB, srv *redistest.Server, b map[string]behaviour) *fixture {
	t.Helper()
	rdb := srv.Universal(t)
	c := &calls{}
	return &fixture{
		srv:   srv,
		rdb:   rdb,
		store: NewStore(rdb, streamSink{}, quietLease),
		calls: c,
		def: Definition{
			Name:     "mission",
			Steps:    fakeSteps(c, []string{"a", "b", "c"}, b),
			Classify: classify,
			Describe: describe,
			Policy:   testPolicy,
		},
	}
}

// engine returns an engine on the fixture's store, handed off when the test
// ends, as a process would on its way out: a saga a test left started or
// running stops, and so does the engine's heartbeat.
func (f *fixture) engine(t testing.TB, opts Options) *Engine {
	t.Helper()
	return newTestEngine(t, f.store, f.def, opts)
}

// replica returns an engine named owner on a Redis client of its own (with
// hooks) and a store giving leases of leaseTTL, as another orchestrator
// process would have; it runs the fixture's definition.
func (f *fixture) replica(t testing.TB, owner string, leaseTTL time.Duration, opts Options, hooks ...redis.Hook) *Engine {
	t.Helper()
	rdb := f.srv.Universal(t)
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	opts.Owner = owner
	return newTestEngine(t, NewStore(rdb, streamSink{}, leaseTTL), f.def, opts)
}

func newTestEngine(t testing.TB, store *Store, def Definition, opts Options) *Engine {
	t.Helper()
	e, err := NewEngine(store, def, opts)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := e.Handoff(ctx); err != nil {
			t.Errorf("Handoff: %v", err)
		}
	})
	return e
}

// startRun starts and runs one saga to its end.
func startRun(t *testing.T, e *Engine, key string) *Record {
	t.Helper()
	if _, created, err := e.Start(t.Context(), key, "saga-"+key, []byte("input")); err != nil || !created {
		t.Fatalf("Start(%s) = created %v, %v", key, created, err)
	}
	rec, err := e.Run(t.Context(), key)
	if err != nil {
		t.Fatalf("Run(%s): %v", key, err)
	}
	return rec
}

// stepSummary renders the step records as "name:state:attempts/cattempts".
func stepSummary(rec *Record) []string {
	out := make([]string, len(rec.Steps))
	for i, s := range rec.Steps {
		out[i] = fmt.Sprintf("%s:%s:%d/%d", s.Name, s.State, s.Attempts, s.CompAttempts)
	}
	return out
}

// awaitClosed waits for ch with a generous bound, failing the test rather
// than hanging it.
func awaitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// runResult is what a Run in a goroutine returned.
type runResult struct {
	rec *Record
	err error
}

// runInBackground runs key on e in a goroutine, on a context no one cancels.
func runInBackground(e *Engine, key string) <-chan runResult {
	done := make(chan runResult, 1)
	go func() {
		rec, err := e.Run(context.Background(), key)
		done <- runResult{rec, err}
	}()
	return done
}

func awaitRunResult(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for Run to return")
		return runResult{}
	}
}

// metricTotals sums each metric the reader collected: counter values and
// histogram counts, by metric name.
func metricTotals(t *testing.T, reader sdkmetric.Reader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] += int64(p.Count)
				}
			}
		}
	}
	return got
}

// awaitUnindexed waits until the finished saga key has left the active-lease
// index. Its owner removes the entry after the write that ended the saga
// (on one Redis, in the same pipeline, which other clients may interleave),
// so a test that saw the ending write may still see the entry for a moment.
func awaitUnindexed(t *testing.T, rdb redis.UniversalClient, key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := rdb.ZScore(t.Context(), ActiveKey(key), key).Err()
		if errors.Is(err, redis.Nil) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("finished saga %s still in %s after 5 s: %v", key, ActiveKey(key), err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
