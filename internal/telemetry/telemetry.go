// Package telemetry sets up OpenTelemetry traces and metrics and structured
// logging for one slammesh service.
//
// Several services may share a process (`slammesh dev` runs all four), and
// each must still appear in Jaeger under its own name. So Setup builds one
// tracer provider and one meter provider per service, each with its own
// `service.name` resource, and never installs them as the OpenTelemetry
// globals: callers pass Telemetry.TracerProvider and Telemetry.MeterProvider
// to the instrumentation they build (otelgrpc, redisotel). The only global
// Setup touches is the text-map propagator (W3C TraceContext + Baggage),
// which is the same for every service.
//
// Trace export is configured only by the standard OTEL_* environment
// variables (see Setup). Metrics are served in the Prometheus text format by
// Telemetry.MetricsHandler from a registry private to the service. Logs are
// JSON lines from NewLogger, carrying the trace and span ids of the context
// they are logged with and any attributes attached with WithLogAttrs.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName is the scope of the tracer and meter returned by
// Telemetry.Tracer and Telemetry.Meter.
const instrumentationName = "github.com/slammesh/slammesh"

// Options tunes Setup. The zero value is valid: no extra resource attributes,
// no extra span processors, the exporter (if any) chosen by the environment.
type Options struct {
	// Version becomes the `service.version` resource attribute when set.
	Version string
	// Attributes are added to the service's resource. They override
	// attributes from OTEL_RESOURCE_ATTRIBUTES with the same key, and
	// `service.name` is always the service passed to Setup.
	Attributes []attribute.KeyValue
	// SpanProcessors are registered on the tracer provider in addition to the
	// exporter configured by the environment. Tests pass a
	// tracetest.SpanRecorder here (one recorder may be shared by several
	// services to collect a whole trace in one process); wrap a
	// sdktrace.SpanExporter with sdktrace.NewSimpleSpanProcessor or
	// sdktrace.NewBatchSpanProcessor to inject an exporter.
	SpanProcessors []sdktrace.SpanProcessor
	// MetricReaders are registered on the meter provider in addition to the
	// Prometheus exporter, e.g. an sdkmetric.ManualReader in tests that
	// assert on metric values.
	MetricReaders []sdkmetric.Reader
}

// Telemetry holds the tracer provider, meter provider and Prometheus registry
// of one service. It is safe for concurrent use.
type Telemetry struct {
	service string
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	tracer  trace.Tracer
	meter   metric.Meter
	metrics http.Handler
	// tracesExported: some span processor sees the spans (an OTLP exporter
	// or Options.SpanProcessors); see TracesExported.
	tracesExported bool
	// commandMetrics: OTEL_METRICS_EXPORTER is not "none"; see
	// CommandMetrics.
	commandMetrics bool

	shutdownOnce sync.Once
	shutdownErr  error
}

var installPropagator sync.Once

// propagator is the W3C TraceContext + Baggage propagator Setup installs as
// the global text-map propagator.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Setup creates the tracer and meter providers of one service.
//
// Trace export follows the OpenTelemetry environment variables:
//   - OTEL_TRACES_EXPORTER=none, or no OTLP endpoint configured and
//     OTEL_TRACES_EXPORTER unset: no exporter. Unless Options.SpanProcessors
//     are given, no span is recorded either (the sampler drops every span):
//     nothing would read it, and recording costs an allocation-heavy span
//     per call. A dropped span still carries a valid span context with
//     fresh ids, so trace ids reach events, logs and StartMission
//     responses all the same (unsampled: flags 00 in traceparent).
//     TracesExported is false then, and the caller leaves out
//     instrumentation that only makes spans (RedisTracing's hook).
//   - OTEL_TRACES_EXPORTER=otlp, or OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set: OTLP through a batch span
//     processor. The protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
//     OTEL_EXPORTER_OTLP_PROTOCOL, "grpc" (the default here, unlike the
//     specification's http/protobuf, because Jaeger's OTLP gRPC port is the
//     one slammesh documents) or "http/protobuf". Endpoint, headers, TLS,
//     timeout and compression are read by the OTLP exporter itself from the
//     usual OTEL_EXPORTER_OTLP_* variables; batching from OTEL_BSP_*;
//     sampling from OTEL_TRACES_SAMPLER.
//   - Any other OTEL_TRACES_EXPORTER value, or an unknown protocol, is an
//     error.
//
// The resource merges OTEL_RESOURCE_ATTRIBUTES, host and process attributes
// and Options.Attributes, but `service.name` is always service: neither
// OTEL_SERVICE_NAME nor a service.name in OTEL_RESOURCE_ATTRIBUTES overrides
// it, because in dev mode one environment is shared by four services.
//
// Metrics are never pushed: the meter provider feeds a Prometheus exporter
// registered, together with the Go runtime and process collectors, on a
// registry private to this Telemetry, served by MetricsHandler.
// OTEL_METRICS_EXPORTER=none turns off the per-command metrics of
// instrumentation that asks CommandMetrics (redisotel's metrics hook); the
// handler serves the rest as before. Exemplars are off unless
// OTEL_METRICS_EXEMPLAR_FILTER asks for them: the handler serves the
// Prometheus text format, which carries none, and the SDK's default
// (trace_based) would otherwise sample one on every measurement made in a
// sampled trace, a cost only traced requests pay (about 1 % of the mesh's
// CPU on traced orchestration-only missions).
//
// The caller must call Shutdown to flush buffered spans.
func Setup(ctx context.Context, service string, opts Options) (*Telemetry, error) {
	if service == "" {
		return nil, errors.New("telemetry: empty service name")
	}
	installPropagator.Do(func() { otel.SetTextMapPropagator(propagator) })

	res, err := newResource(ctx, service, opts)
	if err != nil {
		return nil, err
	}

	exporter, err := newSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: service %s: %w", service, err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exporter))
	}
	tracesExported := exporter != nil || len(opts.SpanProcessors) > 0
	if !tracesExported {
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	for _, p := range opts.SpanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	promExporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		// The tracer provider holds an exporter (and its connection) already.
		return nil, errors.Join(fmt.Errorf("telemetry: prometheus exporter: %w", err), tp.Shutdown(ctx))
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry: go collector: %w", err), tp.Shutdown(ctx))
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry: process collector: %w", err), tp.Shutdown(ctx))
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	if strings.TrimSpace(os.Getenv(envExemplarFilter)) == "" {
		mpOpts = append(mpOpts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	for _, r := range opts.MetricReaders {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)

	t := &Telemetry{
		service: service,
		tp:      tp,
		mp:      mp,
		tracer:  tp.Tracer(instrumentationName),
		meter:   mp.Meter(instrumentationName),
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),

		tracesExported: tracesExported,
		commandMetrics: strings.TrimSpace(os.Getenv(envMetricsExporter)) != exporterNone,
	}
	return t, nil
}

// newResource builds the service's resource. Detectors run in order and later
// ones win, so the service name goes last.
func newResource(ctx context.Context, service string, opts Options) (*resource.Resource, error) {
	attrs := append([]attribute.KeyValue{}, opts.Attributes...)
	if opts.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(opts.Version))
	}
	attrs = append(attrs, semconv.ServiceName(service))
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource for %s: %w", service, err)
	}
	return res, nil
}

// Service returns the service name given to Setup.
func (t *Telemetry) Service() string { return t.service }

// TracerProvider returns the service's tracer provider, for instrumentation
// such as otelgrpc and RedisTracing.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// TracesExported reports whether spans go anywhere: an OTLP exporter from
// the environment or Options.SpanProcessors. When false every span is
// dropped at creation (see Setup), so instrumentation that only makes
// spans, such as RedisTracing's hook on every command, is pure cost:
// install it only when this is true.
func (t *Telemetry) TracesExported() bool { return t.tracesExported }

// CommandMetrics reports whether per-command metrics (redisotel's
// histogram of every Redis command) are wanted: false when
// OTEL_METRICS_EXPORTER=none, the standard way to turn metrics off, which
// saves an attribute set and a histogram update per command.
func (t *Telemetry) CommandMetrics() bool { return t.commandMetrics }

// MeterProvider returns the service's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator returns the W3C TraceContext + Baggage propagator that Setup
// installs globally, for instrumentation that takes one explicitly.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return propagator }

// Tracer returns the service's tracer for slammesh's own spans (the saga's
// mission and step spans, for instance).
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// Meter returns the service's meter for slammesh's own metrics.
func (t *Telemetry) Meter() metric.Meter { return t.meter }

// MetricsHandler serves the service's registry (OpenTelemetry metrics of this
// service plus Go runtime and process metrics) in the Prometheus format.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Shutdown flushes buffered spans to the exporter and stops both providers.
// Give it a fresh context with a deadline, not the one that was cancelled to
// start the shutdown. Only the first call does the work; later calls return
// its result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: %s tracer provider shutdown: %w", t.service, err))
		}
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: %s meter provider shutdown: %w", t.service, err))
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}
