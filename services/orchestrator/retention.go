package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/missionkeys"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// DefaultRetention is how long a finished mission keeps its data by default.
const DefaultRetention = 7 * 24 * time.Hour

// reasonMissionNotFinished is the ErrorInfo reason of a DeleteMission of a
// mission an orchestrator still drives (FAILED_PRECONDITION).
const reasonMissionNotFinished = "MISSION_NOT_FINISHED"

// janitorBatch bounds the index entries one janitor pass checks.
const janitorBatch = 10_000

// retention is the saga store's retention of cfg: every key the missions
// of def own (missionkeys.All) expires cfg.Retention after the mission
// completed or compensated.
func retention(cfg Config, def *saga.Definition) saga.Retention {
	ttl := cfg.Retention
	if ttl <= 0 {
		ttl = DefaultRetention
	}
	steps := make([]string, len(def.Steps))
	for i, st := range def.Steps {
		steps[i] = st.Name
	}
	return saga.Retention{TTL: ttl, Keys: func(key string) []string { return missionkeys.All(key, steps) }}
}

// janitorInterval is the time between two janitor passes.
func (s *Server) janitorInterval() time.Duration {
	if d := s.cfg.JanitorInterval; d > 0 {
		return d
	}
	return max(min(s.store.Retention().TTL/4, time.Minute), 10*time.Millisecond)
}

// janitor trims the global mission index of expired missions and the
// firehose of events older than the retention until ctx ends
// (saga.Store.Trim, progress.TrimGlobal: idempotent, so every orchestrator
// runs it). The missions' own keys expire by themselves; only the global
// keys, which no per-mission write may touch, need this.
func (s *Server) janitor(ctx context.Context) {
	t := time.NewTicker(s.janitorInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		n, err := s.store.Trim(ctx, now, janitorBatch)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "trimming the mission index failed; retrying at the next pass", slog.String("error", err.Error()))
		case n > 0:
			s.log.InfoContext(ctx, "expired missions dropped from the mission index", slog.Int("missions", n))
		}
		// The firehose outlives no mission: its events go with the
		// retention too, whatever the mission rate.
		if _, err := progress.TrimGlobal(ctx, s.rdb, now.Add(-s.store.Retention().TTL)); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "trimming the global event stream failed; retrying at the next pass", slog.String("error", err.Error()))
		}
	}
}

// notFound is the NOT_FOUND status of mission key, whose record is missing:
// MISSION_EXPIRED when the mission existed (saga.Store.Vanished: still
// indexed, or a tombstone), MISSION_NOT_FOUND otherwise. A failure to tell
// falls back to MISSION_NOT_FOUND: the record is missing either way.
func (s *Server) notFound(ctx context.Context, key string) error {
	if s.store == nil { // a Server built bare, for its error mapping alone
		return rpcerr.New(codes.NotFound, rpcerr.ReasonMissionNotFound, fmt.Sprintf("mission %q not found", key))
	}
	gone, err := s.store.Vanished(ctx, key)
	if err != nil {
		s.log.WarnContext(ctx, "reading the mission tombstones failed", slog.String("error", err.Error()))
	}
	if gone {
		return rpcerr.New(codes.NotFound, rpcerr.ReasonMissionExpired, fmt.Sprintf(
			"mission %q no longer exists: its data expired at the end of its retention period (%v) or was deleted",
			key, s.store.Retention().TTL), "mission_id", key)
	}
	return rpcerr.New(codes.NotFound, rpcerr.ReasonMissionNotFound, fmt.Sprintf("mission %q not found", key))
}

// DeleteMission removes a finished mission and all its data now (see the
// proto). The record is read first only to answer with the mission; the
// deletion itself checks atomically that the mission is still finished.
func (s *Server) DeleteMission(ctx context.Context, req *orchestratorv1.DeleteMissionRequest) (*orchestratorv1.DeleteMissionResponse, error) {
	key := req.GetMissionId()
	if err := checkMissionID("mission_id", key); err != nil {
		return nil, err
	}
	ctx = telemetry.WithLogAttrs(ctx, slog.String("mission_id", key))
	rec, err := s.store.Load(ctx, key)
	if err != nil {
		return nil, s.loadError(ctx, key, err)
	}
	switch err := s.store.Delete(ctx, key, time.Now()); {
	case errors.Is(err, saga.ErrNotFinished):
		cur, cancelled := rec.State, rec.Cancelled
		if fresh, lerr := s.store.Load(ctx, key); lerr == nil {
			cur, cancelled = fresh.State, fresh.Cancelled
		}
		advice := "cancel it first"
		if cur == saga.Compensating || cancelled {
			advice = "its compensation is under way; delete it once that ends (slamctl watch follows it)"
		}
		return nil, rpcerr.New(codes.FailedPrecondition, reasonMissionNotFinished,
			fmt.Sprintf("mission %q is %s: only a finished mission can be deleted; %s", key, missionStates[cur], advice))
	case errors.Is(err, saga.ErrNotFound):
		return nil, s.notFound(ctx, key)
	case errors.Is(err, saga.ErrIndexLeft):
		// Deleted: answering an error would send the operator to retry a
		// deletion that happened (found by a review, on a full Redis).
		s.log.WarnContext(ctx, "mission deleted; its index entry is left to the retention janitor", slog.String("error", err.Error()))
	case err != nil:
		return nil, s.storeError(ctx, "delete mission", err)
	}
	s.log.InfoContext(ctx, "mission deleted by an operator", slog.String("state", string(rec.State)))
	return &orchestratorv1.DeleteMissionResponse{Mission: toMission(rec)}, nil
}
