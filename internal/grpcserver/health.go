package grpcserver

import (
	"context"
	"net/http"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ReadinessService is the grpc.health.v1 service name of readiness: SERVING
// while the process serves and Config.Ready has not failed for
// Config.UnreadyAfter. Readiness probes ask for it; liveness probes ask for
// the overall status "", which a dependency's outage never changes (a
// process restarted for a Redis outage would come back to the same outage).
const ReadinessService = "slammesh.readiness"

// Readiness defaults: a check every 2 s, NOT_SERVING after 10 s of
// failures (longer than a Redis failover's usual few seconds).
const (
	DefaultReadyInterval = 2 * time.Second
	DefaultUnreadyAfter  = 10 * time.Second
)

// watchReadiness calls Config.Ready every ReadyInterval until ctx ends or
// the server is closed, and sets ReadinessService NOT_SERVING once the
// calls have failed for UnreadyAfter, SERVING again at the first that
// succeeds; each change is logged. A drain's health.Shutdown wins: the statuses set after it are
// ignored.
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReadyInterval)
	defer t.Stop()
	var failingSince time.Time
	ready := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyInterval)
		err := s.cfg.Ready(cctx)
		cancel()
		switch {
		case err == nil && !ready:
			ready, failingSince = true, time.Time{}
			s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_SERVING)
			s.log.InfoContext(ctx, "ready again: the readiness check passes")
		case err == nil:
			failingSince = time.Time{}
		case ctx.Err() != nil:
			return
		case failingSince.IsZero():
			failingSince = time.Now()
			s.log.WarnContext(ctx, "readiness check failed", "error", err.Error(), "unready_after", s.cfg.UnreadyAfter.String())
		case ready && time.Since(failingSince) >= s.cfg.UnreadyAfter:
			ready = false
			s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_NOT_SERVING)
			s.log.ErrorContext(ctx, "not ready: the readiness check has failed since "+failingSince.Format(time.RFC3339), "error", err.Error())
		}
	}
}

// serveHealthz answers 200 while the overall gRPC health is SERVING and 503
// otherwise, for probes that speak HTTP only.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	s.serveHealth(w, r, "")
}

// serveHealth answers 200 while service's gRPC health is SERVING, 503
// otherwise.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, service string) {
	resp, err := s.health.Check(r.Context(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, "NOT_SERVING", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("SERVING\n"))
}

// serveReadyz answers 200 while ReadinessService is SERVING and 503
// otherwise, for readiness probes that speak HTTP only.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	s.serveHealth(w, r, ReadinessService)
}
