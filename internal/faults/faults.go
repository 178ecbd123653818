// Package faults injects the faults of a mission's FaultPlan into the step
// services, for tests and demos: a business error, transient failures, a
// stall past the caller's deadline, and a committed effect whose reply is
// lost. It is wired in only when a service runs with --allow-fault-injection;
// otherwise fault plans in requests are ignored by the services (and rejected
// by the orchestrator).
//
// Faults are keyed by the attempt number the orchestrator puts in the
// SagaContext, not by state kept here, so they behave the same whichever
// replica serves the attempt and after any process restart.
package faults

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

// sagaRequest is what every step and compensation request implements.
type sagaRequest interface {
	GetSaga() *typesv1.SagaContext
}

// UnaryServerInterceptor applies the fault plan carried in each request's
// SagaContext. compensations are the full method names of the service's
// compensation RPCs; every other method whose request carries a SagaContext
// is treated as the step's action. Install it inside the progress
// interceptor, so injected failures show up as step.failed events like real
// ones.
func UnaryServerInterceptor(compensations ...string) grpc.UnaryServerInterceptor {
	isComp := make(map[string]bool, len(compensations))
	for _, m := range compensations {
		isComp[m] = true
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		sr, ok := req.(sagaRequest)
		if !ok {
			return handler(ctx, req)
		}
		sc := sr.GetSaga()
		f := find(sc.GetFaults(), sc.GetStep(), isComp[info.FullMethod])
		if f == nil {
			return handler(ctx, req)
		}
		return apply(ctx, f, sc.GetAttempt(), req, handler)
	}
}

// find returns the fault of plan for step's action (or compensation), or nil.
func find(plan *typesv1.FaultPlan, step string, compensation bool) *typesv1.Fault {
	for _, f := range plan.GetFaults() {
		if f.GetStep() == step && f.GetCompensation() == compensation {
			return f
		}
	}
	return nil
}

// times is how many attempts a fault affects: its times field, at least 1.
func times(f *typesv1.Fault) uint32 { return max(f.GetTimes(), 1) }

func apply(ctx context.Context, f *typesv1.Fault, attempt uint32, req any, handler grpc.UnaryHandler) (any, error) {
	hit := attempt <= times(f)
	switch f.GetKind() {
	case typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR:
		// Every attempt: a business error is not cured by retrying.
		return nil, rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInjectedFault,
			"injected business error", "step", f.GetStep())
	case typesv1.FaultKind_FAULT_KIND_TRANSIENT:
		if hit {
			return nil, rpcerr.New(codes.Unavailable, rpcerr.ReasonInjectedFault,
				"injected transient failure", "step", f.GetStep())
		}
	case typesv1.FaultKind_FAULT_KIND_STALL:
		if hit {
			// Hold the call until the caller gives up: its per-attempt deadline
			// is what the fault exercises.
			<-ctx.Done()
			if !rpcerr.DeadlinePassed(ctx) {
				return nil, rpcerr.New(codes.Canceled, rpcerr.ReasonInjectedFault,
					"injected stall ended: the caller cancelled the call (a mission cancel, or the caller went away)", "step", f.GetStep())
			}
			return nil, rpcerr.New(codes.DeadlineExceeded, rpcerr.ReasonInjectedFault,
				"injected stall outlived the deadline", "step", f.GetStep())
		}
	case typesv1.FaultKind_FAULT_KIND_DROP_REPLY:
		if hit {
			if _, err := handler(ctx, req); err != nil {
				return nil, err
			}
			return nil, rpcerr.New(codes.Unavailable, rpcerr.ReasonInjectedFault,
				"injected lost reply: the effect was committed", "step", f.GetStep())
		}
	}
	return handler(ctx, req)
}
