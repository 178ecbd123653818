// Package localization is the agent localization service, step 2 of the
// mission saga (localize_agents): it estimates each agent's map_from_agent
// pose by scan matching its submap (given, or integrated from its scans)
// against the team map grown from the anchor, reports progress per agent, and
// records the poses for the mission. ReleaseAgents, the step's compensation,
// forgets them.
//
// Matching is pure CPU work and runs outside any Redis transaction; the
// barrier is consulted before it, so that a retried call whose first attempt
// committed answers from the stored result without matching again, and the
// poses are written together with the barrier mark afterwards. A request
// that only places its anchor on a small map whose geometry it states
// (map_meta) skips that look: one round trip, the commit, which checks the
// stated map and answers a duplicate with the stored poses.
package localization

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

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/missionkeys"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/stepserver"
)

// ServiceName is the service's name in events, logs and traces.
const ServiceName = "localization"

// Step is the saga step this service performs.
const Step = "localize_agents"

// ActionMethods are the full method names of the step's action RPCs, for
// the progress interceptor (stepserver.Interceptors).
var ActionMethods = []string{localizationv1.LocalizationService_LocalizeAgents_FullMethodName}

// CompensationMethods are the full method names of the step's compensation
// RPCs, for the fault interceptor (stepserver.Interceptors).
var CompensationMethods = []string{localizationv1.LocalizationService_ReleaseAgents_FullMethodName}

// Config tunes the service; zero fields take the defaults.
type Config struct {
	// Parallelism bounds how many agents of one request are matched at once;
	// 0 means GOMAXPROCS.
	Parallelism int
}

// Server implements localizationv1.LocalizationServiceServer.
type Server struct {
	localizationv1.UnimplementedLocalizationServiceServer
	cfg     Config
	rdb     redis.UniversalClient
	barrier *barrier.Barrier
	log     *slog.Logger
}

// NewServer returns the service on rdb, guarded by b. It fails only for a
// negative Parallelism.
func NewServer(cfg Config, rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (*Server, error) {
	if cfg.Parallelism < 0 {
		return nil, fmt.Errorf("localization: negative parallelism %d", cfg.Parallelism)
	}
	return &Server{cfg: cfg, rdb: rdb, barrier: b, log: log}, nil
}

// Register registers s on r (a grpc.Server or grpcserver.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	localizationv1.RegisterLocalizationServiceServer(r, s)
}

// localizationKey names the hash of the mission's poses, agent_id ->
// AgentPose; missionkeys owns the name so that the mission's retention and
// deletion reach it.
func localizationKey(missionID string) string { return missionkeys.Localization(missionID) }

// LocalizeAgents localizes every agent of the request and records the poses.
func (s *Server) LocalizeAgents(ctx context.Context, req *localizationv1.LocalizeAgentsRequest) (*localizationv1.LocalizeAgentsResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	if err := rpcerr.CheckID("map_id", req.GetMapId()); err != nil {
		return nil, err
	}
	opts, err := s.options(req)
	if err != nil {
		return nil, err
	}
	id := stepserver.BarrierID(sc, Step)
	given, err := stepserver.MapOf(req.GetMapMeta())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if given != nil && placementOnly(req, given.Meta) {
		// One round trip: the work on the geometry the request states, then
		// the commit, which checks it against the stored map and answers a
		// duplicate with the first attempt's poses.
		resp, err := s.localizeAndCommit(ctx, req, id, given.Meta, opts, func(tx *barrier.Tx) {
			mapstore.ExpectMap(tx, sc.GetMissionId(), req.GetMapId(), given.Encoded)
		})
		switch {
		case err == nil:
			return resp, nil
		case !errors.Is(err, barrier.ErrStale):
			stored, committed, err := stepserver.Settle(ctx, s.barrier, id, err)
			if committed {
				return s.decode(ctx, stored)
			}
			return nil, s.toStatus(ctx, err)
		}
		// The stored map is not the one stated: read it, which says how.
	}
	// One round trip: the look at the barrier (a retry is answered without
	// matching again) and the map's geometry, which the matching needs.
	var metaCmd *redis.SliceCmd
	switch stored, committed, err := stepserver.Committed(ctx, s.barrier, id, func(p redis.Pipeliner) {
		metaCmd = mapstore.QueueMeta(ctx, p, sc.GetMissionId())
	}); {
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case committed:
		return s.decode(ctx, stored)
	}
	meta, err := s.mapMeta(ctx, metaCmd, sc.GetMissionId(), req.GetMapId())
	if err != nil {
		return nil, err
	}
	return s.localizeAndCommit(ctx, req, id, meta, opts, nil)
}

// placementOnly reports whether req only places its anchor (it has no other
// agent to match) on a map of meta small enough that redoing it for a
// duplicate costs less than a look at the barrier before every call
// (stepserver.OneTripCells).
func placementOnly(req *localizationv1.LocalizeAgentsRequest, meta grid.Meta) bool {
	agents := req.GetAgents()
	if len(agents) != 1 || agents[0].GetSubmap() == nil { // scans are integrated first: not small work
		return false
	}
	sm := agents[0].GetSubmap().GetMeta()
	return uint64(meta.Cells())+uint64(sm.GetWidth())*uint64(sm.GetHeight()) <= stepserver.OneTripCells
}

// localizeAndCommit localizes the agents of req in the map of geometry
// meta and commits the poses with the step's action mark, under the
// preconditions expect states (nil: none). Errors are statuses, except
// barrier.ErrStale when a precondition failed (nothing was written).
func (s *Server) localizeAndCommit(ctx context.Context, req *localizationv1.LocalizeAgentsRequest, id barrier.ID, meta grid.Meta, opts match.Options, expect func(*barrier.Tx)) (*localizationv1.LocalizeAgentsResponse, error) {
	agents, err := slamproto.AgentsFromProto(req.GetAgents(), meta.Resolution)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := checkAnchor(req.GetAgents(), agents); err != nil {
		return nil, err
	}
	resp, err := s.localize(ctx, meta, agents, noGuess(req.GetAgents()), opts)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}

	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	fields := make([]any, 0, 2*len(resp.GetPoses()))
	for _, p := range resp.GetPoses() {
		b, err := proto.Marshal(p)
		if err != nil {
			return nil, s.toStatus(ctx, err)
		}
		fields = append(fields, p.GetAgentId(), b)
	}
	key := localizationKey(id.Key)
	tx := s.barrier.NewTx()
	if expect != nil {
		expect(tx)
	}
	tx.Write(func(p redis.Pipeliner) { p.HSet(ctx, key, fields...) })
	stored, outcome, err := stepserver.Commit(ctx, s.barrier, id, tx, out)
	switch {
	case errors.Is(err, barrier.ErrStale):
		return nil, err
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case outcome == barrier.Duplicate:
		// A concurrent attempt, or the call this one repeats, committed
		// first: its result is the step's.
		return s.decode(ctx, stored)
	}
	return resp, nil
}

// options validates the search window and the verification limit of a
// request.
func (s *Server) options(req *localizationv1.LocalizeAgentsRequest) (match.Options, error) {
	wm, wr := req.GetSearchWindowM(), req.GetSearchWindowRad()
	if math.IsNaN(wm) || wm < 0 || wm > match.MaxWindowXY {
		return match.Options{}, rpcerr.InvalidArgument("search_window_m", fmt.Sprintf("%g m must be in [0, %g] (0 means %g)", wm, match.MaxWindowXY, match.DefaultWindowXY))
	}
	if math.IsNaN(wr) || wr < 0 || wr > match.MaxWindowTheta {
		return match.Options{}, rpcerr.InvalidArgument("search_window_rad", fmt.Sprintf("%g rad must be in [0, π] (0 means %.3f)", wr, match.DefaultWindowTheta))
	}
	if fc := req.GetMaxFreeConflict(); math.IsNaN(fc) || fc < 0 || fc > 1 {
		return match.Options{}, rpcerr.InvalidArgument("max_free_conflict", fmt.Sprintf("%g must be in [0, 1] (0 means %g)", fc, match.DefaultMaxFreeConflict))
	}
	return match.Options{WindowXY: wm, WindowTheta: wr, MaxFreeConflict: req.GetMaxFreeConflict(), Parallelism: s.cfg.Parallelism}, nil
}

// noGuess reports, per agent, that it came without an initial guess: it is
// then searched over the whole map (match.Agent.NoGuess).
func noGuess(agents []*typesv1.Agent) []bool {
	out := make([]bool, len(agents))
	for i, a := range agents {
		out[i] = a.GetInitialGuess() == nil
	}
	return out
}

// checkAnchor enforces exactly one anchor, with an initial guess: it defines
// the map frame, and two given poses could contradict each other.
func checkAnchor(req []*typesv1.Agent, agents []slamproto.Agent) error {
	anchor := -1
	for i, a := range agents {
		if !a.Anchor {
			continue
		}
		if anchor >= 0 {
			return rpcerr.InvalidArgument("agents["+strconv.Itoa(i)+"].anchor",
				fmt.Sprintf("agents[%d] is already the anchor; exactly one agent is", anchor))
		}
		anchor = i
		if req[i].GetInitialGuess() == nil {
			return rpcerr.InvalidArgument("agents["+strconv.Itoa(i)+"].initial_guess", "required for the anchor: it defines the map frame")
		}
	}
	if anchor < 0 {
		return rpcerr.InvalidArgument("agents", "exactly one agent must be the anchor; none is")
	}
	return nil
}

// mapMeta decodes the geometry of the mission map read by cmd
// (mapstore.QueueMeta), which is the frame the poses are estimated in; the
// request's map_id must be the mission's.
func (s *Server) mapMeta(ctx context.Context, cmd *redis.SliceCmd, missionID, mapID string) (grid.Meta, error) {
	meta, err := mapstore.MetaOf(cmd, missionID, mapID)
	switch {
	case errors.Is(err, mapstore.ErrNoMap):
		return grid.Meta{}, rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound,
			fmt.Sprintf("mission %s has no map %s", missionID, mapID), "mission_id", missionID, "map_id", mapID)
	case err != nil:
		return grid.Meta{}, s.toStatus(ctx, err)
	}
	return meta, nil
}

// localize runs the matching and reports each agent's outcome as progress.
func (s *Server) localize(ctx context.Context, meta grid.Meta, agents []slamproto.Agent, noGuess []bool, opts match.Options) (*localizationv1.LocalizeAgentsResponse, error) {
	in := make([]match.Agent, len(agents))
	for i, a := range agents {
		in[i] = match.Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor, NoGuess: noGuess[i]}
	}
	rep := progress.ReporterFrom(ctx)
	results, err := match.LocalizeAll(ctx, meta, in, opts, func(ev match.Event) {
		rep.Progress(ctx, float64(ev.Localized)/float64(ev.Total), eventMessage(agents[ev.Agent].ID, ev))
	})
	if err != nil {
		return nil, &localizeError{err: err, agents: agents}
	}
	resp := &localizationv1.LocalizeAgentsResponse{Poses: make([]*typesv1.AgentPose, len(results))}
	for i, r := range results {
		resp.Poses[i] = &typesv1.AgentPose{
			AgentId:      agents[i].ID,
			MapFromAgent: slamproto.PoseToProto(r.Pose),
			Score:        r.Score,
			InlierRatio:  r.InlierRatio,
			Ambiguity:    r.Ambiguity,
			Iterations:   uint32(max(r.Iterations, 0)),
			Anchor:       r.Anchor,
		}
	}
	return resp, nil
}

// eventMessage says what happened to one agent, for step.progress.
func eventMessage(id string, ev match.Event) string {
	switch {
	case ev.Err == nil && ev.Result.Anchor:
		return id + " is the anchor"
	case ev.Err == nil:
		return fmt.Sprintf("%s localized in round %d (score %.2f)", id, ev.Round, ev.Result.Score)
	case ev.Final:
		return fmt.Sprintf("%s not localized: %s", id, failureDetail(ev.Err))
	default:
		return fmt.Sprintf("%s not localized in round %d, retrying with the agents localized since", id, ev.Round)
	}
}

// localizeError carries a LocalizeAll failure with the agents it indexes.
type localizeError struct {
	err    error
	agents []slamproto.Agent
}

func (e *localizeError) Error() string { return e.err.Error() }
func (e *localizeError) Unwrap() error { return e.err }

// failureDetail explains one agent's failure without its index, which means
// nothing to a caller that names agents by id.
func failureDetail(err error) string {
	var le *match.LocalizationError
	if !errors.As(err, &le) {
		return slam.Detail(err)
	}
	r := le.Result
	switch {
	case errors.Is(le, slam.ErrInsufficientData) && le.Wide:
		return fmt.Sprintf("its submap has %d occupied cells, a search of %s needs %d: %s", r.Points, r.Search.Name(), int(le.Threshold), match.WideDataAdvice(r.Search))
	case errors.Is(le, slam.ErrInsufficientData):
		return fmt.Sprintf("its submap has %d occupied cells, %d needed", r.Points, int(le.Threshold))
	case errors.Is(le, slam.ErrAmbiguousMatch):
		return fmt.Sprintf("ambiguous match, a second pose scores %.0f%% of the best (limit %.0f%%); %s", 100*r.Ambiguity, 100*le.Threshold, r.SearchSummary())
	case le.Outside != 0:
		return fmt.Sprintf("best pose in the search window refused: a pose outside it explains the submap better (score %.3f against %.3f), the guess is farther off than the window: %s; %s", le.Outside, r.Score, le.WidenAdvice(), r.SearchSummary())
	case le.Edge:
		return fmt.Sprintf("best pose on the edge of the search window, the guess may be farther off: %s; %s", le.WidenAdvice(), r.SearchSummary())
	case le.Crowd:
		return fmt.Sprintf("best pose of a wide search does not stand clear of the other poses (margin %.4f < %.4f over the best other peak, verified or not), the agent may not overlap the team map; %s%s", r.Margin, le.Threshold, r.SearchSummary(), le.CrowdHint())
	case le.Verification:
		return fmt.Sprintf("best pose refused by verification: it contradicts the team map (free conflict %.3f > %.2f: %s); %s%s", r.FreeConflict, le.Threshold, le.ConflictCause(), r.SearchSummary(), le.Hint())
	default:
		return fmt.Sprintf("too little overlap with the team map, score %.3f < %.3f; %s%s", r.Score, le.Threshold, r.SearchSummary(), le.Hint())
	}
}

// ReleaseAgents forgets the poses the saga recorded. Without a recorded
// localization, or when repeated, it forgets nothing and succeeds.
func (s *Server) ReleaseAgents(ctx context.Context, req *localizationv1.ReleaseAgentsRequest) (*localizationv1.ReleaseAgentsResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	var released int
	outcome, err := s.barrier.Compensate(ctx, stepserver.BarrierID(sc, Step), func(ctx context.Context, tx *barrier.Tx, actionResult []byte) error {
		done := &localizationv1.LocalizeAgentsResponse{}
		if err := proto.Unmarshal(actionResult, done); err != nil {
			return fmt.Errorf("stored localization result: %w", err)
		}
		released = len(done.GetPoses())
		tx.Write(func(p redis.Pipeliner) { p.Del(ctx, localizationKey(sc.GetMissionId())) })
		return nil
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if outcome != barrier.Applied {
		s.log.InfoContext(ctx, "release had nothing to undo",
			"mission_id", sc.GetMissionId(), "saga_id", sc.GetSagaId(), "outcome", outcome.String())
		return &localizationv1.ReleaseAgentsResponse{}, nil
	}
	return &localizationv1.ReleaseAgentsResponse{Released: uint32(released)}, nil
}

// decode reads the result an earlier attempt stored in the barrier.
func (s *Server) decode(ctx context.Context, stored []byte) (*localizationv1.LocalizeAgentsResponse, error) {
	resp := &localizationv1.LocalizeAgentsResponse{}
	if err := proto.Unmarshal(stored, resp); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("stored localization result: %w", err))
	}
	return resp, nil
}

// toStatus is the service's one mapping from errors to gRPC statuses.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var (
		fe *slamproto.FieldError
		le *localizeError
		ue *match.UnlocalizedError
	)
	switch {
	case errors.As(err, &fe):
		return rpcerr.InvalidArgument(fe.Field, slam.Detail(fe.Err))
	case errors.As(err, &le) && errors.As(err, &ue):
		return unlocalizedStatus(ue, le.agents)
	case errors.Is(err, slam.ErrInvalidArgument):
		return rpcerr.InvalidArgument("agents", slam.Detail(err))
	case errors.As(err, &le) && errors.Is(err, slam.ErrInsufficientData):
		// Outside an agent's own failure, only the anchor's data can be
		// short: the team map starts from it (e.g. an anchor whose readings
		// are all no-return beams). A business failure, not a retry.
		return rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonInsufficientData,
			"the anchor "+anchorID(le.agents)+" gives no reference to localize against: "+slam.Detail(err), "agents", anchorID(le.agents))
	}
	return stepserver.Status(ctx, s.log, ServiceName, Step, err)
}

// unlocalizedStatus reports the agents that could not be localized, by id,
// under the reason LocalizeAll chose for the mission.
func unlocalizedStatus(ue *match.UnlocalizedError, agents []slamproto.Agent) error {
	reason := rpcerr.ReasonInsufficientData
	switch {
	case errors.Is(ue, slam.ErrAmbiguousMatch):
		reason = rpcerr.ReasonAmbiguousMatch
	case errors.Is(ue, slam.ErrInsufficientOverlap):
		reason = rpcerr.ReasonInsufficientOverlap
	}
	ids := make([]string, 0, len(ue.Failures))
	details := make([]string, 0, len(ue.Failures))
	for _, f := range ue.Failures {
		id := "agent #" + strconv.Itoa(f.Result.Agent)
		if f.Result.Agent >= 0 && f.Result.Agent < len(agents) {
			id = agents[f.Result.Agent].ID
		}
		ids = append(ids, id)
		detail := id + ": " + failureDetail(f)
		if f.Result.Agent >= 0 && f.Result.Agent < len(agents) && errors.Is(f, slam.ErrInsufficientData) {
			detail += noReturns(agents[f.Result.Agent].Scans)
		}
		details = append(details, detail)
	}
	return rpcerr.New(codes.FailedPrecondition, reason,
		fmt.Sprintf("cannot localize %d of %d agents: %s", len(ue.Failures), len(agents), strings.Join(details, "; ")),
		"agents", strings.Join(ids, ","))
}

// noReturns says why an agent sent as scans has no walls when none of its
// beams hit anything (found by a review: "0 occupied cells" alone left the
// cause to guess); "" otherwise.
func noReturns(scans []slam.PosedScan) string {
	if len(scans) == 0 {
		return ""
	}
	for _, s := range scans {
		if s.Scan.Returns() > 0 {
			return ""
		}
	}
	return fmt.Sprintf(" (no beam of its %d scans hit anything: every range is at or beyond range_max, infinite, NaN or below range_min; check range_max and the ranges' units)", len(scans))
}

// anchorID is the id of the anchor among agents, or "" when none is.
func anchorID(agents []slamproto.Agent) string {
	for _, a := range agents {
		if a.Anchor {
			return a.ID
		}
	}
	return ""
}
