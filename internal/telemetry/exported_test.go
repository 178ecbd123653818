package telemetry_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/telemetry"
)

func TestSpansRecordedOnlyWhenExported(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		processors bool
		// collector points OTEL_EXPORTER_OTLP_ENDPOINT at a collector.
		collector bool
		want      bool
	}{
		{name: "exporter none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, want: false},
		{name: "nothing configured", env: map[string]string{"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}, want: false},
		{name: "a span processor", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, processors: true, want: true},
		{name: "an OTLP endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": ""}, collector: true, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.collector {
				c := &traceCollector{got: make(chan *collectortrace.ExportTraceServiceRequest, 10)}
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startGRPCCollector(t, c))
			}
			var opts telemetry.Options
			rec := tracetest.NewSpanRecorder()
			if tt.processors {
				opts.SpanProcessors = []sdktrace.SpanProcessor{rec}
			}
			tel := setup(t, "mapping", opts)
			if got := tel.TracesExported(); got != tt.want {
				t.Errorf("TracesExported() = %v, want %v", got, tt.want)
			}
			_, span := tel.Tracer().Start(t.Context(), "step")
			sc := span.SpanContext()
			span.End()
			if span.IsRecording() && !tt.want {
				t.Error("a span is recorded with nothing to export it to")
			}
			if !sc.TraceID().IsValid() || !sc.SpanID().IsValid() {
				t.Errorf("span context %v has no valid ids: trace ids must reach events and logs either way", sc)
			}
			if sc.IsSampled() != tt.want {
				t.Errorf("span sampled = %v, want %v", sc.IsSampled(), tt.want)
			}
			if tt.processors && len(rec.Ended()) != 1 {
				t.Errorf("the span processor saw %d spans, want 1", len(rec.Ended()))
			}
		})
	}
}

func TestCommandMetricsOffByEnvironment(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want bool
	}{{"", true}, {"prometheus", true}, {"none", false}, {" none ", false}} {
		t.Run("OTEL_METRICS_EXPORTER="+tt.env, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "none")
			t.Setenv("OTEL_METRICS_EXPORTER", tt.env)
			if got := setup(t, "merge", telemetry.Options{}).CommandMetrics(); got != tt.want {
				t.Errorf("CommandMetrics() = %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkSpan is a span started and ended with nothing exporting it: the
// cost of every saga, gRPC and Redis span when tracing is off.
//
//	go test -run '^$' -bench 'Span$' -benchmem ./internal/telemetry
func BenchmarkSpan(b *testing.B) {
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	tel, err := telemetry.Setup(context.Background(), "orchestrator", telemetry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := tel.Tracer().Start(ctx, "step")
		span.End()
	}
}

// BenchmarkRedisGet is one GET on a real Redis through a client
// instrumented as cmd/slammesh does with tracing and metrics off
// (OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER=none: no hooks) and,
// for comparison, with both redisotel hooks installed as before.
//
//	go test -run '^$' -bench 'RedisGet' -benchmem ./internal/telemetry
func BenchmarkRedisGet(b *testing.B) {
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	b.Setenv("OTEL_METRICS_EXPORTER", "none")
	srv := redistest.Start(b)
	tel, err := telemetry.Setup(context.Background(), "orchestrator", telemetry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	for _, hooks := range []bool{false, true} {
		name := "hooks=off"
		if hooks {
			name = "hooks=tracing+metrics"
		}
		b.Run(name, func(b *testing.B) {
			rdb := srv.Client(b)
			if hooks || tel.TracesExported() {
				if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tel.TracerProvider()), redisotel.WithDBStatement(false)); err != nil {
					b.Fatal(err)
				}
			}
			if hooks || tel.CommandMetrics() {
				if err := redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(tel.MeterProvider())); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := rdb.Get(ctx, "k").Err(); err != nil && err != redis.Nil {
					b.Fatal(err)
				}
			}
		})
	}
}
