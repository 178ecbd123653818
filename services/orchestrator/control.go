package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// GetMission returns a mission as its saga record says.
func (s *Server) GetMission(ctx context.Context, req *orchestratorv1.GetMissionRequest) (*orchestratorv1.GetMissionResponse, error) {
	if err := checkMissionID("mission_id", req.GetMissionId()); err != nil {
		return nil, err
	}
	rec, err := s.store.Load(ctx, req.GetMissionId())
	if err != nil {
		return nil, s.loadError(ctx, req.GetMissionId(), err)
	}
	return &orchestratorv1.GetMissionResponse{Mission: toMission(rec)}, nil
}

// ListMissions pages through missions, newest first. The page token is the
// store's cursor (creation time and mission id of the last mission
// returned), so missions started while a client pages do not shift its
// pages.
func (s *Server) ListMissions(ctx context.Context, req *orchestratorv1.ListMissionsRequest) (*orchestratorv1.ListMissionsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		return nil, rpcerr.InvalidArgument("page_size", fmt.Sprintf("%d, at most %d", size, maxPageSize))
	}
	if tok := req.GetPageToken(); tok != "" {
		ms, id, ok := strings.Cut(tok, ":")
		if _, err := strconv.ParseUint(ms, 10, 63); !ok || err != nil || checkMissionID("page_token", id) != nil {
			return nil, rpcerr.InvalidArgument("page_token", "not a token from a previous response")
		}
	}
	var states []saga.State
	if st := req.GetState(); st != orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED {
		state, ok := missionStateOf(st)
		if !ok {
			return nil, rpcerr.InvalidArgument("state", fmt.Sprintf("unknown state %d", st))
		}
		states = append(states, state)
	}
	recs, next, err := s.store.List(ctx, req.GetPageToken(), size, states...)
	if err != nil {
		return nil, s.storeError(ctx, "list missions", err)
	}
	resp := &orchestratorv1.ListMissionsResponse{Missions: make([]*orchestratorv1.Mission, len(recs)), NextPageToken: next}
	for i, rec := range recs {
		resp.Missions[i] = toMission(rec)
	}
	return resp, nil
}

// CancelMission cancels a pending or running mission (its current step is
// stopped and every attempted step compensated) or tears down a completed
// one (every step compensated); a mission that is compensating or has ended
// otherwise is returned as is. With wait it returns once the mission has
// ended. A teardown is driven by this call, so it returns when the teardown
// has ended whatever wait says; it runs on a context the caller cannot
// cancel, so a client that leaves does not interrupt it.
func (s *Server) CancelMission(ctx context.Context, req *orchestratorv1.CancelMissionRequest) (*orchestratorv1.CancelMissionResponse, error) {
	key := req.GetMissionId()
	if err := checkMissionID("mission_id", key); err != nil {
		return nil, err
	}
	if len(req.GetReason()) > maxCancelReasonLen {
		return nil, rpcerr.InvalidArgument("reason", fmt.Sprintf("%d bytes, at most %d", len(req.GetReason()), maxCancelReasonLen))
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "CancelMission"
	}
	ctx = telemetry.WithLogAttrs(ctx, slog.String("mission_id", key))
	if !s.track() {
		return nil, errDraining
	}
	type result struct {
		rec *saga.Record
		err error
	}
	res := make(chan result, 1)
	go func() {
		defer s.work.Done()
		rec, err := s.engine.Cancel(context.WithoutCancel(ctx), key, reason)
		res <- result{rec, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		return nil, contextStatus(ctx)
	}
	if r.err != nil {
		return nil, s.engineError(ctx, key, r.err)
	}
	rec := r.rec
	s.log.InfoContext(ctx, "mission cancel requested", slog.String("reason", reason), slog.String("state", string(rec.State)))
	if req.GetWait() && !rec.State.Terminal() {
		var err error
		if rec, err = s.awaitEnd(ctx, key); err != nil {
			return nil, err
		}
	}
	return &orchestratorv1.CancelMissionResponse{Mission: toMission(rec)}, nil
}

// reasonMissionNotFailed is the ErrorInfo reason of a ResumeMission on a
// mission that has no failed compensation to resume (docs/architecture.md).
const reasonMissionNotFailed = "MISSION_NOT_FAILED"

// ResumeMission resumes the compensation of a FAILED mission — an operator's
// action once the fault that made a compensation give up is repaired: the
// engine gives that compensation a fresh budget of attempts and puts the
// mission back to COMPENSATING, and this server drives it (should it die,
// another orchestrator's recovery does). A COMPENSATING or COMPENSATED
// mission needs no resuming and is returned as is, so a client may retry a
// call whose reply it lost; a PENDING, RUNNING or COMPLETED mission has no
// compensation to resume: FAILED_PRECONDITION. With wait it returns once the
// mission has ended again.
func (s *Server) ResumeMission(ctx context.Context, req *orchestratorv1.ResumeMissionRequest) (*orchestratorv1.ResumeMissionResponse, error) {
	key := req.GetMissionId()
	if err := checkMissionID("mission_id", key); err != nil {
		return nil, err
	}
	ctx = telemetry.WithLogAttrs(ctx, slog.String("mission_id", key))
	if !s.track() {
		return nil, errDraining
	}
	// A client leaving must not strand a mission the engine has reopened for
	// this server to drive.
	rec, resumed, err := s.engine.Resume(context.WithoutCancel(ctx), key)
	if err != nil {
		s.work.Done()
		return nil, s.engineError(ctx, key, err)
	}
	if !resumed {
		s.work.Done()
		switch rec.State {
		case saga.Pending, saga.Running, saga.Completed:
			return nil, rpcerr.New(codes.FailedPrecondition, reasonMissionNotFailed,
				fmt.Sprintf("mission %q is %s: only a failed mission's compensation can be resumed", key, missionStates[rec.State]))
		}
	} else {
		s.log.InfoContext(ctx, "mission compensation resumed by an operator", slog.Int64("epoch", rec.Epoch))
		s.launch(key, func() {})
	}
	if req.GetWait() && !rec.State.Terminal() {
		if rec, err = s.awaitEnd(ctx, key); err != nil {
			return nil, err
		}
	}
	return &orchestratorv1.ResumeMissionResponse{Mission: toMission(rec), Resumed: resumed}, nil
}
