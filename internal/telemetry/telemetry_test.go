package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/slammesh/slammesh/internal/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// setup calls telemetry.Setup and shuts the result down at the end of the test.
func setup(t *testing.T, service string, opts telemetry.Options) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(t.Context(), service, opts)
	if err != nil {
		t.Fatalf("Setup(%q): %v", service, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown(%q): %v", service, err)
		}
	})
	return tel
}

func serviceName(attrs []attribute.KeyValue) string {
	for _, kv := range attrs {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func TestSetupSharedRecorderKeepsServicesApart(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	rec := tracetest.NewSpanRecorder()
	services := []string{"orchestrator", "mapping", "localization", "merge"}
	for _, svc := range services {
		tel := setup(t, svc, telemetry.Options{SpanProcessors: []sdktrace.SpanProcessor{rec}})
		_, span := tel.Tracer().Start(t.Context(), "work "+svc)
		span.End()
	}

	got := map[string]string{} // span name -> service.name of its resource
	for _, s := range rec.Ended() {
		got[s.Name()] = serviceName(s.Resource().Attributes())
	}
	for _, svc := range services {
		if got["work "+svc] != svc {
			t.Errorf("span %q has service.name %q, want %q (all: %v)", "work "+svc, got["work "+svc], svc, got)
		}
	}
	if len(got) != len(services) {
		t.Errorf("recorded %d spans, want %d: %v", len(got), len(services), got)
	}
}

func TestSetupInstallsW3CPropagatorOnly(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	before := otel.GetTracerProvider()
	tel := setup(t, "mapping", telemetry.Options{})
	setup(t, "merge", telemetry.Options{})

	if otel.GetTracerProvider() != before {
		t.Error("Setup replaced the global tracer provider; services in one process would share it")
	}
	fields := otel.GetTextMapPropagator().Fields()
	for _, want := range []string{"traceparent", "tracestate", "baggage"} {
		if !strings.Contains(strings.Join(fields, ","), want) {
			t.Errorf("global propagator fields %v lack %q", fields, want)
		}
	}

	// Spans from the service's tracer carry trace ids that the propagator injects.
	ctx, span := tel.Tracer().Start(t.Context(), "op")
	defer span.End()
	carrier := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx, carrier)
	if !strings.Contains(carrier["traceparent"], span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q does not carry trace id %s", carrier["traceparent"], span.SpanContext().TraceID())
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		service string
		env     map[string]string
	}{
		{name: "empty service", service: "", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "unknown exporter", service: "mapping", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}},
		{name: "unknown protocol", service: "mapping", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		}},
		{name: "malformed resource attributes", service: "mapping", env: map[string]string{
			"OTEL_TRACES_EXPORTER": "none", "OTEL_RESOURCE_ATTRIBUTES": "no-equals-sign",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(t.Context(), tt.service, telemetry.Options{})
			if err == nil {
				_ = tel.Shutdown(t.Context())
				t.Fatal("Setup succeeded, want an error")
			}
		})
	}
}

// traceCollector receives OTLP trace export requests over gRPC or HTTP.
type traceCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	got chan *collectortrace.ExportTraceServiceRequest
}

func (c *traceCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.got <- req
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// startGRPCCollector serves the OTLP trace service on a free port and returns
// its endpoint URL.
func startGRPCCollector(t *testing.T, c *traceCollector) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	return "http://" + lis.Addr().String()
}

// startHTTPCollector serves OTLP/HTTP protobuf trace requests and returns the
// endpoint URL.
func startHTTPCollector(t *testing.T, c *traceCollector) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		c.got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestSetupExportsOTLPFromEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		protocol string // OTEL_EXPORTER_OTLP_PROTOCOL; empty means the default (grpc)
		start    func(*testing.T, *traceCollector) string
	}{
		{name: "default protocol is grpc", protocol: "", start: startGRPCCollector},
		{name: "grpc", protocol: "grpc", start: startGRPCCollector},
		{name: "http/protobuf", protocol: "http/protobuf", start: startHTTPCollector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &traceCollector{got: make(chan *collectortrace.ExportTraceServiceRequest, 16)}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tt.start(t, c))
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tt.protocol)
			t.Setenv("OTEL_SERVICE_NAME", "from-env")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci,service.name=from-attrs")

			tel, err := telemetry.Setup(t.Context(), "mapping", telemetry.Options{Version: "1.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tel.Tracer().Start(t.Context(), "allocate")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil { // flushes the batch processor
				t.Fatalf("Shutdown: %v", err)
			}

			var req *collectortrace.ExportTraceServiceRequest
			select {
			case req = <-c.got:
			default:
				t.Fatal("collector received nothing by the end of Shutdown")
			}
			rs := req.GetResourceSpans()
			if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
				t.Fatalf("want one span, got %v", req)
			}
			if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "allocate" {
				t.Errorf("span name %q, want allocate", name)
			}
			res := map[string]string{}
			for _, kv := range rs[0].GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for k, want := range map[string]string{
				"service.name":                "mapping",
				"service.version":             "1.2.3",
				"deployment.environment.name": "ci",
			} {
				if res[k] != want {
					t.Errorf("resource %s = %q, want %q", k, res[k], want)
				}
			}
		})
	}
}

func TestMetricsHandlerServesMeterProviderCounter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	reader := sdkmetric.NewManualReader()
	tel := setup(t, "orchestrator", telemetry.Options{MetricReaders: []sdkmetric.Reader{reader}})
	other := setup(t, "mapping", telemetry.Options{})

	counter, err := tel.MeterProvider().Meter("test").Int64Counter("slammesh.missions.started")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 3)

	body := scrape(t, tel.MetricsHandler())
	for _, want := range []string{
		"slammesh_missions_started_total{",
		`service_name="orchestrator"`, // target_info carries the service's resource
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if !hasSampleValue(body, "slammesh_missions_started_total{", "3") {
		t.Errorf("/metrics does not report missions_started = 3:\n%s", body)
	}
	if otherBody := scrape(t, other.MetricsHandler()); strings.Contains(otherBody, "slammesh_missions_started_total") {
		t.Error("a second service's registry serves the first service's counter; registries must be per service")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 || len(rm.ScopeMetrics[0].Metrics) != 1 ||
		rm.ScopeMetrics[0].Metrics[0].Name != "slammesh.missions.started" {
		t.Errorf("extra metric reader saw %+v, want the counter", rm.ScopeMetrics)
	}
}

// TestExemplarsOffUnlessAsked: a measurement made in a sampled span keeps
// no exemplar by default (the Prometheus text format serves none), and one
// when OTEL_METRICS_EXEMPLAR_FILTER asks for them.
func TestExemplarsOffUnlessAsked(t *testing.T) {
	for _, tt := range []struct {
		filter string // "": unset
		want   int
	}{{"", 0}, {"trace_based", 1}} {
		t.Run("filter="+tt.filter, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "none")
			if tt.filter != "" {
				t.Setenv("OTEL_METRICS_EXEMPLAR_FILTER", tt.filter)
			}
			reader := sdkmetric.NewManualReader()
			tel := setup(t, "orchestrator", telemetry.Options{
				SpanProcessors: []sdktrace.SpanProcessor{tracetest.NewSpanRecorder()},
				MetricReaders:  []sdkmetric.Reader{reader},
			})
			counter, err := tel.Meter().Int64Counter("slammesh.test.calls")
			if err != nil {
				t.Fatal(err)
			}
			ctx, span := tel.Tracer().Start(t.Context(), "call")
			if !span.SpanContext().IsSampled() {
				t.Fatal("span not sampled: the test would not exercise exemplars")
			}
			counter.Add(ctx, 1)
			span.End()

			var rm metricdata.ResourceMetrics
			if err := reader.Collect(t.Context(), &rm); err != nil {
				t.Fatal(err)
			}
			sum, ok := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64])
			if !ok || len(sum.DataPoints) != 1 {
				t.Fatalf("collected %+v, want one sum point", rm.ScopeMetrics)
			}
			if got := len(sum.DataPoints[0].Exemplars); got != tt.want {
				t.Errorf("exemplars = %d, want %d", got, tt.want)
			}
		})
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("/metrics status %d", rr.Code)
	}
	return rr.Body.String()
}

// hasSampleValue reports whether a line of a Prometheus text exposition
// starting with prefix has the sample value want.
func hasSampleValue(body, prefix, want string) bool {
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, prefix) && strings.HasSuffix(line, "} "+want) {
			return true
		}
	}
	return false
}

func TestShutdownIsIdempotent(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	tel, err := telemetry.Setup(t.Context(), "merge", telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := tel.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
}
