package faults

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingMapping commits an "effect" per call, so tests can tell whether a
// handler ran behind a fault.
type countingMapping struct {
	mappingv1.UnimplementedMappingServiceServer
	allocs, releases atomic.Int32
}

func (s *countingMapping) AllocateMap(context.Context, *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
	s.allocs.Add(1)
	return &mappingv1.AllocateMapResponse{MapId: "m"}, nil
}

func (s *countingMapping) ReleaseMap(context.Context, *mappingv1.ReleaseMapRequest) (*mappingv1.ReleaseMapResponse, error) {
	s.releases.Add(1)
	return &mappingv1.ReleaseMapResponse{Released: true}, nil
}

func (s *countingMapping) GetMap(context.Context, *mappingv1.GetMapRequest) (*mappingv1.GetMapResponse, error) {
	return &mappingv1.GetMapResponse{MapId: "m"}, nil
}

// serve runs a mapping server behind the fault interceptor, and behind
// outer before it, on loopback until the test ends.
func serve(t *testing.T, outer ...grpc.UnaryServerInterceptor) (mappingv1.MappingServiceClient, *countingMapping) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &countingMapping{}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(append(outer, UnaryServerInterceptor(mappingv1.MappingService_ReleaseMap_FullMethodName))...))
	mappingv1.RegisterMappingServiceServer(srv, impl)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return mappingv1.NewMappingServiceClient(conn), impl
}

func sagaCtx(attempt uint32, faults ...*typesv1.Fault) *typesv1.SagaContext {
	return &typesv1.SagaContext{
		MissionId: "m1", SagaId: "s1", Step: "allocate_map", Attempt: attempt,
		Faults: &typesv1.FaultPlan{Faults: faults},
	}
}

func TestActionFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		fault       *typesv1.Fault
		attempt     uint32
		wantCode    codes.Code
		wantEffects int32
	}{
		{"business error on every attempt", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR}, 7, codes.FailedPrecondition, 0},
		{"transient within times", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT, Times: 2}, 2, codes.Unavailable, 0},
		{"transient past times", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT, Times: 2}, 3, codes.OK, 1},
		{"transient times 0 means once", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT}, 1, codes.Unavailable, 0},
		{"drop reply commits", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_DROP_REPLY}, 1, codes.Unavailable, 1},
		{"drop reply past times", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_DROP_REPLY}, 2, codes.OK, 1},
		{"other step untouched", &typesv1.Fault{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR}, 1, codes.OK, 1},
		{"compensation fault spares the action", &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, Compensation: true}, 1, codes.OK, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, impl := serve(t)
			_, err := client.AllocateMap(t.Context(), &mappingv1.AllocateMapRequest{Saga: sagaCtx(tc.attempt, tc.fault)})
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if err != nil && rpcerr.Reason(err) != rpcerr.ReasonInjectedFault {
				t.Errorf("reason = %q, want %q", rpcerr.Reason(err), rpcerr.ReasonInjectedFault)
			}
			if got := impl.allocs.Load(); got != tc.wantEffects {
				t.Errorf("effects = %d, want %d", got, tc.wantEffects)
			}
		})
	}
}

func TestStallHoldsUntilDeadline(t *testing.T) {
	t.Parallel()
	client, impl := serve(t)
	// start is taken before the deadline is set, so that the deadline is
	// never earlier than start + 50 ms.
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{
		Saga: sagaCtx(1, &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_STALL}),
	})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Errorf("returned before the deadline")
	}
	if impl.allocs.Load() != 0 {
		t.Errorf("stalled call had an effect")
	}
}

// What a stalled call answers says why it ended, as the server sees it
// over real gRPC: the caller's cancel (a mission cancelled mid-stall, found
// by a review: its step.failed said the stall had outlived the deadline),
// or the attempt's deadline, which reaches the server as a cancel just
// before its own copy of the deadline (found by a second review).
func TestStallSaysWhyItEnded(t *testing.T) {
	t.Parallel()
	answered := make(chan error, 1)
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		answered <- err
		return resp, err
	}
	client, _ := serve(t, record)
	req := &mappingv1.AllocateMapRequest{Saga: sagaCtx(1, &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_STALL})}

	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		code codes.Code
		msg  string
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 300*time.Millisecond)
		},
			codes.DeadlineExceeded, "outlived the deadline"},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, codes.Canceled, "caller cancelled"},
	} {
		ctx, cancel := tc.ctx()
		_, _ = client.AllocateMap(ctx, req)
		cancel()
		select {
		case err := <-answered:
			if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("%s: the server answered %v, want %v saying %q", tc.name, err, tc.code, tc.msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the stalled call never ended", tc.name)
		}
	}
}

func TestCompensationFault(t *testing.T) {
	t.Parallel()
	client, impl := serve(t)
	sc := sagaCtx(3, &typesv1.Fault{Step: "allocate_map", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, Compensation: true})
	_, err := client.ReleaseMap(t.Context(), &mappingv1.ReleaseMapRequest{Saga: sc})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	if impl.releases.Load() != 0 {
		t.Errorf("failed compensation had an effect")
	}
}

func TestRequestsWithoutSagaPassThrough(t *testing.T) {
	t.Parallel()
	client, _ := serve(t)
	if _, err := client.GetMap(t.Context(), &mappingv1.GetMapRequest{MissionId: "m1"}); err != nil {
		t.Fatalf("GetMap: %v", err)
	}
}
