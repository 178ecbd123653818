package telemetry_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// TestRedisTracing: a command or pipeline sent under a sampled span is a
// child client span named after its commands; outside one (background
// work) nothing is recorded; a failure marks the span, a missing key does
// not.
func TestRedisTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rdb := redistest.StartServer(t).Client(t)
	rdb.AddHook(telemetry.RedisTracing(tp))

	ctx, parent := tp.Tracer("test").Start(t.Context(), "step")
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing: %v", err)
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"f", strings.Repeat("x", 4096)}})
		p.Set(ctx, "k", "w", 0)
		p.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"f", "y"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, "k", "f", "v").Err(); err == nil {
		t.Fatal("HSET on a string: no error")
	}
	// Background work: no span of its own.
	if err := rdb.Set(context.Background(), "bg", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var names []string
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.Name() == "step" || strings.Contains(s.Name(), "hello") || strings.Contains(s.Name(), "client") {
			continue // the step itself, and the set-up of connections dialed during it
		}
		names = append(names, s.Name())
		byName[s.Name()] = s
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %s: parent %v kind %v, want a client span under step", s.Name(), s.Parent().SpanID(), s.SpanKind())
		}
	}
	if want := []string{"redis set", "redis get", "redis.pipeline xadd set", "redis hset"}; !slices.Equal(names, want) {
		t.Fatalf("spans %v, want %v", names, want)
	}
	if st := byName["redis get"].Status(); st.Code == codes.Error {
		t.Errorf("a missing key marked its span failed: %v", st)
	}
	if st := byName["redis hset"].Status(); st.Code != codes.Error || !strings.Contains(st.Description, "WRONGTYPE") {
		t.Errorf("HSET on a string: span status %v, want the WRONGTYPE error", st)
	}
	attrs := map[string]string{}
	for _, a := range byName["redis.pipeline xadd set"].Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["db.system.name"] != "redis" || attrs["db.operation.batch.size"] != "3" {
		t.Errorf("pipeline attributes %v, want db.system.name redis and db.operation.batch.size 3", attrs)
	}
	for k, v := range attrs {
		if strings.Contains(v, "xxxx") {
			t.Errorf("attribute %s carries the arguments", k)
		}
	}
}

// BenchmarkRedisTracingPipeline is traced pipelines of a saga save's shape
// (an EVALSHA with a 4 KiB argument, then an XADD) under a sampled span,
// through RedisTracing and, for comparison, redisotel's tracing hook (which
// names the span by formatting every argument).
//
//	go test -run '^$' -bench 'RedisTracingPipeline' -benchmem ./internal/telemetry
func BenchmarkRedisTracingPipeline(b *testing.B) {
	srv := redistest.StartServer(b)
	blob := strings.Repeat("x", 4096)
	script := redis.NewScript(`return 1`)
	for _, hook := range []string{"slammesh", "redisotel"} {
		b.Run(hook, func(b *testing.B) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			rdb := srv.Client(b)
			if hook == "slammesh" {
				rdb.AddHook(telemetry.RedisTracing(tp))
			} else if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp), redisotel.WithDBStatement(false)); err != nil {
				b.Fatal(err)
			}
			ctx, span := tp.Tracer("bench").Start(b.Context(), "mission")
			defer span.End()
			if err := script.Load(ctx, rdb).Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			// 16 pipelines per CPU in flight: the CPU, not the round trip,
			// bounds the rate, so the hooks' cost shows in ns/op.
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
						script.EvalSha(ctx, p, []string{"{m}:saga"}, "1", "2", blob)
						p.XAdd(ctx, &redis.XAddArgs{Stream: "{m}:events", MaxLen: 100, Approx: true, Values: []any{"type", "step.completed"}})
						return nil
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
