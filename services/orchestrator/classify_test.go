package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want saga.Class
	}{
		{"unavailable", status.Error(codes.Unavailable, "down"), saga.Retry},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), saga.Retry},
		{"aborted", status.Error(codes.Aborted, "conflict"), saga.Retry},
		{"cancelled", status.Error(codes.Canceled, "draining"), saga.Retry},
		{"action forbidden is final", rpcerr.New(codes.Aborted, rpcerr.ReasonActionForbidden, "late"), saga.Fail},
		{"invalid argument", rpcerr.InvalidArgument("spec", "bad"), saga.Fail},
		{"failed precondition", rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInsufficientOverlap, "no"), saga.Fail},
		{"not found", status.Error(codes.NotFound, "gone"), saga.Fail},
		{"out of range", status.Error(codes.OutOfRange, "far"), saga.Fail},
		{"resource exhausted", rpcerr.New(codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted, "full"), saga.Fail},
		{"step's Redis out of memory", rpcerr.New(codes.ResourceExhausted, rpcerr.ReasonStoreFull, "oom"), saga.Retry},
		{"already exists", status.Error(codes.AlreadyExists, "dup"), saga.Fail},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), saga.Fail},
		{"unimplemented", status.Error(codes.Unimplemented, "old server"), saga.Fail},
		{"internal", status.Error(codes.Internal, "bug"), saga.RetryFew},
		{"unknown", status.Error(codes.Unknown, "?"), saga.RetryFew},
		{"wrapped status", fmt.Errorf("step: %w", status.Error(codes.Unavailable, "down")), saga.Retry},
		{"local deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), saga.Retry},
		{"corrupt record", fmt.Errorf("%w: input", errCorruptInput), saga.Fail},
		{"local error", errors.New("boom"), saga.RetryFew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want saga.Failure
	}{
		{
			name: "status with reason",
			err:  rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInsufficientOverlap, "agent-2 overlaps 3%"),
			want: saga.Failure{Code: "FAILED_PRECONDITION", Reason: rpcerr.ReasonInsufficientOverlap, Message: "agent-2 overlaps 3%"},
		},
		{
			name: "status without details",
			err:  status.Error(codes.Unavailable, "connection refused"),
			want: saga.Failure{Code: "UNAVAILABLE", Message: "connection refused"},
		},
		{
			name: "context error",
			err:  context.DeadlineExceeded,
			want: saga.Failure{Code: saga.CodeDeadlineExceeded, Message: context.DeadlineExceeded.Error()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := describe(tt.err); got != tt.want {
				t.Errorf("describe() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
