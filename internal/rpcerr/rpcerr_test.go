package rpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
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
		{name: "the mission's stream", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.ProgressStream = progress.MissionStream("m-1")
			return s
		}},
		{name: "another mission's stream", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.ProgressStream = progress.MissionStream("m-2")
			return s
		}, wantField: "saga.progress_stream"},
		{name: "the firehose", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.ProgressStream = progress.GlobalStream
			return s
		}, wantField: "saga.progress_stream"},
		{name: "a key of the mission", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.ProgressStream = "slammesh:{m-1}:saga"
			return s
		}, wantField: "saga.progress_stream"},
		{name: "a suffixed stream", mutate: func(s *typesv1.SagaContext) *typesv1.SagaContext {
			s.ProgressStream = progress.MissionStream("m-1") + ":custom"
			return s
		}, wantField: "saga.progress_stream"},
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

// TestUnexpectedStoreErrors feeds Unexpected the errors go-redis returns when
// Redis cannot serve a request for a while, produced by a real redis-server
// and client: server error replies as the wire carries them (an error_reply
// from a script is parsed exactly like one from the server itself), a pool
// that timed out, a closed client. They must retry (UNAVAILABLE), while the
// replies of a bug stay INTERNAL.
func TestUnexpectedStoreErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	reply := func(msg string) func(*testing.T) error {
		return func(t *testing.T) error {
			return rdb.Eval(t.Context(), "return redis.error_reply(ARGV[1])", nil, msg).Err()
		}
	}
	tests := []struct {
		name       string
		err        func(*testing.T) error
		wantCode   codes.Code
		wantReason string
	}{
		{name: "LOADING", err: reply("LOADING Redis is loading the dataset in memory"), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "READONLY", err: reply("READONLY You can't write against a read only replica."), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "MASTERDOWN", err: reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "TRYAGAIN", err: reply("TRYAGAIN Multiple keys request during rehashing of slot"), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "CLUSTERDOWN", err: reply("CLUSTERDOWN The cluster is down"), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "max clients", err: reply("ERR max number of clients reached"), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "NOREPLICAS", err: reply("NOREPLICAS Not enough good replicas to write."), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		// Credentials refused (a password rotated in Redis before in the
		// service's file) are an outage to retry (found by a review).
		{name: "NOAUTH", err: reply("NOAUTH Authentication required."), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "WRONGPASS", err: reply("WRONGPASS invalid username-password pair or user is disabled."), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "unauthenticated", err: reply("ERR Protocol error: unauthenticated multibulk length"), wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		// Out of memory is no bug either: the saga retries it too (found
		// by a review: INTERNAL compensated healthy missions).
		{name: "OOM", err: reply("OOM command not allowed when used memory > 'maxmemory'."), wantCode: codes.ResourceExhausted, wantReason: rpcerr.ReasonStoreFull},
		{name: "wrapped LOADING", err: func(t *testing.T) error {
			return fmt.Errorf("read map: %w", reply("LOADING Redis is loading the dataset in memory")(t))
		}, wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "pool timeout", err: func(t *testing.T) error {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1, PoolTimeout: 20 * time.Millisecond, MaxRetries: -1})
			defer c.Close()
			held := c.Conn() // takes the pool's only connection until closed
			defer held.Close()
			if err := held.Ping(t.Context()).Err(); err != nil {
				t.Fatalf("PING on the held connection: %v", err)
			}
			err := c.Ping(t.Context()).Err()
			if !errors.Is(err, redis.ErrPoolTimeout) {
				t.Fatalf("PING with the pool drained = %v, want redis.ErrPoolTimeout", err)
			}
			return fmt.Errorf("barrier: %w", err)
		}, wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "closed client", err: func(t *testing.T) error {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr})
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			return c.Ping(t.Context()).Err()
		}, wantCode: codes.Unavailable, wantReason: rpcerr.ReasonStoreUnavailable},
		{name: "WRONGTYPE is a bug", err: func(t *testing.T) error {
			key := "rpcerr:wrongtype"
			if err := rdb.Set(t.Context(), key, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			return rdb.LPush(t.Context(), key, "y").Err()
		}, wantCode: codes.Internal, wantReason: rpcerr.ReasonInternal},
		{name: "a script error is a bug", err: func(t *testing.T) error {
			return rdb.Eval(t.Context(), "return redis.call('NOSUCHCOMMAND')", nil).Err()
		}, wantCode: codes.Internal, wantReason: rpcerr.ReasonInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.err(t)
			if err == nil {
				t.Fatal("the case produced no error")
			}
			got := rpcerr.Unexpected(err)
			if c := rpcerr.Code(got); c != tt.wantCode {
				t.Errorf("Unexpected(%v): code = %v, want %v", err, c, tt.wantCode)
			}
			if r := rpcerr.Reason(got); r != tt.wantReason {
				t.Errorf("Unexpected(%v): reason = %q, want %q", err, r, tt.wantReason)
			}
		})
	}
}

// TestStoreFull tells Redis's OOM reply, as the wire carries it and
// wrapped, from the other replies of a server that cannot serve.
func TestStoreFull(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	reply := func(msg string) error {
		return rdb.Eval(t.Context(), "return redis.error_reply(ARGV[1])", nil, msg).Err()
	}
	oom := reply("OOM command not allowed when used memory > 'maxmemory'.")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"OOM", oom, true},
		{"wrapped OOM", fmt.Errorf("create saga m: %w", oom), true},
		{"LOADING", reply("LOADING Redis is loading the dataset in memory"), false},
		{"no error", nil, false},
	} {
		if got := rpcerr.StoreFull(tc.err); got != tc.want {
			t.Errorf("%s: StoreFull(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
