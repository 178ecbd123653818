// Package merge is the map merge service, step 3 of the mission saga
// (merge_maps): it warps each agent's submap by its localized pose into the
// mission map, fuses log-odds, refuses a merge whose inputs contradict each
// other (the consistency gate), and stores the result as a new map version
// with its contributor layer: for each cell, the agent whose evidence decided
// it (fuse.Merger's Contributors), which the console draws in the agent's
// colour. RevertMerge, the step's compensation, deletes that version and its
// layer and makes the previous one current again.
//
// Fusion runs outside any Redis transaction, on the current version read
// beforehand; the new version is committed with the barrier mark in the
// barrier's script, and only if the map is still at the version the fusion
// started from (a precondition the script checks), so a concurrent change
// can never be overwritten by a stale merge. A small merge whose request
// states the map's geometry (map_meta) does not read it: it fuses onto the
// map as allocated (version 1, all unknown) and commits in one round trip,
// on the condition that the map is still that; otherwise it reads and
// fuses again.
package merge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/stepserver"
)

// ServiceName is the service's name in events, logs and traces.
const ServiceName = "merge"

// Step is the saga step this service performs.
const Step = "merge_maps"

// ActionMethods are the full method names of the step's action RPCs, for
// the progress interceptor (stepserver.Interceptors).
var ActionMethods = []string{mergev1.MergeService_MergeMaps_FullMethodName}

// CompensationMethods are the full method names of the step's compensation
// RPCs, for the fault interceptor (stepserver.Interceptors).
var CompensationMethods = []string{mergev1.MergeService_RevertMerge_FullMethodName}

// maxRebases bounds how often one call fuses again after the map changed
// between reading it and committing: a change means another writer is
// active, and past a few rounds the caller's retry is the better place.
const maxRebases = 3

// Config tunes the service; zero fields take the defaults.
type Config struct {
	// MinConsistency is the consistency gate; 0 means
	// fuse.DefaultMinConsistency.
	MinConsistency float64
}

// Server implements mergev1.MergeServiceServer.
type Server struct {
	mergev1.UnimplementedMergeServiceServer
	fuseOpts fuse.Options
	rdb      redis.UniversalClient
	barrier  *barrier.Barrier
	log      *slog.Logger
}

// NewServer returns the service on rdb, guarded by b. It fails for a
// MinConsistency outside [0, 1].
func NewServer(cfg Config, rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (*Server, error) {
	if !(cfg.MinConsistency >= 0 && cfg.MinConsistency <= 1) {
		return nil, fmt.Errorf("merge: min consistency %g outside [0, 1]", cfg.MinConsistency)
	}
	return &Server{fuseOpts: fuse.Options{MinConsistency: cfg.MinConsistency}, rdb: rdb, barrier: b, log: log}, nil
}

// Register registers s on r (a grpc.Server or grpcserver.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	mergev1.RegisterMergeServiceServer(r, s)
}

// gates returns the fusion options of req: the service's, with the
// request's max_changed_share and min_consistency where they are set
// (0 keeps the service's). INVALID_ARGUMENT naming the field for a value
// outside [0, 1].
func (s *Server) gates(req *mergev1.MergeMapsRequest) (fuse.Options, error) {
	opts := s.fuseOpts
	for _, f := range []struct {
		field string
		v     float64
		dst   *float64
	}{
		{"max_changed_share", req.GetMaxChangedShare(), &opts.MaxChangedShare},
		{"min_consistency", req.GetMinConsistency(), &opts.MinConsistency},
	} {
		if !(f.v >= 0 && f.v <= 1) {
			return opts, rpcerr.InvalidArgument(f.field, fmt.Sprintf("%g must be in [0, 1] (0: the service's default)", f.v))
		}
		if f.v > 0 {
			*f.dst = f.v
		}
	}
	return opts, nil
}

// inconsistency says which of the merge's gates e failed, both when both
// did. The changed share is rounded up and the consistency down, so that
// the figure shown, given as max_changed_share or min_consistency, lets
// the merge through; the limits are shown as given.
func inconsistency(e *fuse.InconsistencyError) string {
	r := e.Report
	region := fmt.Sprintf("%.4f of the %d shared cells disagree inside %d contradicted 1 m regions (limit %s)",
		math.Ceil(e.ChangedShare*1e4)/1e4, r.Agreement+r.Disagreement, r.ContradictedRegions, exact(e.MaxChangedShare))
	consistency := math.Floor(e.Consistency*1e3) / 1e3
	switch floor, changed := e.Consistency < e.Threshold, e.ChangedShare > e.MaxChangedShare; {
	case floor && changed:
		return fmt.Sprintf("consistency %.3f < %s (%d shared cells agree, %d disagree), and %s%s", consistency, exact(e.Threshold), r.Agreement, r.Disagreement, region, glass(r))
	case floor:
		return fmt.Sprintf("consistency %.3f < %s (%d shared cells agree, %d disagree)%s", consistency, exact(e.Threshold), r.Agreement, r.Disagreement, glass(r))
	}
	return fmt.Sprintf("%s; overall consistency %.3f (floor %s)%s", region, consistency, exact(e.Threshold), glass(r))
}

// judgedPoses lists the poses the refused merge judged, so that whoever
// reads the refusal can tell a wrong pose from a changed world: "; poses
// judged (map_from_agent): robot-0 (x m, y m, θ°), …".
func judgedPoses(e *fuseError) string {
	if len(e.judged) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; poses judged (map_from_agent): ")
	for i, p := range e.judged {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.id(i) + " " + p.String())
	}
	return b.String()
}

// glass says how many contradicted cells the see-through test forgave as
// glass, when it forgave any: the figures before it leave them out.
func glass(r fuse.AgentReport) string {
	if r.SeeThroughCells == 0 {
		return ""
	}
	return fmt.Sprintf("; %d cells of glass seen through at a slant not counted", r.SeeThroughCells)
}

// exact formats v with as many digits as it needs.
func exact(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// errMapChanged says the map moved past the version a fusion started from.
var errMapChanged = errors.New("merge: map changed during the merge")

// MergeMaps fuses the agents' submaps into the mission map as a new version.
func (s *Server) MergeMaps(ctx context.Context, req *mergev1.MergeMapsRequest) (*mergev1.MergeMapsResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	if err := rpcerr.CheckID("map_id", req.GetMapId()); err != nil {
		return nil, err
	}
	poses, err := posesByAgent(req.GetPoses())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	opts, err := s.gates(req)
	if err != nil {
		return nil, err
	}
	id := stepserver.BarrierID(sc, Step)
	missionID := sc.GetMissionId()
	given, err := stepserver.MapOf(req.GetMapMeta())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if given != nil && smallMerge(req.GetAgents(), given.Meta) {
		// One round trip: the fusion onto the map as allocated (version 1,
		// all unknown, of the stated geometry), then the commit, which
		// checks that the map is still that and answers a duplicate with
		// the first attempt's result.
		resp, err := s.mergeAllocated(ctx, id, req.GetMapId(), req.GetAgents(), poses, given, opts)
		switch {
		case err == nil:
			return resp, nil
		case !errors.Is(err, errMapChanged):
			stored, committed, err := stepserver.Settle(ctx, s.barrier, id, err)
			if committed {
				return s.decode(ctx, stored)
			}
			return nil, s.toStatus(ctx, err)
		}
		// The map is not the one stated, or has merged versions: read it.
	}
	// One round trip: the look at the barrier (a retry is answered without
	// fusing again) and the current map, the base of the fusion.
	var loadCmd *redis.Cmd
	switch stored, committed, err := stepserver.Committed(ctx, s.barrier, id, func(p redis.Pipeliner) {
		loadCmd = mapstore.QueueLoad(ctx, p, missionID, 0)
	}); {
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case committed:
		return s.decode(ctx, stored)
	}

	base, err := baseOf(loadCmd, missionID, req.GetMapId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	in, ids, err := inputs(req.GetAgents(), poses, base.grid.Meta().Resolution)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	for rebase := 1; ; rebase++ {
		resp, err := s.mergeOnto(ctx, id, req.GetMapId(), base, in, ids, opts)
		if !errors.Is(err, errMapChanged) || rebase == maxRebases {
			if err != nil {
				return nil, s.toStatus(ctx, err)
			}
			return resp, nil
		}
		s.log.InfoContext(ctx, "map changed during the merge; fusing again on the new version",
			"mission_id", missionID, "saga_id", sc.GetSagaId(), "base_version", base.version)
		if base, err = loadCurrent(ctx, s.rdb, missionID, req.GetMapId()); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
}

// smallMerge reports whether fusing agents onto a map of meta is small
// enough work to redo for a duplicate rather than look at the barrier
// before every call (stepserver.OneTripCells): every agent comes with a
// submap (scans are integrated first), and the map's and the submaps' cells
// add up to at most that.
func smallMerge(agents []*typesv1.Agent, meta grid.Meta) bool {
	cells := uint64(meta.Cells())
	for _, a := range agents {
		if a.GetSubmap() == nil {
			return false
		}
		m := a.GetSubmap().GetMeta()
		cells += uint64(m.GetWidth()) * uint64(m.GetHeight())
	}
	return cells <= stepserver.OneTripCells
}

// mergeAllocated is mergeOnto on the map as AllocateMap created it, of the
// geometry given states: version 1, every cell unknown. errMapChanged when
// the stored map is not that.
func (s *Server) mergeAllocated(ctx context.Context, id barrier.ID, mapID string, agents []*typesv1.Agent, poses map[string]slam.Pose2D, given *stepserver.GivenMap, opts fuse.Options) (*mergev1.MergeMapsResponse, error) {
	g, err := grid.New(given.Meta)
	if err != nil {
		return nil, err
	}
	in, ids, err := inputs(agents, poses, given.Meta.Resolution)
	if err != nil {
		return nil, err
	}
	return s.mergeOnto(ctx, id, mapID, &baseMap{version: 1, grid: g, stated: given.Encoded}, in, ids, opts)
}

// mergeOnto fuses the inputs into base with opts' gates and commits the
// result as the next version, with its contributor layer and the barrier
// mark, provided the map is still at base's version (errMapChanged
// otherwise).
func (s *Server) mergeOnto(ctx context.Context, id barrier.ID, mapID string, base *baseMap, in []fuse.Input, ids []string, opts fuse.Options) (*mergev1.MergeMapsResponse, error) {
	merger, consistency, err := s.fuse(ctx, base.grid, in, ids, opts)
	if err != nil {
		return nil, err
	}
	merged := merger.Grid()
	occupied, free, _ := merged.Counts()
	resp := &mergev1.MergeMapsResponse{Version: base.version + 1, Consistency: consistency, KnownCells: uint64(occupied + free)}
	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	cells := slamproto.Int8Bytes(merged.ToInt8())
	layer, err := merger.Contributors()
	if err != nil {
		return nil, &fuseError{err: err, ids: ids}
	}
	contributors, err := mapstore.EncodeContributors(ids, layer)
	if err != nil {
		return nil, err
	}
	tx := s.barrier.NewTx()
	mapstore.ExpectHead(tx, id.Key, mapID, base.version)
	if base.stated != nil {
		mapstore.ExpectMap(tx, id.Key, mapID, base.stated)
	}
	tx.Write(func(p redis.Pipeliner) {
		mapstore.AddVersion(ctx, p, id.Key, resp.GetVersion(), cells)
		mapstore.AddContributors(ctx, p, id.Key, resp.GetVersion(), contributors)
	})
	stored, outcome, err := stepserver.Commit(ctx, s.barrier, id, tx, out)
	if errors.Is(err, barrier.ErrStale) {
		// The map is no longer mapID at base's version: a concurrent
		// change, or the map was released (the next load says which).
		return nil, errMapChanged
	}
	if err != nil {
		return nil, err
	}
	if outcome == barrier.Duplicate {
		// A concurrent attempt committed first: its result is the step's.
		return s.decode(ctx, stored)
	}
	return resp, nil
}

// posesByAgent validates the poses of a request and indexes them by agent.
func posesByAgent(poses []*typesv1.AgentPose) (map[string]slam.Pose2D, error) {
	byAgent := make(map[string]slam.Pose2D, len(poses))
	for i, p := range poses {
		at := "poses[" + strconv.Itoa(i) + "]"
		if err := slamproto.CheckAgentID(p.GetAgentId()); err != nil {
			return nil, rpcerr.InvalidArgument(at+".agent_id", err.Error())
		}
		if _, dup := byAgent[p.GetAgentId()]; dup {
			return nil, rpcerr.InvalidArgument(at+".agent_id", fmt.Sprintf("%q has two poses", p.GetAgentId()))
		}
		if p.GetMapFromAgent() == nil {
			return nil, rpcerr.InvalidArgument(at+".map_from_agent", "required")
		}
		if err := slamproto.PoseField(at+".map_from_agent", p.GetMapFromAgent()); err != nil {
			return nil, err
		}
		byAgent[p.GetAgentId()] = slamproto.PoseFromProto(p.GetMapFromAgent())
	}
	return byAgent, nil
}

// inputs converts the agents and pairs each with its pose. Every agent needs
// a pose and every pose an agent: a silently dropped submap would leave a
// hole in the map that nobody asked for.
func inputs(agents []*typesv1.Agent, poses map[string]slam.Pose2D, res float64) ([]fuse.Input, []string, error) {
	converted, err := slamproto.AgentsFromProto(agents, res)
	if err != nil {
		return nil, nil, err
	}
	out := make([]fuse.Input, len(converted))
	ids := make([]string, len(converted))
	for i, a := range converted {
		pose, ok := poses[a.ID]
		if !ok {
			return nil, nil, rpcerr.InvalidArgument("poses", fmt.Sprintf("no pose for agents[%d] %q", i, a.ID))
		}
		out[i] = fuse.Input{Agent: i, Submap: a.Submap, Pose: pose, Scans: a.Scans}
		ids[i] = a.ID
	}
	if len(poses) != len(converted) {
		return nil, nil, rpcerr.InvalidArgument("poses", fmt.Sprintf("%d poses for %d agents; every pose must name an agent", len(poses), len(converted)))
	}
	return out, ids, nil
}

// fuse merges the inputs into base one at a time with a fuse.Merger and
// opts' gates, so that progress is reported per agent (each input is judged
// against the map so far, as in fuse.Merge), and returns the Merger, whose
// grid is the merged map, and the lowest judged consistency.
func (s *Server) fuse(ctx context.Context, base *grid.Grid, in []fuse.Input, ids []string, opts fuse.Options) (*fuse.Merger, float64, error) {
	rep := progress.ReporterFrom(ctx)
	merger, consistency := fuse.NewMerger(base, opts), 1.0
	for k, input := range in {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		ar, err := merger.Add(input)
		if err != nil {
			judged := make([]slam.Pose2D, k+1)
			for j := range judged {
				judged[j] = in[j].Pose
			}
			fe := &fuseError{err: err, ids: ids, judged: judged, total: len(in)}
			if inc := (*fuse.InconsistencyError)(nil); errors.As(err, &inc) {
				fe.survey = surveyRest(ctx, merger, in, k, fe.id, inc)
			}
			return nil, 0, fe
		}
		msg := "fused " + ids[k]
		if ar.Judged {
			consistency = min(consistency, ar.Consistency)
			msg += fmt.Sprintf(" (consistency %.3f over %d shared cells)", ar.Consistency, ar.Agreement+ar.Disagreement)
		} else {
			msg += " (too little overlap to judge consistency)"
		}
		rep.Progress(ctx, float64(k+1)/float64(len(in)), msg)
	}
	return merger, consistency, nil
}

// fuseError carries a fusion failure with the agent ids its indexes refer to.
type fuseError struct {
	err error
	ids []string
	// judged are the poses (map_from_agent) of the inputs merged up to the
	// one that failed, in order: a refusal's figures mean something only
	// at them, and the mission keeps no poses once it compensated.
	judged []slam.Pose2D
	// total is how many inputs the merge had; survey, for a refusal of the
	// gates, what accepting them all needs.
	total  int
	survey survey
}

func (e *fuseError) Error() string { return e.err.Error() }

// id names input i by its agent id ("agent #i" past the known ids).
func (e *fuseError) id(i int) string {
	if i >= 0 && i < len(e.ids) {
		return e.ids[i]
	}
	return "agent #" + strconv.Itoa(i)
}
func (e *fuseError) Unwrap() error { return e.err }

// RevertMerge deletes the version the saga's merge wrote and makes the
// previous version current again. Without a merge, or when repeated, it
// reverts nothing and succeeds; it also leaves a map alone that was released
// already.
func (s *Server) RevertMerge(ctx context.Context, req *mergev1.RevertMergeRequest) (*mergev1.RevertMergeResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	missionID := sc.GetMissionId()
	var reverted bool
	var version uint32
	outcome, err := s.barrier.Compensate(ctx, stepserver.BarrierID(sc, Step), func(ctx context.Context, tx *barrier.Tx, actionResult []byte) error {
		done := &mergev1.MergeMapsResponse{}
		if err := proto.Unmarshal(actionResult, done); err != nil {
			return fmt.Errorf("stored merge result: %w", err)
		}
		mapID, current, err := mapstore.ReadHead(ctx, tx.Reader(), missionID)
		if err != nil {
			return err
		}
		mapstore.ExpectHead(tx, missionID, mapID, current)
		reverted, version = false, current
		if mapID == "" {
			return nil // released already: nothing left to revert
		}
		written := done.GetVersion()
		reverted = true
		tx.Write(func(p redis.Pipeliner) { mapstore.DeleteVersion(ctx, p, missionID, written) })
		if current == written {
			version = written - 1
			tx.Write(func(p redis.Pipeliner) { mapstore.SetCurrent(ctx, p, missionID, version) })
		}
		return nil
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if outcome != barrier.Applied {
		s.log.InfoContext(ctx, "revert had nothing to undo",
			"mission_id", missionID, "saga_id", sc.GetSagaId(), "outcome", outcome.String())
		return &mergev1.RevertMergeResponse{}, nil
	}
	return &mergev1.RevertMergeResponse{Reverted: reverted, Version: version}, nil
}

// decode reads the result an earlier attempt stored in the barrier.
func (s *Server) decode(ctx context.Context, stored []byte) (*mergev1.MergeMapsResponse, error) {
	resp := &mergev1.MergeMapsResponse{}
	if err := proto.Unmarshal(stored, resp); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("stored merge result: %w", err))
	}
	return resp, nil
}

// toStatus is the service's one mapping from errors to gRPC statuses.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var (
		fieldErr *slamproto.FieldError
		fuseErr  *fuseError
		incErr   *fuse.InconsistencyError
		noMap    *noMapError
	)
	switch {
	case errors.As(err, &fieldErr):
		return rpcerr.InvalidArgument(fieldErr.Field, fieldErr.Err.Error())
	case errors.As(err, &fuseErr) && errors.As(err, &incErr):
		id := fuseErr.id(incErr.Agent)
		md := []string{
			"agent", id,
			"consistency", exact(incErr.Consistency),
			"threshold", exact(incErr.Threshold),
			"min_consistency", exact(incErr.Threshold),
			"changed_share", exact(incErr.ChangedShare),
			"max_changed_share", exact(incErr.MaxChangedShare),
		}
		md = append(md, fuseErr.survey.metadata()...)
		return rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInconsistentMaps,
			fmt.Sprintf("%s contradicts the map: %s; a wrong pose or a changed world (a building whose glass or doors the passes saw differently: StartMission's max_changed_share and min_consistency accept more change)%s%s", id, inconsistency(incErr), fuseErr.survey.advice(fuseErr.total), judgedPoses(fuseErr)),
			md...)
	case errors.Is(err, slam.ErrInvalidArgument):
		return rpcerr.InvalidArgument("agents", slam.Detail(err))
	case errors.As(err, &noMap):
		return rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound, noMap.Error(), "mission_id", noMap.missionID, "map_id", noMap.mapID)
	case errors.Is(err, errMapChanged):
		return rpcerr.New(codes.Aborted, rpcerr.ReasonConflict, "the map kept changing during the merge; retry")
	}
	return stepserver.Status(ctx, s.log, ServiceName, Step, err)
}
