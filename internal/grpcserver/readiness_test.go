package grpcserver_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/slammesh/slammesh/internal/grpcserver"
)

// TestReadinessFollowsReadyLivenessDoesNot: readiness goes NOT_SERVING once
// Ready has failed for UnreadyAfter and SERVING at its next success; the
// overall status (liveness) and /healthz stay SERVING throughout, and a
// failure shorter than UnreadyAfter changes nothing.
func TestReadinessFollowsReadyLivenessDoesNot(t *testing.T) {
	var failing atomic.Bool
	h := start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) {
		c.ReadyInterval = 10 * time.Millisecond
		c.UnreadyAfter = 100 * time.Millisecond
		c.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("Ready called without a deadline")
			}
			if failing.Load() {
				return errors.New("redis: connection refused")
			}
			return nil
		}
	})
	health := healthpb.NewHealthClient(h.conn)
	status := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return resp.GetStatus()
	}
	serving := healthpb.HealthCheckResponse_SERVING
	if status(grpcserver.ReadinessService) != serving {
		t.Fatal("readiness not SERVING once serving")
	}

	failing.Store(true)
	await(t, "readiness NOT_SERVING after Ready failed for UnreadyAfter", func() bool {
		return status(grpcserver.ReadinessService) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if code, _ := httpGet(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d while unready, want 503", code)
	}
	if status("") != serving || status("grpc.testing.TestService") != serving {
		t.Error("liveness or the service's own status followed readiness")
	}
	if code, _ := httpGet(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while unready, want 200", code)
	}
	if len(h.logs.find(t, "readiness check failed")) != 1 {
		t.Error("want one log line for the start of the failures")
	}

	failing.Store(false)
	await(t, "readiness SERVING at the first success", func() bool {
		return status(grpcserver.ReadinessService) == serving
	})
	if code, body := httpGet(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q when ready again", code, body)
	}
	if len(h.logs.find(t, "ready again: the readiness check passes")) != 1 {
		t.Error("want a log line when ready again")
	}
}

// TestReadinessRidesOutABlip: failures shorter than UnreadyAfter leave
// readiness SERVING.
func TestReadinessRidesOutABlip(t *testing.T) {
	var calls atomic.Int64
	h := start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) {
		c.ReadyInterval = 5 * time.Millisecond
		c.UnreadyAfter = time.Hour
		c.Ready = func(context.Context) error {
			calls.Add(1)
			return errors.New("redis: i/o timeout")
		}
	})
	await(t, "20 failed readiness checks", func() bool { return calls.Load() >= 20 })
	if code, _ := httpGet(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d after failures shorter than UnreadyAfter, want 200", code)
	}
}

// TestCloseEndsServeWithReadiness: Close ends a running Serve even while
// readiness is being checked (its goroutine is one Serve waits for).
func TestCloseEndsServeWithReadiness(t *testing.T) {
	h := start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) {
		c.ReadyInterval = time.Millisecond
		c.Ready = func(context.Context) error { return nil }
	})
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		h.stopOnce.Do(func() { h.stopErr = err })
		if err != nil {
			t.Errorf("Serve after Close = %v, want nil", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("Serve still running after Close")
	}
}
