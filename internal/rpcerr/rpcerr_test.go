package rpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		md     []string
		wantMD map[string]string
	}{
		{name: "no metadata", md: nil, wantMD: nil},
		{name: "pairs", md: []string{"consistency", "0.61", "threshold", "0.8"}, wantMD: map[string]string{"consistency": "0.61", "threshold": "0.8"}},
		{name: "odd trailing key dropped", md: []string{"a", "1", "b"}, wantMD: map[string]string{"a": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInconsistentMaps, "maps disagree", tt.md...)
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("not a status: %v", err)
			}
			if st.Code() != codes.FailedPrecondition || st.Message() != "maps disagree" {
				t.Errorf("status = %v %q", st.Code(), st.Message())
			}
			info := rpcerr.Info(err)
			if info == nil {
				t.Fatal("no ErrorInfo")
			}
			if info.GetDomain() != rpcerr.Domain || info.GetReason() != rpcerr.ReasonInconsistentMaps {
				t.Errorf("info = %v", info)
			}
			if len(info.GetMetadata()) != len(tt.wantMD) {
				t.Errorf("metadata = %v, want %v", info.GetMetadata(), tt.wantMD)
			}
			for k, v := range tt.wantMD {
				if info.GetMetadata()[k] != v {
					t.Errorf("metadata[%s] = %q, want %q", k, info.GetMetadata()[k], v)
				}
			}
		})
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	err := rpcerr.InvalidArgument("spec.width_m", "must be positive")
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Errorf("code = %v", got)
	}
	if got := rpcerr.Reason(err); got != rpcerr.ReasonInvalidField {
		t.Errorf("reason = %q", got)
	}
	if got := rpcerr.Field(err); got != "spec.width_m" {
		t.Errorf("field = %q", got)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "spec.width_m") {
		t.Errorf("message %q does not name the field", msg)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	foreign, err := status.New(codes.Aborted, "x").WithDetails(&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "googleapis.com"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "plain error", err: errors.New("boom"), want: ""},
		{name: "status without details", err: status.Error(codes.Internal, "x"), want: ""},
		{name: "other domain", err: foreign.Err(), want: ""},
		{name: "slammesh", err: rpcerr.New(codes.Aborted, rpcerr.ReasonActionForbidden, "late"), want: rpcerr.ReasonActionForbidden},
		{name: "wrapped", err: fmt.Errorf("step: %w", rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound, "gone")), want: rpcerr.ReasonMapNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := rpcerr.Reason(tt.err); got != tt.want {
				t.Errorf("Reason() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckSaga(t *testing.T) {
	t.Parallel()
	ok := func() *typesv1.SagaContext {
		return &typesv1.SagaContext{MissionId: "m-1", SagaId: "01J9Z:saga_1.x", Step: "allocate_map"}
	}
	tests := []struct {
		name      string
		mutate    func(*typesv1.SagaContext) *typesv1.SagaContext
		wantField string
	}{
		{name: "valid", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { return s }},
		{name: "missing", mutate: func(*typesv1.SagaContext) *typesv1.SagaContext { return nil }, wantField: "saga"},
		{name: "empty mission", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { s.MissionId = ""; return s }, wantField: "saga.mission_id"},
		{name: "hash tag in mission", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { s.MissionId = "a}b"; return s }, wantField: "saga.mission_id"},
		{name: "long saga", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.SagaId = strings.Repeat("s", rpcerr.MaxIDLen+1)
			return s
		}, wantField: "saga.saga_id"},
		{name: "space in saga", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { s.SagaId = "a b"; return s }, wantField: "saga.saga_id"},
		{name: "other step", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { s.Step = "merge_maps"; return s }, wantField: "saga.step"},
		{name: "no step", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext { s.Step = ""; return s }, wantField: "saga.step"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := rpcerr.CheckSaga(tt.mutate(ok()), "allocate_map")
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || rpcerr.Field(err) != tt.wantField {
				t.Errorf("err = %v (field %q), want INVALID_ARGUMENT on %s", err, rpcerr.Field(err), tt.wantField)
			}
		})
	}
}

func TestUnexpected(t *testing.T) {
	t.Parallel()
	domain := rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound, "no map")
	tests := []struct {
		name       string
		err        error
		wantCode   codes.Code
		wantReason string
	}{
		{name: "nil", err: nil, wantCode: codes.OK},
		{name: "status passes", err: fmt.Errorf("load: %w", domain), wantCode: codes.NotFound, wantReason: rpcerr.ReasonMapNotFound},
		{name: "deadline", err: fmt.Errorf("read: %w", context.DeadlineExceeded), wantCode: codes.DeadlineExceeded},
		{name: "canceled", err: context.Canceled, wantCode: codes.Canceled},
		{name: "connection refused", err: fmt.Errorf("redis: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "eof", err: fmt.Errorf("redis: %w", io.EOF), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "bug", err: errors.New("proto: cannot parse invalid wire-format data"), wantCode: codes.Internal, wantReason: rpcerr.ReasonInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := rpcerr.Unexpected(tt.err)
			if c := rpcerr.Code(got); c != tt.wantCode {
				t.Errorf("code = %v, want %v (err %v)", c, tt.wantCode, got)
			}
			if r := rpcerr.Reason(got); r != tt.wantReason {
				t.Errorf("reason = %q, want %q", r, tt.wantReason)
			}
			if tt.wantCode == codes.Internal && strings.Contains(status.Convert(got).Message(), "proto") {
				t.Errorf("INTERNAL leaks the cause: %q", status.Convert(got).Message())
			}
		})
	}
}
