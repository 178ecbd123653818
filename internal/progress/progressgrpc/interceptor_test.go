package progressgrpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/redistest"
)

// The tests run real gRPC servers; goleak proves they are all stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mappingServer is a MappingService whose AllocateMap (the action) runs the
// test's function; ReleaseMap and GetMap succeed without doing anything.
type mappingServer struct {
	mappingv1.UnimplementedMappingServiceServer
	allocate func(context.Context, *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error)
}

func (s *mappingServer) AllocateMap(ctx context.Context, req *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
	return s.allocate(ctx, req)
}

func (s *mappingServer) ReleaseMap(context.Context, *mappingv1.ReleaseMapRequest) (*mappingv1.ReleaseMapResponse, error) {
	return &mappingv1.ReleaseMapResponse{Released: true}, nil
}

func (s *mappingServer) GetMap(context.Context, *mappingv1.GetMapRequest) (*mappingv1.GetMapResponse, error) {
	return &mappingv1.GetMapResponse{MapId: "map"}, nil
}

// harness is a traced client of a traced MappingService on a loopback port,
// its server publishing through pub, as a step service runs in production.
type harness struct {
	client mappingv1.MappingServiceClient
	tracer trace.Tracer
}

func startServer(t *testing.T, pub *progress.Publisher, srv *mappingServer) *harness {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otelOpts := []otelgrpc.Option{otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagation.TraceContext{})}

	s := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.ChainUnaryInterceptor(progressgrpc.UnaryServerInterceptor(pub, "mapping", mappingv1.MappingService_AllocateMap_FullMethodName)),
	)
	mappingv1.RegisterMappingServiceServer(s, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &harness{client: mappingv1.NewMappingServiceClient(conn), tracer: tp.Tracer("test")}
}

func sagaContext(mission string) *typesv1.SagaContext {
	return &typesv1.SagaContext{MissionId: mission, SagaId: "saga-" + mission, Step: "allocate_map", Attempt: 2}
}

// outcome is the part of an event that differs between the events of one
// step call.
type outcome struct {
	Type        progress.Type
	Progress    float64
	Message     string
	ErrorCode   string
	ErrorReason string
}

func outcomes(events []progress.Event) []outcome {
	out := make([]outcome, len(events))
	for i, e := range events {
		out[i] = outcome{e.Type, e.Progress, e.Message, e.ErrorCode, e.ErrorReason}
	}
	return out
}

func statusWithReason(c codes.Code, reason, msg string) error {
	st, err := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "slammesh.dev"})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestInterceptorEmitsStepEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		allocate   func(context.Context) error
		wantCode   codes.Code
		wantReason string
		want       []outcome
	}{
		{
			name: "progress then success",
			allocate: func(ctx context.Context) error {
				r := progress.ReporterFrom(ctx)
				r.Progress(ctx, 0.25, "grid sized")
				r.Progress(ctx, 0.75, "grid stored")
				return nil
			},
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepProgress, Progress: 0.25, Message: "grid sized"},
				{Type: progress.StepProgress, Progress: 0.75, Message: "grid stored"},
				{Type: progress.StepCompleted, Progress: 1},
			},
		},
		{
			name: "progress out of range is clamped",
			allocate: func(ctx context.Context) error {
				r := progress.ReporterFrom(ctx)
				r.Progress(ctx, 1.5, "over")
				r.Progress(ctx, -0.5, "under")
				r.Progress(ctx, math.NaN(), "nan")
				return nil
			},
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepProgress, Progress: 1, Message: "over"},
				{Type: progress.StepProgress, Progress: 0, Message: "under"},
				{Type: progress.StepProgress, Progress: 0, Message: "nan"},
				{Type: progress.StepCompleted, Progress: 1},
			},
		},
		{
			name: "business failure with ErrorInfo",
			allocate: func(ctx context.Context) error {
				progress.ReporterFrom(ctx).Progress(ctx, 0.5, "budget checked")
				return statusWithReason(codes.ResourceExhausted, "CAPACITY_EXHAUSTED", "needs 4000000 cells, 10 free")
			},
			wantCode:   codes.ResourceExhausted,
			wantReason: "CAPACITY_EXHAUSTED",
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepProgress, Progress: 0.5, Message: "budget checked"},
				{Type: progress.StepFailed, Message: "needs 4000000 cells, 10 free", ErrorCode: "RESOURCE_EXHAUSTED", ErrorReason: "CAPACITY_EXHAUSTED"},
			},
		},
		{
			name: "wrapped status",
			allocate: func(context.Context) error {
				return fmt.Errorf("allocate: %w", statusWithReason(codes.FailedPrecondition, "INJECTED_FAULT", "injected"))
			},
			wantCode:   codes.FailedPrecondition,
			wantReason: "INJECTED_FAULT",
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepFailed, Message: "allocate: rpc error: code = FailedPrecondition desc = injected", ErrorCode: "FAILED_PRECONDITION", ErrorReason: "INJECTED_FAULT"},
			},
		},
		{
			name:     "plain error",
			allocate: func(context.Context) error { return errors.New("disk on fire") },
			wantCode: codes.Unknown,
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepFailed, Message: "disk on fire", ErrorCode: "UNKNOWN"},
			},
		},
		{
			name:     "deadline",
			allocate: func(context.Context) error { return fmt.Errorf("scan matching: %w", context.DeadlineExceeded) },
			wantCode: codes.DeadlineExceeded,
			want: []outcome{
				{Type: progress.StepStarted},
				{Type: progress.StepFailed, Message: "scan matching: context deadline exceeded", ErrorCode: "DEADLINE_EXCEEDED"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Universal(t)
			stream := progress.MissionStream("m1")
			var handlerSpan trace.SpanContext
			h := startServer(t, progress.NewPublisher(rdb, progress.Options{}), &mappingServer{
				allocate: func(ctx context.Context, _ *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
					handlerSpan = trace.SpanContextFromContext(ctx)
					// step.started is out before the handler runs.
					if before, err := progress.Range(ctx, rdb, stream); err != nil || len(before) != 1 || before[0].Type != progress.StepStarted {
						t.Errorf("before the handler the stream holds %+v (%v), want one step.started", before, err)
					}
					if err := tt.allocate(ctx); err != nil {
						return nil, err
					}
					return &mappingv1.AllocateMapResponse{MapId: "map-m1"}, nil
				},
			})

			ctx, span := h.tracer.Start(t.Context(), "mission m1")
			resp, err := h.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: sagaContext("m1")})
			span.End()

			// The handler's result reaches the client untouched.
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("AllocateMap code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && resp.GetMapId() != "map-m1" {
				t.Fatalf("AllocateMap response = %v, want map-m1", resp)
			}
			if got := reasonOf(err); got != tt.wantReason {
				t.Fatalf("client sees reason %q, want %q", got, tt.wantReason)
			}

			events, err := progress.Range(t.Context(), rdb, stream)
			if err != nil {
				t.Fatalf("Range: %v", err)
			}
			if got := outcomes(events); !slices.Equal(got, tt.want) {
				t.Fatalf("events =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, e := range events {
				if e.MissionID != "m1" || e.SagaID != "saga-m1" || e.Step != "allocate_map" || e.Service != "mapping" || e.Attempt != 2 {
					t.Errorf("%s event misattributed: %+v", e.Type, e)
				}
				// One trace from the client's mission span through the server.
				if e.TraceID != span.SpanContext().TraceID().String() || e.SpanID != handlerSpan.SpanID().String() {
					t.Errorf("%s event trace %s span %s, want trace %s (the client's) span %s (the server's)",
						e.Type, e.TraceID, e.SpanID, span.SpanContext().TraceID(), handlerSpan.SpanID())
				}
				if e.Time.IsZero() {
					t.Errorf("%s event has no time", e.Type)
				}
			}
			global, err := progress.Range(t.Context(), rdb, progress.GlobalStream)
			if err != nil {
				t.Fatalf("Range global: %v", err)
			}
			if got := outcomes(global); !slices.Equal(got, tt.want) {
				t.Fatalf("global stream =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func TestInterceptorWritesOnlyToTheMissionStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stream    string
		wantCalls int64 // events in the mission and the global stream
	}{
		{name: "empty", stream: "", wantCalls: 2},
		{name: "the mission's", stream: progress.MissionStream("m1"), wantCalls: 2},
		{name: "a suffixed key", stream: "slammesh:{m1}:events:custom"},
		{name: "another mission's", stream: progress.MissionStream("m2")},
		{name: "the saga record", stream: "slammesh:{m1}:saga"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Universal(t)
			h := startServer(t, progress.NewPublisher(rdb, progress.Options{}), &mappingServer{
				allocate: func(context.Context, *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
					return &mappingv1.AllocateMapResponse{}, nil
				},
			})
			sc := sagaContext("m1")
			sc.ProgressStream = tt.stream
			if _, err := h.client.AllocateMap(t.Context(), &mappingv1.AllocateMapRequest{Saga: sc}); err != nil {
				t.Fatalf("AllocateMap: %v", err)
			}
			want := map[string]int64{progress.MissionStream("m1"): tt.wantCalls, progress.GlobalStream: tt.wantCalls}
			if tt.stream != "" && tt.stream != progress.MissionStream("m1") {
				want[tt.stream] = 0
			}
			for key, n := range want {
				if got, err := rdb.Exists(t.Context(), key).Result(); err != nil || (got > 0) != (n > 0) {
					t.Errorf("EXISTS %s = %d, %v; want %v", key, got, err, n > 0)
				}
				if n > 0 {
					if got, err := rdb.XLen(t.Context(), key).Result(); err != nil || got != n {
						t.Errorf("XLEN %s = %d, %v; want %d", key, got, err, n)
					}
				}
			}
		})
	}
}

func TestInterceptorIgnoresOtherCalls(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	allocations := 0
	h := startServer(t, progress.NewPublisher(rdb, progress.Options{}), &mappingServer{
		allocate: func(ctx context.Context, _ *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
			allocations++
			// Without a step to report on, the reporter discards.
			progress.ReporterFrom(ctx).Progress(ctx, 0.5, "unreported")
			return &mappingv1.AllocateMapResponse{}, nil
		},
	})
	tests := []struct {
		name string
		call func(context.Context) error
	}{
		{"compensation", func(ctx context.Context) error {
			_, err := h.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: sagaContext("m1")})
			return err
		}},
		{"read", func(ctx context.Context) error {
			_, err := h.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: "m1"})
			return err
		}},
		{"action without saga", func(ctx context.Context) error {
			_, err := h.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{})
			return err
		}},
		{"action without mission", func(ctx context.Context) error {
			_, err := h.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: &typesv1.SagaContext{SagaId: "s", Step: "allocate_map"}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); err != nil {
				t.Fatalf("call: %v", err)
			}
			if n, err := rdb.XLen(t.Context(), progress.GlobalStream).Result(); err != nil || n != 0 {
				t.Fatalf("XLEN %s = %d, %v; want no events", progress.GlobalStream, n, err)
			}
		})
	}
	if allocations != 2 {
		t.Fatalf("AllocateMap handler ran %d times, want 2 (unreported calls still run)", allocations)
	}
}

// TestInterceptorSurvivesPublishFailure: with Redis unreachable, the step's
// own result still reaches the client and the lost events are logged.
func TestInterceptorSurvivesPublishFailure(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	deadAddr := lis.Addr().String()
	_ = lis.Close()
	rdb := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	// Written by server goroutines, read after the calls have returned.
	var logs bytes.Buffer
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	fail := false
	h := startServer(t, pub, &mappingServer{
		allocate: func(ctx context.Context, _ *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
			progress.ReporterFrom(ctx).Progress(ctx, 0.5, "half")
			if fail {
				return nil, statusWithReason(codes.FailedPrecondition, "INJECTED_FAULT", "injected")
			}
			return &mappingv1.AllocateMapResponse{MapId: "map-m1"}, nil
		},
	})
	resp, err := h.client.AllocateMap(t.Context(), &mappingv1.AllocateMapRequest{Saga: sagaContext("m1")})
	if err != nil || resp.GetMapId() != "map-m1" {
		t.Fatalf("AllocateMap = %v, %v; want map-m1 despite Redis being down", resp, err)
	}
	fail = true
	_, err = h.client.AllocateMap(t.Context(), &mappingv1.AllocateMapRequest{Saga: sagaContext("m1")})
	if status.Code(err) != codes.FailedPrecondition || reasonOf(err) != "INJECTED_FAULT" {
		t.Fatalf("AllocateMap error = %v, want the handler's FAILED_PRECONDITION/INJECTED_FAULT", err)
	}
	logged := logs.String()
	for _, typ := range []progress.Type{progress.StepStarted, progress.StepProgress, progress.StepCompleted, progress.StepFailed} {
		if !strings.Contains(logged, "event="+string(typ)) {
			t.Errorf("no log line for the lost %s event; logs:\n%s", typ, logged)
		}
	}
	if !strings.Contains(logged, "mission_id=m1") {
		t.Errorf("log lines lack the mission id; logs:\n%s", logged)
	}
}
