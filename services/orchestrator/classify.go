package orchestrator

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

// errCorruptInput marks a saga whose stored input or step output cannot be
// decoded. Retrying cannot repair the record, so the saga compensates at once.
var errCorruptInput = errors.New("corrupt saga record")

// classify maps a step error onto the saga's error classes by gRPC code, as
// docs/architecture.md ("Saga error classes") prescribes:
//
//   - transient (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, and
//     RESOURCE_EXHAUSTED with reason STORE_FULL: the step service's Redis
//     out of memory, which retention, deletions or an operator free; on
//     the one Redis the services share, the engine's own writes fail too,
//     and recovery resumes the run once they pass): retry. ABORTED with reason ACTION_FORBIDDEN is final: the barrier
//     refuses an action whose compensation already ran, and it will refuse
//     every retry.
//     CANCELLED is transient because a step is only cancelled from outside
//     (a draining server); a cancelled mission is stopped by the engine, not
//     by this answer.
//   - INTERNAL, UNKNOWN, DATA_LOSS: a few retries, then compensate.
//   - every other code is a business failure: compensate now.
//
// Errors without a status come from this process: context errors are
// transient, a corrupt record is final, anything else gets a few retries.
func classify(err error) saga.Class {
	if !rpcerr.IsStatus(err) {
		switch {
		case errors.Is(err, errCorruptInput):
			return saga.Fail
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return saga.Retry
		default:
			return saga.RetryFew
		}
	}
	switch c := rpcerr.Code(err); c {
	case codes.Aborted:
		if rpcerr.Reason(err) == rpcerr.ReasonActionForbidden {
			return saga.Fail
		}
		return saga.Retry
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return saga.Retry
	case codes.ResourceExhausted:
		if rpcerr.Reason(err) == rpcerr.ReasonStoreFull {
			return saga.Retry
		}
		return saga.Fail
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return saga.RetryFew
	default:
		return saga.Fail
	}
}

// describe records an error as its gRPC code name ("FAILED_PRECONDITION"),
// ErrorInfo reason and status message, the form MissionError and the
// events carry.
func describe(err error) saga.Failure {
	if !rpcerr.IsStatus(err) {
		return saga.DescribeDefault(err)
	}
	st, _ := status.FromError(err)
	return saga.Failure{
		Code:    codeName(st.Code()),
		Reason:  rpcerr.Reason(err),
		Message: st.Message(),
	}
}

// codeName spells a gRPC code as google.rpc.Code does, which is what
// operators type into grpcurl and dashboards filter on.
func codeName(c codes.Code) string {
	if n, ok := code.Code_name[int32(c)]; ok {
		return n
	}
	return c.String()
}
