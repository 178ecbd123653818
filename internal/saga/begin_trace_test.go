package saga

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/slammesh/slammesh/internal/telemetry"
)

// TestBeginWritesUnderTheMissionSpan: the round trips of Begin's create —
// the mission's first write, which records its first step's start and its
// mission.started — are children of the mission span, like every later
// write of the mission, not of the caller's span beside it.
func TestBeginWritesUnderTheMissionSpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	f := newFixture(t, nil)
	e := f.replica(t, "A", quietLease, Options{Tracer: tp.Tracer("saga")}, telemetry.RedisTracing(tp))
	ctx, caller := tp.Tracer("test").Start(t.Context(), "StartMission")
	if _, created, err := e.Begin(ctx, "m", "", nil); err != nil || !created {
		t.Fatalf("Begin = created %v, %v", created, err)
	}
	caller.End()
	if r, err := e.Run(t.Context(), "m"); err != nil || r.State != Completed {
		t.Fatalf("Run = %v, %v", r, err)
	}
	var mission sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "mission m" {
			mission = s
		}
	}
	if mission == nil {
		t.Fatal("no mission span")
	}
	writes := 0
	for _, s := range rec.Ended() {
		if !strings.HasPrefix(s.Name(), "redis") || strings.Contains(s.Name(), "hello") || strings.Contains(s.Name(), "client") {
			continue // not a Redis span, or the set-up of a connection dialed meanwhile
		}
		writes++
		if s.Parent().SpanID() != mission.SpanContext().SpanID() {
			parent := "another span"
			if s.Parent().SpanID() == caller.SpanContext().SpanID() {
				parent = "the caller's span"
			}
			t.Errorf("Redis span %q is a child of %s, want the mission span", s.Name(), parent)
		}
	}
	if writes == 0 {
		t.Error("no Redis span recorded")
	}
}
