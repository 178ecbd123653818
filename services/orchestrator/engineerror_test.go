package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

// The engine's refusals of a Cancel or Resume must not read as a store
// outage: only a Redis failure is "mission store (Redis) unavailable".
func TestEngineError(t *testing.T) {
	t.Parallel()
	s := &Server{log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		want   error // the exact status, when it is one of the server's own
	}{
		{"unknown mission", saga.ErrNotFound, codes.NotFound, rpcerr.ReasonMissionNotFound, nil},
		{"engine draining", saga.ErrClosed, codes.Unavailable, rpcerr.ReasonDraining, errDraining},
		{"teardown handed off", saga.ErrHandedOff, codes.Unavailable, rpcerr.ReasonMissionMoved, errHandedOff},
		{"teardown taken over", saga.ErrFenced, codes.Unavailable, rpcerr.ReasonMissionMoved, errTakenOver},
		{"record lost by Redis", &saga.RecordGoneError{Op: "save saga m1 at epoch 2"}, codes.NotFound, rpcerr.ReasonMissionNotFound, nil},
		{"run already in this engine", saga.ErrRunning, codes.Internal, rpcerr.ReasonInternal, errInternal},
		{"record of another definition", saga.ErrDefinitionMismatch, codes.Internal, rpcerr.ReasonInternal, errInternal},
		// Redis answered: no outage (found by a review).
		{"reopen refused as late", fmt.Errorf("reopen saga m: %w", saga.ErrLate), codes.Unavailable, rpcerr.ReasonOrchestratorLate, nil},
		{"redis unreachable", net.ErrClosed, codes.Unavailable, rpcerr.ReasonStoreUnavailable, nil},
		{"redis refusing the password", redisReply("WRONGPASS invalid username-password pair or user is disabled."), codes.Unavailable, rpcerr.ReasonStoreUnavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The engine wraps its errors with the operation and the key.
			err := s.engineError(context.Background(), "m1", fmt.Errorf("cancel saga m1: %w", tt.err))
			if status.Code(err) != tt.code || rpcerr.Reason(err) != tt.reason {
				t.Errorf("engineError = %v (reason %q), want %v %q", err, rpcerr.Reason(err), tt.code, tt.reason)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("engineError = %v, want %v", err, tt.want)
			}
			// A store failure says what kind, for the client sees no log
			// (found by a review: a rotated password read as an outage).
			if want := map[string]string{"redis unreachable": ": unreachable", "redis refusing the password": "refused the orchestrator's credentials"}[tt.name]; want != "" && !strings.Contains(err.Error(), want) {
				t.Errorf("engineError = %v, want it to say %q", err, want)
			}
		})
	}
}

// redisReply is an error reply as go-redis returns one from the server.
type redisReply string

func (e redisReply) Error() string { return string(e) }

// RedisError marks it as a Redis server's reply (redis.Error).
func (redisReply) RedisError() {}
