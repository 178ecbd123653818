package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/missionid"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// StartMission validates the request, creates the mission's saga (or finds
// the existing one: mission_id is the idempotency key) and runs it in the
// background; with wait it returns once the mission has ended.
func (s *Server) StartMission(ctx context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	in, err := normalizeStart(req, s.cfg.AllowFaultInjection)
	if err != nil {
		return nil, err
	}
	given := in.GetMissionId() != ""
	if !given {
		in.MissionId = missionid.New(time.Now())
	}
	key := in.GetMissionId()
	ctx = telemetry.WithLogAttrs(ctx, slog.String("mission_id", key))
	if given && (in.GetScenario() != nil || dotsAlone(key)) {
		// A repeat is the common case of a given id (clients retry), and it
		// must not generate a world. Without a scenario the create below
		// answers a repeat itself (with the existing record, and a span that
		// says so), which spares every first start a round trip.
		// An id of dots alone is refused for a new mission only
		// (checkNewMissionID), so it is looked up first too.
		rec, err := s.store.Load(ctx, key)
		switch {
		case err == nil:
			return s.existing(ctx, rec, in, req.GetWait())
		case errors.Is(err, saga.ErrDamaged):
			return nil, s.loadError(ctx, key, err)
		case !errors.Is(err, saga.ErrNotFound):
			return nil, s.storeError(ctx, "load mission", err)
		}
		if err := checkNewMissionID("mission_id", key); err != nil {
			return nil, err
		}
	}
	release := func() {}
	if sc := in.GetScenario(); sc != nil {
		// Generate the world now (it is cached for the steps, until the run
		// ends), so that a scenario the generator refuses is a bad request,
		// not a mission that compensates. Its submaps are integrated while
		// the mission begins.
		if release, err = s.mission.scenarios.Prepare(sc); err != nil {
			return nil, rpcerr.InvalidArgument("scenario", detail(err))
		}
	}
	input, err := proto.Marshal(in)
	if err != nil {
		release()
		s.log.ErrorContext(ctx, "encode mission input failed", slog.String("error", err.Error()))
		return nil, status.Error(codes.Internal, "encode mission input")
	}
	if !s.track() {
		release()
		return nil, errDraining
	}
	rec, created, err := s.engine.Begin(ctx, key, "", input)
	if err != nil {
		release()
		s.work.Done()
		return nil, s.storeError(ctx, "start mission", err)
	}
	if !created {
		// A concurrent repeat created it first.
		release()
		s.work.Done()
		return s.existing(ctx, rec, in, req.GetWait())
	}
	s.launch(key, release)
	if !req.GetWait() {
		return &orchestratorv1.StartMissionResponse{Mission: toMission(rec), Created: true}, nil
	}
	if rec, err = s.awaitEnd(ctx, key); err != nil {
		return nil, err
	}
	return &orchestratorv1.StartMissionResponse{Mission: toMission(rec), Created: true}, nil
}

// existing answers a StartMission for a mission that already exists: the
// mission, when in (normalized) is the request that created it; else
// ALREADY_EXISTS. A mission id is an idempotency key, and a key sent again
// with another payload is a mistake to report (a copied id, a script that
// reuses its ids), not a repeat to answer with a mission the caller did
// not ask for.
func (s *Server) existing(ctx context.Context, rec *saga.Record, in *orchestratorv1.StartMissionRequest, wait bool) (*orchestratorv1.StartMissionResponse, error) {
	if !s.sameRequest(ctx, rec, in) {
		return nil, rpcerr.New(codes.AlreadyExists, rpcerr.ReasonMissionIDReused,
			fmt.Sprintf("mission %s exists, started %s by another request: a mission id is an idempotency key; send the same request again to get that mission, or choose a new mission_id",
				rec.Key, rec.CreatedAt.UTC().Format(time.RFC3339)),
			rpcerr.MetadataField, "mission_id")
	}
	if wait && !rec.State.Terminal() {
		var err error
		if rec, err = s.awaitEnd(ctx, rec.Key); err != nil {
			return nil, err
		}
	}
	return &orchestratorv1.StartMissionResponse{Mission: toMission(rec), Created: false}, nil
}

// sameRequest reports whether rec was created by in: its stored input is
// the request as normalized then (defaults filled in, wait cleared), so a
// repeat equals it field for field, the mission id aside. Its fault plan is
// normalized again, as a record of an earlier release stored it as sent.
// An input that does not decode (a record written by hand) is taken as the
// same, as every repeat was before.
func (s *Server) sameRequest(ctx context.Context, rec *saga.Record, in *orchestratorv1.StartMissionRequest) bool {
	var stored orchestratorv1.StartMissionRequest
	if err := proto.Unmarshal(rec.Input, &stored); err != nil {
		s.log.WarnContext(ctx, "stored mission input does not decode; answering the repeat with the mission", slog.String("error", err.Error()))
		return true
	}
	// The key names the mission, whatever the input says: a record moved
	// to another key (an operator's rename) keeps its old id there.
	stored.MissionId = in.GetMissionId()
	normalizeFaults(stored.GetFaults())
	return proto.Equal(&stored, in)
}

// awaitEnd returns the record of mission key once it is terminal, or an
// error when ctx ends first (the mission carries on). A mission driven by
// this server is awaited on its run; one driven elsewhere (another replica,
// a teardown) by following its event stream to its next terminal event,
// which the engine writes in the same script as the terminal record.
func (s *Server) awaitEnd(ctx context.Context, key string) (*saga.Record, error) {
	s.mu.Lock()
	r := s.runs[key]
	s.mu.Unlock()
	if r != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, contextStatus(ctx)
		case <-s.drained:
			return nil, errDraining
		}
		if r.err == nil && r.rec.State.Terminal() {
			return r.rec, nil
		}
		if handedOff(r.err) {
			// This server is shutting down: let the client follow the
			// mission on the replica that resumes it.
			return nil, errHandedOff
		}
	}
	rec, err := s.store.Load(ctx, key)
	if err != nil {
		return nil, s.lostOrLoadError(ctx, key, err)
	}
	if rec.State.Terminal() {
		return rec, nil
	}
	// Take the stream position, then read the record again: a terminal
	// event written after that read lies after the position, so following
	// from it cannot miss the end.
	last, err := lastEventID(ctx, s.rdb, key)
	if err != nil {
		return nil, s.storeError(ctx, "read mission events", err)
	}
	if rec, err = s.store.Load(ctx, key); err != nil {
		return nil, s.lostOrLoadError(ctx, key, err)
	}
	if rec.State.Terminal() {
		return rec, nil
	}
	if err := s.follow(ctx, key, last, func(progress.Event) error { return nil }); err != nil {
		return nil, s.watchError(ctx, "follow mission events", err)
	}
	if rec, err = s.store.Load(ctx, key); err != nil {
		return nil, s.lostOrLoadError(ctx, key, err)
	}
	return rec, nil
}

// lostOrLoadError is loadError for a mission known to exist when the wait
// for its end began: gone since, it was running and its record is gone
// (lostError), not a mission never heard of (found by a review: start
// --wait on a mission Redis lost answered "mission not found").
func (s *Server) lostOrLoadError(ctx context.Context, key string, err error) error {
	if errors.Is(err, saga.ErrNotFound) {
		return s.lostError(ctx, key)
	}
	return s.loadError(ctx, key, err)
}

// lastEventID returns the id of the newest event of a mission, or "0" when
// it has none.
func lastEventID(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	msgs, err := rdb.XRevRangeN(ctx, progress.MissionStream(key), "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("newest event of %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return "0", nil
	}
	return msgs[0].ID, nil
}
