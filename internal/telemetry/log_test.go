package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/telemetry"
)

func TestLoggerAddsContextAttributes(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	spanCtx := trace.ContextWithSpanContext(context.Background(), sc)
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	missionCtx := telemetry.WithLogAttrs(spanCtx, slog.String("mission_id", "m-1"), slog.String("saga_id", "s-1"))

	tests := []struct {
		name string
		log  func(*slog.Logger)
		want map[string]any // expected top-level fields besides time, level, msg
	}{
		{
			name: "no context",
			log:  func(l *slog.Logger) { l.Info("hello", "k", 1) },
			want: map[string]any{"service": "mapping", "k": 1.0},
		},
		{
			name: "context without span",
			log:  func(l *slog.Logger) { l.InfoContext(context.Background(), "hello") },
			want: map[string]any{"service": "mapping"},
		},
		{
			name: "span ids",
			log:  func(l *slog.Logger) { l.InfoContext(spanCtx, "hello") },
			want: map[string]any{"service": "mapping", "trace_id": traceID, "span_id": spanID},
		},
		{
			name: "mission and saga ids",
			log:  func(l *slog.Logger) { l.WarnContext(missionCtx, "hello") },
			want: map[string]any{"service": "mapping", "trace_id": traceID, "span_id": spanID, "mission_id": "m-1", "saga_id": "s-1"},
		},
		{
			name: "later attribute replaces earlier",
			log: func(l *slog.Logger) {
				l.InfoContext(telemetry.WithLogAttrs(missionCtx, slog.String("mission_id", "m-2")), "hello")
			},
			want: map[string]any{"service": "mapping", "trace_id": traceID, "span_id": spanID, "mission_id": "m-2", "saga_id": "s-1"},
		},
		{
			name: "ids stay top-level inside groups",
			log: func(l *slog.Logger) {
				l.With("before", "x").WithGroup("req").With("a", 1).WithGroup("inner").InfoContext(missionCtx, "hello", "b", 2)
			},
			want: map[string]any{
				"service": "mapping", "trace_id": traceID, "span_id": spanID, "mission_id": "m-1", "saga_id": "s-1",
				"before": "x",
				"req":    map[string]any{"a": 1.0, "inner": map[string]any{"b": 2.0}},
			},
		},
		{
			name: "groups without context attributes",
			log:  func(l *slog.Logger) { l.WithGroup("req").Info("hello", "b", 2) },
			want: map[string]any{"service": "mapping", "req": map[string]any{"b": 2.0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tt.log(telemetry.NewLogger(&buf, "mapping", slog.LevelInfo))
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON line: %v\n%s", err, buf.String())
			}
			if got["msg"] != "hello" {
				t.Errorf("msg = %v, want hello", got["msg"])
			}
			for _, k := range []string{"time", "level", "msg"} {
				delete(got, k)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestLoggerLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := telemetry.NewLogger(&buf, "merge", slog.LevelWarn)
	l.InfoContext(context.Background(), "dropped")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %s", buf.String())
	}
	l.WarnContext(context.Background(), "kept")
	if !bytes.Contains(buf.Bytes(), []byte(`"msg":"kept"`)) {
		t.Fatalf("warn not logged: %s", buf.String())
	}
}

func TestWithLogAttrsDoesNotAliasParent(t *testing.T) {
	t.Parallel()
	parent := telemetry.WithLogAttrs(context.Background(), slog.String("mission_id", "m-1"))
	a := telemetry.WithLogAttrs(parent, slog.String("saga_id", "a"))
	b := telemetry.WithLogAttrs(parent, slog.String("saga_id", "b"))

	var buf bytes.Buffer
	l := telemetry.NewLogger(&buf, "orchestrator", slog.LevelInfo)
	l.InfoContext(a, "x")
	l.InfoContext(b, "x")
	l.InfoContext(parent, "x")
	dec := json.NewDecoder(&buf)
	for _, want := range []any{"a", "b", nil} {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		if line["saga_id"] != want || line["mission_id"] != "m-1" {
			t.Errorf("line %v: saga_id = %v, want %v; mission_id m-1", line, line["saga_id"], want)
		}
	}
}

// A line that names a key its context names too carries it once, with the
// line's value (found by a review: "saga compensated" had mission_id twice).
func TestContextAttributeTheLineSetsIsNotRepeated(t *testing.T) {
	var buf bytes.Buffer
	l := telemetry.NewLogger(&buf, "orchestrator", slog.LevelInfo)
	ctx := telemetry.WithLogAttrs(context.Background(), slog.String("mission_id", "m-1"), slog.String("saga_id", "s-1"), slog.String("principal", "alice"))
	l.InfoContext(ctx, "saga compensated", "mission_id", "m-1", "state", "compensated")
	line := buf.String()
	for key, n := range map[string]int{`"mission_id"`: 1, `"saga_id"`: 1, `"principal"`: 1, `"state"`: 1} {
		if got := bytes.Count([]byte(line), []byte(key)); got != n {
			t.Errorf("%s appears %d times in %s", key, got, line)
		}
	}
}

// WithCallAttrs reaches every line logged with a context of the call's
// scope, the scope's own context included (where the access line is
// written), replaces a key set before, yields to a WithLogAttrs key set
// inside the call, and acts as WithLogAttrs where there is no scope.
func TestWithCallAttrs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := telemetry.NewLogger(&buf, "orchestrator", slog.LevelInfo)
	scope := telemetry.WithCallScope(telemetry.WithLogAttrs(context.Background(), slog.String("mission_id", "m-1")))
	inner := telemetry.WithCallAttrs(scope, slog.String("principal", "bob"))
	inner = telemetry.WithCallAttrs(inner, slog.String("principal", "alice"))
	own := telemetry.WithLogAttrs(inner, slog.String("principal", "carol"))
	bare := telemetry.WithCallAttrs(context.Background(), slog.String("principal", "dave"))
	l.InfoContext(scope, "finished call")
	l.InfoContext(inner, "handler")
	l.InfoContext(own, "own")
	l.InfoContext(bare, "bare")
	l.InfoContext(context.Background(), "none")
	dec := json.NewDecoder(&buf)
	for _, want := range []any{"alice", "alice", "carol", "dave", nil} {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		if line["principal"] != want {
			t.Errorf("%v: principal %v, want %v", line["msg"], line["principal"], want)
		}
		if n := bytes.Count([]byte(fmt.Sprint(line)), []byte("principal:")); n > 1 {
			t.Errorf("%v names the principal %d times", line, n)
		}
	}
}

// Attributes set in a call scope from many goroutines while lines are
// logged race with nothing (go test -race) and all land.
func TestWithCallAttrsConcurrently(t *testing.T) {
	t.Parallel()
	l := telemetry.NewLogger(io.Discard, "orchestrator", slog.LevelInfo)
	scope := telemetry.WithCallScope(context.Background())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			telemetry.WithCallAttrs(scope, slog.Int(fmt.Sprint("k", i), i))
			l.InfoContext(scope, "x")
		})
	}
	wg.Wait()
	var buf bytes.Buffer
	telemetry.NewLogger(&buf, "orchestrator", slog.LevelInfo).InfoContext(scope, "x")
	for i := range 8 {
		if !bytes.Contains(buf.Bytes(), fmt.Appendf(nil, `"k%d":%d`, i, i)) {
			t.Errorf("k%d lost: %s", i, buf.String())
		}
	}
}
