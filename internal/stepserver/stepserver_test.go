package stepserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/stepserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	actionMethod       = "/slammesh.test.v1.Step/Act"
	compensationMethod = "/slammesh.test.v1.Step/Undo"
)

// chain calls handler through ics as grpc.ChainUnaryInterceptor does: the
// first interceptor outermost.
func chain(ics []grpc.UnaryServerInterceptor, method string, handler grpc.UnaryHandler) grpc.UnaryHandler {
	info := &grpc.UnaryServerInfo{FullMethod: method}
	h := handler
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
	}
	return h
}

func TestInterceptors(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	fault := func(kind typesv1.FaultKind, compensation bool) *typesv1.FaultPlan {
		return &typesv1.FaultPlan{Faults: []*typesv1.Fault{{Step: "s", Kind: kind, Compensation: compensation}}}
	}
	tests := []struct {
		name        string
		allowFaults bool
		method      string
		plan        *typesv1.FaultPlan
		code        codes.Code // of the call; OK when the handler ran
		events      []progress.Type
	}{
		{name: "action", method: actionMethod,
			events: []progress.Type{progress.StepStarted, progress.StepCompleted}},
		{name: "faults not allowed", method: actionMethod, plan: fault(typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, false),
			events: []progress.Type{progress.StepStarted, progress.StepCompleted}},
		{name: "action fault", allowFaults: true, method: actionMethod, plan: fault(typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, false),
			code: codes.FailedPrecondition, events: []progress.Type{progress.StepStarted, progress.StepFailed}},
		{name: "compensation", allowFaults: true, method: compensationMethod, plan: fault(typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, false)},
		{name: "compensation fault", allowFaults: true, method: compensationMethod, plan: fault(typesv1.FaultKind_FAULT_KIND_TRANSIENT, true),
			code: codes.Unavailable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mission := fmt.Sprintf("m-%d", i)
			ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, []string{compensationMethod}, tt.allowFaults)
			ran := false
			call := chain(ics, tt.method, func(context.Context, any) (any, error) {
				ran = true
				return &mappingv1.AllocateMapResponse{}, nil
			})
			sc := &typesv1.SagaContext{MissionId: mission, SagaId: "saga-1", Step: "s", Attempt: 1, Faults: tt.plan}
			_, err := call(t.Context(), &mappingv1.AllocateMapRequest{Saga: sc})
			if status.Code(err) != tt.code || ran != (tt.code == codes.OK) {
				t.Errorf("call: err %v, handler ran %v; want code %v", err, ran, tt.code)
			}
			if tt.code != codes.OK && rpcerr.Reason(err) != rpcerr.ReasonInjectedFault {
				t.Errorf("reason %q, want %s", rpcerr.Reason(err), rpcerr.ReasonInjectedFault)
			}
			events, err := progress.Range(t.Context(), rdb, progress.MissionStream(mission))
			if err != nil {
				t.Fatal(err)
			}
			var types []progress.Type
			for _, ev := range events {
				types = append(types, ev.Type)
				if ev.Service != "svc" {
					t.Errorf("event of service %q, want svc", ev.Service)
				}
			}
			if !slices.Equal(types, tt.events) {
				t.Errorf("events %v, want %v", types, tt.events)
			}
		})
	}
}

func TestBarrierID(t *testing.T) {
	t.Parallel()
	sc := &typesv1.SagaContext{MissionId: "m-1", SagaId: "saga-1", Step: "allocate_map"}
	if got, want := stepserver.BarrierID(sc, "allocate_map"), (barrier.ID{Key: "m-1", SagaID: "saga-1", Step: "allocate_map"}); got != want {
		t.Errorf("BarrierID = %+v, want %+v", got, want)
	}
}

func TestCommitted(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	b := barrier.New(rdb)
	ctx := t.Context()
	id := barrier.ID{Key: "m-1", SagaID: "saga-1", Step: "s"}
	committed := func(id barrier.ID) string {
		t.Helper()
		res, ok, err := stepserver.Committed(ctx, b, id, nil)
		return fmt.Sprintf("%q %v %v", res, ok, err)
	}

	if got, want := committed(id), `"" false <nil>`; got != want {
		t.Errorf("before the action: %s, want %s", got, want)
	}
	if n, err := rdb.Exists(ctx, barrier.Key(id.Key, id.Step)).Result(); err != nil || n != 0 {
		t.Fatalf("looking at the barrier wrote it: %d, %v", n, err)
	}
	if _, _, err := b.Action(ctx, id, func(context.Context, *barrier.Tx) ([]byte, error) { return []byte("done"), nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := committed(id), `"done" true <nil>`; got != want {
		t.Errorf("after the action: %s, want %s", got, want)
	}
	if _, _, err := stepserver.Committed(ctx, b, barrier.ID{Key: "m-1", SagaID: "saga-2", Step: "s"}, nil); !errors.Is(err, barrier.ErrSagaMismatch) {
		t.Errorf("another saga: err %v, want ErrSagaMismatch", err)
	}
	if _, err := b.Compensate(ctx, id, func(context.Context, *barrier.Tx, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := stepserver.Committed(ctx, b, id, nil); !errors.Is(err, barrier.ErrActionForbidden) {
		t.Errorf("after the compensation: err %v, want ErrActionForbidden", err)
	}
	if eff, err := b.Effects(ctx, id.Key); err != nil || eff["s:action"] != 1 || eff["s:compensation"] != 1 {
		t.Errorf("effects = %v, %v; want only the action and the compensation", eff, err)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	passed := rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound, "no map")
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		msg    string
		logged bool
	}{
		{name: "hanging action", err: fmt.Errorf("barrier action m/s: %w", barrier.ErrActionForbidden),
			code: codes.Aborted, reason: rpcerr.ReasonActionForbidden, msg: "s was already compensated for this saga"},
		{name: "another saga", err: fmt.Errorf("barrier action m/s: %w", barrier.ErrSagaMismatch),
			code: codes.FailedPrecondition, reason: rpcerr.ReasonSagaMismatch, msg: "s of this mission belongs to another saga"},
		{name: "conflict", err: fmt.Errorf("barrier action m/s: %w", barrier.ErrConflict),
			code: codes.Aborted, reason: rpcerr.ReasonConflict, msg: "concurrent attempts of this step kept conflicting; retry"},
		{name: "status", err: passed, code: codes.NotFound, reason: rpcerr.ReasonMapNotFound, msg: "no map"},
		{name: "bug", err: errors.New("secret detail"),
			code: codes.Internal, reason: rpcerr.ReasonInternal, msg: "internal error; see the server log", logged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			err := stepserver.Status(t.Context(), log, "svc", "s", tt.err)
			st := status.Convert(err)
			if st.Code() != tt.code || rpcerr.Reason(err) != tt.reason || st.Message() != tt.msg {
				t.Errorf("Status = %v (reason %q), want %v %s %q", err, rpcerr.Reason(err), tt.code, tt.reason, tt.msg)
			}
			if strings.Contains(st.Message(), "secret") {
				t.Errorf("status leaks the error: %v", err)
			}
			logged := buf.String()
			if tt.logged != (logged != "") || tt.logged && !(strings.Contains(logged, "svc request failed") && strings.Contains(logged, "secret detail")) {
				t.Errorf("log %q, want logged %v with the error", logged, tt.logged)
			}
		})
	}
}
