package grpcserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// callTimeout bounds every RPC and wait in these tests so that a bug fails
// the test instead of hanging it.
const callTimeout = 10 * time.Second

// testService implements grpc.testing.TestService with pluggable handlers.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	calls  atomic.Int64 // EmptyCall invocations
	unary  func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error)
	stream func(*testgrpc.StreamingOutputCallRequest, grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error
}

func (s *testService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.calls.Add(1)
	return &testgrpc.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return s.unary(ctx, req)
}

func (s *testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	return s.stream(req, stream)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines to write
// while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// find returns the log lines whose msg is msg.
func (b *syncBuffer) find(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// harness is a running Server with a TestService and a client dialled to it.
type harness struct {
	srv      *grpcserver.Server
	svc      *testService
	tel      *telemetry.Telemetry
	spans    *tracetest.SpanRecorder
	logs     *syncBuffer
	conn     *grpc.ClientConn
	client   testgrpc.TestServiceClient
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// setupTelemetry returns a Telemetry for service whose spans go to a recorder.
func setupTelemetry(t testing.TB, service string) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(t.Context(), service, telemetry.Options{SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("telemetry shutdown: %v", err)
		}
	})
	return tel, rec
}

// start runs a Server for service "mapping" on free loopback ports; edit may
// adjust its Config and Deps. The server is stopped at cleanup.
func start(t testing.TB, svc *testService, edit func(*grpcserver.Config, *grpcserver.Deps)) *harness {
	t.Helper()
	h := &harness{svc: svc, logs: &syncBuffer{}, done: make(chan error, 1)}
	h.tel, h.spans = setupTelemetry(t, "mapping")
	cfg := grpcserver.Config{Service: "mapping", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}
	deps := grpcserver.Deps{Telemetry: h.tel, Logger: telemetry.NewLogger(h.logs, "mapping", slog.LevelDebug)}
	if edit != nil {
		edit(&cfg, &deps)
	}
	srv, err := grpcserver.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	testgrpc.RegisterTestServiceServer(srv, svc)

	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Serve(ctx) }()

	h.conn, err = grpcserver.Dial(srv.Addr().String(), h.tel)
	if err != nil {
		t.Fatal(err)
	}
	h.client = testgrpc.NewTestServiceClient(h.conn)
	t.Cleanup(func() {
		if err := h.stop(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := h.conn.Close(); err != nil {
			t.Errorf("client close: %v", err)
		}
	})
	return h
}

// stop cancels Serve's context and returns Serve's result.
func (h *harness) stop(t testing.TB) error {
	t.Helper()
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case h.stopErr = <-h.done:
		case <-time.After(callTimeout):
			t.Fatal("Serve did not return after its context was cancelled")
		}
	})
	return h.stopErr
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// httpGet fetches a path from the server's HTTP port without keeping the
// connection alive (an idle keep-alive connection would outlive the test).
func httpGet(t *testing.T, h *harness, path string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: callTimeout}
	resp, err := client.Get("http://" + h.srv.HTTPAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// await polls cond until it holds or callTimeout elapses. It is for states
// another goroutine reaches with no event to wait on (an HTTP status).
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tel, _ := setupTelemetry(t, "mapping")
	logger := telemetry.NewLogger(io.Discard, "mapping", slog.LevelInfo)
	good := grpcserver.Config{Service: "mapping", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}
	deps := grpcserver.Deps{Telemetry: tel, Logger: logger}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		cfg  func(*grpcserver.Config)
		deps func(*grpcserver.Deps)
	}{
		{name: "empty service", cfg: func(c *grpcserver.Config) { c.Service = "" }},
		{name: "empty grpc addr", cfg: func(c *grpcserver.Config) { c.GRPCAddr = "" }},
		{name: "empty http addr", cfg: func(c *grpcserver.Config) { c.HTTPAddr = "" }},
		{name: "negative grace", cfg: func(c *grpcserver.Config) { c.GracePeriod = -time.Second }},
		{name: "negative message size", cfg: func(c *grpcserver.Config) { c.MaxMessageBytes = -1 }},
		{name: "negative keepalive", cfg: func(c *grpcserver.Config) { c.KeepaliveMinTime = -time.Second }},
		{name: "negative stream workers", cfg: func(c *grpcserver.Config) { c.StreamWorkers = -1 }},
		{name: "unparsable grpc addr", cfg: func(c *grpcserver.Config) { c.GRPCAddr = "127.0.0.1:notaport" }},
		{name: "grpc port in use", cfg: func(c *grpcserver.Config) { c.GRPCAddr = busy.Addr().String() }},
		{name: "http port in use", cfg: func(c *grpcserver.Config) { c.HTTPAddr = busy.Addr().String() }},
		{name: "no telemetry", deps: func(d *grpcserver.Deps) { d.Telemetry = nil }},
		{name: "no logger", deps: func(d *grpcserver.Deps) { d.Logger = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, d := good, deps
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if tt.deps != nil {
				tt.deps(&d)
			}
			srv, err := grpcserver.New(cfg, d)
			if err == nil {
				_ = srv.Close()
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestUnservedServerReleasesPorts(t *testing.T) {
	tel, _ := setupTelemetry(t, "merge")
	tests := []struct {
		name    string
		release func(*grpcserver.Server) error
	}{
		{name: "Close before Serve", release: func(s *grpcserver.Server) error {
			if err := s.Close(); err != nil {
				return err
			}
			return s.Close() // idempotent
		}},
		{name: "Serve with a cancelled context", release: func(s *grpcserver.Server) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return s.Serve(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := grpcserver.New(
				grpcserver.Config{Service: "merge", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
				grpcserver.Deps{Telemetry: tel, Logger: telemetry.NewLogger(io.Discard, "merge", slog.LevelInfo)},
			)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.release(srv); err != nil {
				t.Fatalf("release: %v", err)
			}
			for _, addr := range []net.Addr{srv.Addr(), srv.HTTPAddr()} {
				lis, err := net.Listen("tcp", addr.String())
				if err != nil {
					t.Fatalf("port %s still held: %v", addr, err)
				}
				lis.Close()
			}
		})
	}
}

func TestServeAfterCloseReturnsAndServeTwiceFails(t *testing.T) {
	tel, _ := setupTelemetry(t, "merge")
	srv, err := grpcserver.New(
		grpcserver.Config{Service: "merge", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: telemetry.NewLogger(io.Discard, "merge", slog.LevelInfo)},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(t.Context()); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if err := srv.Serve(t.Context()); err == nil {
		t.Error("second Serve succeeded, want an error")
	}
}

func TestHealthServingThenNotServingOnShutdown(t *testing.T) {
	h := start(t, &testService{}, nil)
	ctx := callCtx(t)
	health := healthpb.NewHealthClient(h.conn)

	for _, svc := range []string{"", "grpc.testing.TestService"} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}
	if code, body := httpGet(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q while serving, want 200", code, body)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch update = %v, %v; want SERVING", resp, err)
	}

	h.cancel()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch update after shutdown began = %v, %v; want NOT_SERVING", resp, err)
	}
	// The watch is itself an in-flight call that GracefulStop waits for.
	stopWatch()
	if err := h.stop(t); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
}

// Calls beyond the kept stream workers must not wait for one: an
// orchestrator's waiting StartMission calls hold theirs for a whole mission.
func TestCallsBeyondTheStreamWorkersRunAtOnce(t *testing.T) {
	const workers, calls = 2, 6
	entered, release := make(chan struct{}, calls), make(chan struct{})
	svc := &testService{unary: func(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return &testgrpc.SimpleResponse{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	h := start(t, svc, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.StreamWorkers = workers })

	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			errs <- err
		}()
	}
	for i := range calls {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d calls entered their handler while %d were held", i, calls, i)
		}
	}
	close(release)
	for range calls {
		if err := <-errs; err != nil {
			t.Errorf("call: %v", err)
		}
	}
}

func TestShutdownDrainsInFlightCalls(t *testing.T) {
	tests := []struct {
		name     string
		grace    time.Duration
		release  bool       // the test lets the blocked handler finish
		wantCode codes.Code // of the in-flight call
		hardStop bool       // the grace period elapses and Stop fires
	}{
		{name: "graceful stop waits for the call", grace: time.Minute, release: true, wantCode: codes.OK},
		{name: "hard stop after the grace period", grace: 50 * time.Millisecond, release: false, wantCode: codes.Unavailable, hardStop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			handlerErr := make(chan error, 1)
			svc := &testService{unary: func(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
				close(entered)
				select {
				case <-release:
					handlerErr <- nil
					return &testgrpc.SimpleResponse{}, nil
				case <-ctx.Done():
					handlerErr <- ctx.Err()
					return nil, ctx.Err()
				}
			}}
			h := start(t, svc, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.GracePeriod = tt.grace })

			callErr := make(chan error, 1)
			go func() {
				_, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
				callErr <- err
			}()
			<-entered
			h.cancel()

			if tt.release {
				// HTTP stays up while gRPC drains, reporting the drain.
				await(t, "/healthz 503 during drain", func() bool {
					code, _ := httpGet(t, h, "/healthz")
					return code == http.StatusServiceUnavailable
				})
				select {
				case err := <-h.done:
					t.Fatalf("Serve returned %v while a call was in flight", err)
				default:
				}
				close(release)
			}

			if err := <-callErr; status.Code(err) != tt.wantCode {
				t.Errorf("in-flight call error = %v, want code %v", err, tt.wantCode)
			}
			if err := h.stop(t); err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
			if err := <-handlerErr; (err != nil) != tt.hardStop {
				t.Errorf("handler ended with %v; hard stop %v", err, tt.hardStop)
			}
			if got := len(h.logs.find(t, "grace period elapsed, stopping in-flight calls")); (got > 0) != tt.hardStop {
				t.Errorf("hard-stop log lines = %d, want hard stop %v", got, tt.hardStop)
			}
		})
	}
}

func TestPanicBecomesInternalAndServerStaysUp(t *testing.T) {
	svc := &testService{
		unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
			panic("unary secret")
		},
		stream: func(*testgrpc.StreamingOutputCallRequest, grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
			panic("stream secret")
		},
	}
	h := start(t, svc, nil)

	tests := []struct {
		name   string
		secret string
		call   func(context.Context) error
	}{
		{name: "unary", secret: "unary secret", call: func(ctx context.Context) error {
			_, err := h.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			return err
		}},
		{name: "stream", secret: "stream secret", call: func(ctx context.Context) error {
			stream, err := h.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(callCtx(t))
			if status.Code(err) != codes.Internal {
				t.Fatalf("error = %v, want code Internal", err)
			}
			if r := rpcerr.Reason(err); r != rpcerr.ReasonInternal {
				t.Errorf("ErrorInfo reason = %q, want %s", r, rpcerr.ReasonInternal)
			}
			if strings.Contains(err.Error(), tt.secret) {
				t.Errorf("panic value leaked to the client: %v", err)
			}
			var logged bool
			for _, l := range h.logs.find(t, "grpc handler panicked") {
				stack, _ := l["stack"].(string)
				logged = logged || (l["panic"] == tt.secret && strings.Contains(stack, "server_test.go"))
			}
			if !logged {
				t.Errorf("no panic log line with value %q and stack", tt.secret)
			}
			if _, err := h.client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
				t.Errorf("server not serving after the panic: %v", err)
			}
		})
	}
}

func TestReflectionListsRegisteredServices(t *testing.T) {
	h := start(t, &testService{}, nil)
	ctx, cancel := context.WithCancel(callCtx(t))
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"grpc.testing.TestService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPPortServesMetricsAndHealthz(t *testing.T) {
	h := start(t, &testService{}, nil)
	if _, err := h.client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}

	// The server records a call's duration when its stats handler sees the
	// call end, which is after the client has the response: poll for it.
	var body string
	await(t, "a server duration count of 1 for EmptyCall", func() bool {
		var code int
		code, body = httpGet(t, h, "/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics = %d", code)
		}
		return metricLineContains(body, "rpc_server_call_duration_seconds_count{", "EmptyCall", "} 1")
	})
	for _, want := range []string{"rpc_server_call_duration_seconds_count{", "rpc_client_call_duration_seconds_count{", "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := httpGet(t, h, "/healthz"); code != http.StatusOK || !strings.Contains(body, "SERVING") {
		t.Errorf("GET /healthz = %d %q", code, body)
	}
	// pprof is off unless asked for: a heap dump and a CPU profiler are not
	// for whoever reaches the port.
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/profile"} {
		if code, _ := httpGet(t, h, path); code != http.StatusNotFound {
			t.Errorf("GET %s without EnablePprof = %d, want 404", path, code)
		}
	}
}

func TestPprofWhenEnabled(t *testing.T) {
	h := start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.EnablePprof = true })
	for _, tt := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/cmdline", "grpcserver"},
	} {
		if code, body := httpGet(t, h, tt.path); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d, body lacks %q", tt.path, code, tt.want)
		}
	}
}

func TestRequestOverTheLimitIsResourceExhausted(t *testing.T) {
	const limit = 64 << 10
	ok := func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		return &testgrpc.SimpleResponse{}, nil
	}
	h := start(t, &testService{unary: ok}, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.MaxMessageBytes = limit })
	_, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, limit+1)}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), strconv.Itoa(limit)) {
		t.Fatalf("request over %d bytes: got %v, want RESOURCE_EXHAUSTED naming the limit", limit, err)
	}
	if _, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, limit/2)}}); err != nil {
		t.Fatalf("request under the limit: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:50051": true, "127.0.0.2:0": true, "[::1]:50051": true, "localhost:9091": true,
		":50051": false, "0.0.0.0:50051": false, "[::]:50051": false, "10.0.0.5:50051": false,
		"mapping:50052": false, "garbage": false,
	} {
		if got := grpcserver.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func metricLineContains(body, prefix string, parts ...string) bool {
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, prefix) && allContained(line, parts) {
			return true
		}
	}
	return false
}

func allContained(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func TestCallsAreLoggedWithCodeDurationAndTraceID(t *testing.T) {
	h := start(t, &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		return nil, status.Error(codes.NotFound, "no such map")
	}}, nil)
	ctx, span := h.tel.Tracer().Start(callCtx(t), "caller")
	defer span.End()

	if _, err := h.client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("UnaryCall = %v, want NotFound", err)
	}
	if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	lines := h.logs.find(t, "finished call")
	want := map[string]string{"EmptyCall": "OK", "UnaryCall": "NotFound"}
	for _, l := range lines {
		if l["grpc.service"] == "grpc.health.v1.Health" {
			t.Errorf("health check was logged: %v", l)
		}
		method, _ := l["grpc.method"].(string)
		code, ok := want[method]
		if !ok {
			continue
		}
		delete(want, method)
		if l["grpc.code"] != code {
			t.Errorf("%s logged with code %v, want %s", method, l["grpc.code"], code)
		}
		if _, ok := l["grpc.time_ms"].(float64); !ok {
			t.Errorf("%s log line has no duration: %v", method, l)
		}
		if l["trace_id"] != span.SpanContext().TraceID().String() || l["service"] != "mapping" {
			t.Errorf("%s log line trace_id %v service %v, want %s mapping", method, l["trace_id"], l["service"], span.SpanContext().TraceID())
		}
	}
	if len(want) != 0 {
		t.Errorf("no call log line for %v among %v", want, lines)
	}
}

func TestExtraInterceptorsRunInOrderInsideTheSpan(t *testing.T) {
	var (
		mu    sync.Mutex
		order []string
	)
	record := func(name string, ctx context.Context) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, fmt.Sprintf("%s span=%v", name, trace.SpanContextFromContext(ctx).IsValid()))
	}
	unary := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			record(name, ctx)
			return next(ctx, req)
		}
	}
	streamIC := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		record("stream", ss.Context())
		return next(srv, ss)
	}
	svc := &testService{stream: func(_ *testgrpc.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
		return s.Send(&testgrpc.StreamingOutputCallResponse{})
	}}
	h := start(t, svc, func(_ *grpcserver.Config, d *grpcserver.Deps) {
		d.UnaryInterceptors = []grpc.UnaryServerInterceptor{unary("first"), unary("second")}
		d.StreamInterceptors = []grpc.StreamServerInterceptor{streamIC}
	})

	if _, err := h.client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	stream, err := h.client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end = %v, want EOF", err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{"first span=true", "second span=true", "stream span=true"}
	if !slices.Equal(order, want) {
		t.Errorf("interceptors ran as %v, want %v", order, want)
	}
}

func TestClientAndServerSpansShareTrace(t *testing.T) {
	h := start(t, &testService{}, nil)
	clientTel, clientSpans := setupTelemetry(t, "orchestrator")
	conn, err := grpcserver.Dial(h.srv.Addr().String(), clientTel)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	// The server span ends after the reply is sent; a graceful stop waits
	// for it.
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}

	const method = "grpc.testing.TestService/EmptyCall"
	client := findSpan(clientSpans.Ended(), method, trace.SpanKindClient)
	server := findSpan(h.spans.Ended(), method, trace.SpanKindServer)
	if client == nil || server == nil {
		t.Fatalf("client span %v, server span %v; want both", client, server)
	}
	if client.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Errorf("client trace %s != server trace %s", client.SpanContext().TraceID(), server.SpanContext().TraceID())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("server span parent %s, want the client span %s", server.Parent().SpanID(), client.SpanContext().SpanID())
	}
	for span, want := range map[sdktrace.ReadOnlySpan]string{client: "orchestrator", server: "mapping"} {
		if got, _ := span.Resource().Set().Value("service.name"); got.AsString() != want {
			t.Errorf("%v span service.name = %q, want %q", span.SpanKind(), got.AsString(), want)
		}
	}
}

func findSpan(spans []sdktrace.ReadOnlySpan, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name && s.SpanKind() == kind {
			return s
		}
	}
	return nil
}

func TestDialDoesNotRetryFailedCalls(t *testing.T) {
	var calls atomic.Int64
	h := start(t, &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		calls.Add(1)
		return nil, status.Error(codes.Unavailable, "try later")
	}}, nil)
	if _, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("UnaryCall = %v, want Unavailable", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times for one call; the client must not retry", n)
	}
}

func TestDialBalancesRoundRobin(t *testing.T) {
	a, b := start(t, &testService{}, nil), start(t, &testService{}, nil)
	r := manual.NewBuilderWithScheme("slammesh-test")
	r.InitialState(resolver.State{Addresses: []resolver.Address{
		{Addr: a.srv.Addr().String()}, {Addr: b.srv.Addr().String()},
	}})
	conn, err := grpcserver.Dial(r.Scheme()+":///pool", a.tel, grpc.WithResolvers(r))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	// round_robin sends calls to both backends once both connections are up;
	// pick_first would send every call to the first one.
	const maxCalls = 1000
	for i := 0; a.svc.calls.Load() == 0 || b.svc.calls.Load() == 0; i++ {
		if i == maxCalls {
			t.Fatalf("after %d calls: backend a got %d, b got %d; want both used", maxCalls, a.svc.calls.Load(), b.svc.calls.Load())
		}
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHandleMountsPagesAndShutdownEndsLongResponses: a handler mounted at
// "/" serves beside /metrics and /healthz, and a response that lasts until
// its request's context ends (a live feed) is ended by shutdown, which then
// drains cleanly instead of timing out.
func TestHandleMountsPagesAndShutdownEndsLongResponses(t *testing.T) {
	tel, _ := setupTelemetry(t, "orchestrator")
	srv, err := grpcserver.New(grpcserver.Config{Service: "orchestrator", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: telemetry.NewLogger(io.Discard, "orchestrator", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	streaming := make(chan struct{})
	srv.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/feed" {
			_, _ = io.WriteString(w, "console page")
			return
		}
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		close(streaming)
		<-r.Context().Done()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	h := &harness{srv: srv}
	if code, body := httpGet(t, h, "/"); code != http.StatusOK || body != "console page" {
		t.Errorf("GET / = %d %q, want the mounted handler", code, body)
	}
	if code, _ := httpGet(t, h, "/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics = %d beside a handler at /", code)
	}
	if code, body := httpGet(t, h, "/healthz"); code != http.StatusOK || body != "SERVING\n" {
		t.Errorf("GET /healthz = %d %q beside a handler at /", code, body)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	feedDone := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + srv.HTTPAddr().String() + "/feed")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		feedDone <- err
	}()
	select {
	case <-streaming:
	case <-time.After(callTimeout):
		t.Fatal("the long response did not start")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want a clean shutdown", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("Serve did not return with a long response open")
	}
	<-feedDone
}

// dribble is a request body that sends one byte per interval.
type dribble struct {
	left     int
	interval time.Duration
}

func (d *dribble) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(d.interval)
	d.left--
	p[0] = 'x'
	return 1, nil
}

// TestHTTPReadTimeoutCutsSlowBodiesNotLongResponses: a request body sent
// slower than HTTPReadTimeout is cut off, while a response that streams
// for longer than it (a live feed) is not.
func TestHTTPReadTimeoutCutsSlowBodiesNotLongResponses(t *testing.T) {
	tel, _ := setupTelemetry(t, "orchestrator")
	srv, err := grpcserver.New(grpcserver.Config{Service: "orchestrator", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", HTTPReadTimeout: 300 * time.Millisecond},
		grpcserver.Deps{Telemetry: tel, Logger: telemetry.NewLogger(io.Discard, "orchestrator", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	bodyRead := make(chan error, 1)
	srv.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			_, err := io.ReadAll(r.Body)
			bodyRead <- err
			return
		}
		for i := range 10 { // one second of response, past the read timeout
			_, _ = fmt.Fprint(w, i)
			_ = http.NewResponseController(w).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + srv.HTTPAddr().String()

	resp, err := http.Get(base + "/feed")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "0123456789" {
		t.Errorf("a response streaming past the read timeout: %q, %v; want all of it", body, err)
	}

	go func() {
		// 30 bytes at 100 ms each: 3 s of body against a 300 ms timeout.
		if resp, err := http.Post(base+"/slow", "text/plain", &dribble{left: 30, interval: 100 * time.Millisecond}); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case err := <-bodyRead:
		if err == nil {
			t.Error("a body sent slower than the read timeout was read whole")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow body's handler never returned")
	}
}

// TestCallScopeNamesTheCallerOnTheAccessLine: an attribute an interceptor
// learns inside the call (authentication's caller) is on the call's
// "finished call" line, written around that interceptor, when Deps.CallScope
// is set: for an OK call and a refused one at info, for a refused one
// replayed at warn, and for a stream. Without the scope only the handler's
// own lines carry it.
func TestCallScopeNamesTheCallerOnTheAccessLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope bool
		level slog.Level
	}{
		{"scope at info", true, slog.LevelInfo},
		{"scope at warn", true, slog.LevelWarn},
		{"no scope", false, slog.LevelInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			logger := telemetry.NewLogger(logs, "mapping", tc.level)
			svc := &testService{
				unary: func(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
					logger.WarnContext(ctx, "handler line")
					if req.GetFillUsername() {
						return nil, status.Error(codes.PermissionDenied, "needs role admin")
					}
					return &testgrpc.SimpleResponse{}, nil
				},
				stream: func(_ *testgrpc.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
					return s.Send(&testgrpc.StreamingOutputCallResponse{})
				},
			}
			learn := func(ctx context.Context) context.Context {
				return telemetry.WithCallAttrs(ctx, slog.String("principal", "alice"))
			}
			h := start(t, svc, func(_ *grpcserver.Config, d *grpcserver.Deps) {
				d.Logger = logger
				d.CallScope = tc.scope
				d.UnaryInterceptors = []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
					return next(learn(ctx), req)
				}}
				d.StreamInterceptors = []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
					learn(ss.Context())
					return next(srv, ss)
				}}
			})
			if _, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{FillUsername: true}); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("refused call = %v", err)
			}
			stream, err := h.client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for err == nil {
				_, err = stream.Recv()
			}
			if err != io.EOF {
				t.Fatal(err)
			}
			if err := h.stop(t); err != nil { // every line written
				t.Fatal(err)
			}

			handlerLines := logs.find(t, "handler line")
			if len(handlerLines) != 2 {
				t.Fatalf("%d handler lines, want 2", len(handlerLines))
			}
			for _, l := range handlerLines {
				if l["principal"] != "alice" {
					t.Errorf("handler line without the principal: %v", l)
				}
			}
			want := map[string]bool{"UnaryCall/OK": true, "UnaryCall/PermissionDenied": true, "StreamingOutputCall/OK": true}
			if tc.level > slog.LevelInfo {
				want = map[string]bool{"UnaryCall/PermissionDenied": true}
			}
			access := logs.find(t, "finished call")
			if len(access) != len(want) {
				t.Errorf("%d access lines, want %d: %v", len(access), len(want), access)
			}
			for _, l := range access {
				call := fmt.Sprint(l["grpc.method"], "/", l["grpc.code"])
				if !want[call] {
					t.Errorf("unexpected access line %v", l)
				}
				if got, named := l["principal"]; named != tc.scope || (named && got != "alice") {
					t.Errorf("%s access line principal %v (named %v), want named %v", call, got, named, tc.scope)
				}
			}
		})
	}
}
