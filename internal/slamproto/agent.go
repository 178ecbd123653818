package slamproto

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/localslam"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// Limits on agents arriving over the wire. They keep one request from
// costing unbounded memory or time; a real robot's contribution to one
// mission is far below them.
const (
	// MaxAgentIDLen bounds agent ids (see types.proto).
	MaxAgentIDLen = 64
	// MaxAgents bounds the agents of one mission, as for synthetic worlds.
	MaxAgents = world.MaxAgents
	// MaxScansPerAgent bounds the scans of one agent; it is the
	// orchestrator's limit, so that what it accepts the services accept.
	MaxScansPerAgent = 36000
	// MaxSubmapCells bounds one agent's submap, given or built from scans:
	// 4 Mi cells is a 100 m square at 5 cm.
	MaxSubmapCells = 1 << 22
)

// FieldError locates a conversion error at a field path relative to the
// message being converted ("submap.meta.resolution"), so that a service can
// prefix its own path ("agents[2].") and report INVALID_ARGUMENT naming the
// exact field. It wraps the domain error (usually slam.ErrInvalidArgument or
// slam.ErrTooLarge).
type FieldError struct {
	Field string
	Err   error
}

// Error names the field and says what is wrong with it.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the domain error.
func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr returns err located at field; when err is already a FieldError,
// field becomes the prefix of its path.
func fieldErr(field string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: field + "." + fe.Field, Err: fe.Err}
	}
	return &FieldError{Field: field, Err: err}
}

// invalid returns a FieldError for field wrapping slam.ErrInvalidArgument,
// whose message is only the detail: the field path already says what is
// wrong where, and the sentinel's text would be noise to a caller.
func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: &detail{sentinel: slam.ErrInvalidArgument, msg: fmt.Sprintf(format, args...)}}
}

// detail is an error with its own message that still matches a sentinel.
type detail struct {
	sentinel error
	msg      string
}

func (d *detail) Error() string { return d.msg }
func (d *detail) Unwrap() error { return d.sentinel }

// Agent is an agent of a request in domain form: its submap in its own start
// frame (given, or integrated from its scans) and its initial guess of
// map_from_agent.
type Agent struct {
	ID     string
	Submap *grid.Grid
	Guess  slam.Pose2D
	Anchor bool
}

// AgentFromProto validates and converts an agent. Exactly one of submap and
// scans must be set; scans become a submap of resolution res (the mission
// map's) through SubmapFromScans: placed by the local front end (or at
// their sent poses when those are as sharp), sized to what they observed.
// Errors are *FieldError with paths relative to the agent ("agent_id",
// "submap.meta.width", "scans[3].scan.range_max", "initial_guess").
func AgentFromProto(a *typesv1.Agent, res float64) (Agent, error) {
	if err := CheckAgentID(a.GetAgentId()); err != nil {
		return Agent{}, &FieldError{Field: "agent_id", Err: err}
	}
	if err := PoseField("initial_guess", a.GetInitialGuess()); err != nil {
		return Agent{}, err
	}
	out := Agent{ID: a.GetAgentId(), Guess: PoseFromProto(a.GetInitialGuess()), Anchor: a.GetAnchor()}
	hasSubmap, hasScans := a.GetSubmap() != nil, len(a.GetScans()) > 0
	var err error
	switch {
	case hasSubmap && hasScans:
		return Agent{}, invalid("submap", "set either submap or scans, not both")
	case hasSubmap:
		out.Submap, err = submapFromProto(a.GetSubmap())
		if err != nil {
			return Agent{}, fieldErr("submap", err)
		}
	case hasScans:
		out.Submap, err = SubmapFromScans(a.GetScans(), res)
		if err != nil {
			return Agent{}, err
		}
	default:
		return Agent{}, invalid("submap", "one of submap or scans is required")
	}
	return out, nil
}

// AgentsFromProto converts the agents of a request (see AgentFromProto):
// 1..MaxAgents of them with unique ids. Errors are *FieldError with paths
// relative to the request ("agents", "agents[2].submap.meta.resolution").
func AgentsFromProto(agents []*typesv1.Agent, res float64) ([]Agent, error) {
	if len(agents) == 0 || len(agents) > MaxAgents {
		return nil, invalid("agents", "%d agents, want 1..%d", len(agents), MaxAgents)
	}
	out := make([]Agent, len(agents))
	seen := make(map[string]int, len(agents))
	for i, pa := range agents {
		at := "agents[" + strconv.Itoa(i) + "]"
		if j, dup := seen[pa.GetAgentId()]; dup {
			return nil, invalid(at+".agent_id", "%q repeats agents[%d]", pa.GetAgentId(), j)
		}
		seen[pa.GetAgentId()] = i
		a, err := AgentFromProto(pa, res)
		if err != nil {
			return nil, fieldErr(at, err)
		}
		out[i] = a
	}
	return out, nil
}

// CheckAgentID validates an agent id: 1..64 characters of [A-Za-z0-9_.-].
// The error wraps slam.ErrInvalidArgument.
func CheckAgentID(id string) error {
	if id == "" || len(id) > MaxAgentIDLen {
		return &detail{sentinel: slam.ErrInvalidArgument, msg: fmt.Sprintf("agent id must have 1..%d characters", MaxAgentIDLen)}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return &detail{sentinel: slam.ErrInvalidArgument, msg: "agent id may contain only letters, digits and _ . -"}
		}
	}
	return nil
}

// PoseField validates a pose located at field (see slam.Pose2D.Validate);
// an absent pose is the identity and valid.
func PoseField(field string, p *typesv1.Pose2D) error {
	if err := PoseFromProto(p).Validate(); err != nil {
		return &FieldError{Field: field, Err: err}
	}
	return nil
}

// submapFromProto is GridFromProto with field paths and the submap size limit.
func submapFromProto(og *typesv1.OccupancyGrid) (*grid.Grid, error) {
	m := og.GetMeta()
	switch {
	case m == nil:
		return nil, invalid("meta", "required")
	case math.IsNaN(m.GetResolution()) || math.IsInf(m.GetResolution(), 0) || m.GetResolution() < 1e-3 || m.GetResolution() > 100:
		return nil, invalid("meta.resolution", "%g m is not in [0.001, 100]", m.GetResolution())
	case m.GetWidth() == 0:
		return nil, invalid("meta.width", "must be positive")
	case m.GetHeight() == 0:
		return nil, invalid("meta.height", "must be positive")
	case uint64(m.GetWidth())*uint64(m.GetHeight()) > MaxSubmapCells:
		return nil, &FieldError{Field: "meta", Err: &detail{sentinel: slam.ErrTooLarge, msg: fmt.Sprintf("%dx%d cells, limit %d", m.GetWidth(), m.GetHeight(), MaxSubmapCells)}}
	}
	if err := PoseField("meta.origin", m.GetOrigin()); err != nil {
		return nil, err
	}
	if m.GetOrigin().GetTheta() != 0 {
		return nil, invalid("meta.origin.theta", "grids must not be rotated")
	}
	if n := uint64(m.GetWidth()) * uint64(m.GetHeight()); uint64(len(og.GetData())) != n {
		return nil, invalid("data", "%d cells for a %dx%d grid", len(og.GetData()), m.GetWidth(), m.GetHeight())
	}
	g, err := GridFromProto(og)
	if err != nil {
		// Only cell values are left to fail here.
		return nil, &FieldError{Field: "data", Err: err}
	}
	return g, nil
}

// SubmapOptions tune how an agent's scans become its submap; the zero value
// is what the services use.
type SubmapOptions struct {
	// UsableRange (metres; 0: grid.DefaultUsableRange) bounds the free space
	// a no-return beam clears, and so the submap's extent (see
	// grid.Inserter).
	UsableRange float64
	// OdometryOnly integrates every scan at its sent pose, without the
	// local front end (localslam): for poses already corrected by a SLAM
	// system, and to measure what the front end changes.
	OdometryOnly bool
	// FrontEnd tunes the local front end; its UsableRange is taken from
	// UsableRange.
	FrontEnd localslam.Options
	// MinSharpening (0: DefaultMinSharpening; in (0, 1)) is the fraction of
	// occupied cells the front end's submap must save over the submap at
	// the sent poses to be used instead of it.
	MinSharpening float64
}

// DefaultMinSharpening: the front end's submap replaces the one at the sent
// poses only when it has at least 7 % fewer occupied cells, i.e. when the
// sent poses visibly smear the walls. On the real missions the jittery
// odomline poses give 10–21 % (docs/slam.md), while on the corrected
// trajectories the front end changes the count by −3.0 … +0.8 %: there the
// sent poses are already as consistent as the matcher can tell, and the
// matcher's own small errors would only add drift.
const DefaultMinSharpening = 0.07

// SubmapInfo says how BuildSubmap placed the scans.
type SubmapInfo struct {
	Poses            []slam.Pose2D // the pose each scan was inserted at
	FrontEnd         bool          // Poses are the front end's (else the sent ones)
	OccupiedSent     int           // occupied cells of the submap at the sent poses
	OccupiedFrontEnd int           // occupied cells of the front end's submap (0 with OdometryOnly)
}

// frontEndMaxCells bounds the front end's working grid: the submap limit
// plus the working grid's growth margin.
const frontEndMaxCells = 2 * MaxSubmapCells

// SubmapFromScans builds an agent's submap from its scans with the default
// SubmapOptions; see BuildSubmap.
func SubmapFromScans(frames []*typesv1.ScanFrame, res float64) (*grid.Grid, error) {
	g, _, err := BuildSubmap(frames, res, SubmapOptions{})
	return g, err
}

// BuildSubmap turns scans, each with its sent (odometry) pose in the agent's
// start frame, into a submap of resolution res in that frame, and says how
// it placed them.
//
// By default the poses are estimated by the local front end (localslam:
// incremental scan-to-submap matching with the sent poses as the prior;
// the first scan keeps its sent pose, so the agent frame is unchanged), and
// its submap is used when it is sharper than the one at the sent poses by
// MinSharpening; otherwise the sent poses stand. Each submap covers what the
// scans observed from their poses: returned beams, and no-return beams (at
// or beyond range_max, or +Inf) only up to the usable range; NaN beams add
// nothing. Errors are *FieldError with paths "scans" and "scans[k]...",
// wrapping slam.ErrInvalidArgument or slam.ErrTooLarge.
func BuildSubmap(frames []*typesv1.ScanFrame, res float64, opts SubmapOptions) (*grid.Grid, SubmapInfo, error) {
	var info SubmapInfo
	if len(frames) > MaxScansPerAgent {
		return nil, info, invalid("scans", "%d scans, limit %d", len(frames), MaxScansPerAgent)
	}
	if len(frames) == 0 {
		return nil, info, invalid("scans", "no scans")
	}
	sharpening := opts.MinSharpening
	if sharpening == 0 {
		sharpening = DefaultMinSharpening
	}
	if !(sharpening > 0 && sharpening < 1) {
		return nil, info, fmt.Errorf("%w: min sharpening %g outside (0, 1)", slam.ErrInvalidArgument, sharpening)
	}
	lf := make([]localslam.Frame, len(frames))
	sent := make([]slam.Pose2D, len(frames))
	for k, f := range frames {
		at := "scans[" + strconv.Itoa(k) + "]"
		if err := PoseField(at+".odom_pose", f.GetOdomPose()); err != nil {
			return nil, info, err
		}
		s, err := ScanFromProto(f.GetScan())
		if err != nil {
			return nil, info, &FieldError{Field: at + ".scan", Err: err}
		}
		sent[k] = PoseFromProto(f.GetOdomPose())
		lf[k] = localslam.Frame{Odom: sent[k], Scan: s}
	}
	in := grid.Inserter{UsableRange: opts.UsableRange}
	// The submap at the sent poses first: its size check refuses a request
	// spanning kilometres before the front end allocates anything.
	g, err := integrate(&in, lf, sent, res)
	if err != nil {
		return nil, info, err
	}
	info.Poses, info.OccupiedSent = sent, occupiedCells(g)
	if opts.OdometryOnly {
		return g, info, nil
	}
	fo := opts.FrontEnd
	fo.UsableRange = opts.UsableRange
	if fo.MaxCells == 0 {
		fo.MaxCells = frontEndMaxCells
	}
	results, err := localslam.Track(lf, fo)
	if err != nil {
		var fe *localslam.FrameError
		if errors.As(err, &fe) && !errors.Is(err, slam.ErrTooLarge) {
			return nil, info, &FieldError{Field: "scans[" + strconv.Itoa(fe.Index) + "]", Err: fe.Err}
		}
		return nil, info, &FieldError{Field: "scans", Err: err}
	}
	poses := make([]slam.Pose2D, len(results))
	for k, r := range results {
		poses[k] = r.Pose
	}
	gf, err := integrate(&in, lf, poses, res)
	if err != nil {
		return nil, info, err
	}
	info.OccupiedFrontEnd = occupiedCells(gf)
	if float64(info.OccupiedFrontEnd) > (1-sharpening)*float64(info.OccupiedSent) {
		return g, info, nil
	}
	info.Poses, info.FrontEnd = poses, true
	return gf, info, nil
}

// integrate builds the submap of frames at poses (see submapMeta).
func integrate(in *grid.Inserter, frames []localslam.Frame, poses []slam.Pose2D, res float64) (*grid.Grid, error) {
	meta, err := submapMeta(in, frames, poses, res)
	if err != nil {
		return nil, err
	}
	g, err := grid.New(meta)
	if err != nil {
		return nil, &FieldError{Field: "scans", Err: err}
	}
	for k := range frames {
		if _, err := in.Integrate(g, poses[k], frames[k].Scan); err != nil {
			return nil, &FieldError{Field: "scans[" + strconv.Itoa(k) + "]", Err: err}
		}
	}
	return g, nil
}

// occupiedCells counts the cells that lean occupied.
func occupiedCells(g *grid.Grid) int {
	o, _, _ := g.Counts()
	return o
}

// submapMeta returns the grid covering what the frames observe from poses
// (grid.Inserter.Observed) with a two-cell margin, its origin snapped to the
// resolution so cells align with the map's; beyond MaxSubmapCells it is a
// *FieldError at "scans" wrapping slam.ErrTooLarge.
func submapMeta(in *grid.Inserter, frames []localslam.Frame, poses []slam.Pose2D, res float64) (grid.Meta, error) {
	var b grid.Bounds
	for k, f := range frames {
		ob, err := in.Observed(poses[k], f.Scan)
		if err != nil {
			return grid.Meta{}, &FieldError{Field: "scans[" + strconv.Itoa(k) + "]", Err: err}
		}
		b.Union(ob)
	}
	pad := 2 * res
	ox, oy := math.Floor((b.MinX-pad)/res)*res, math.Floor((b.MinY-pad)/res)*res
	w, h := b.MaxX+pad-ox, b.MaxY+pad-oy
	if cells := math.Ceil(w/res) * math.Ceil(h/res); !(cells <= MaxSubmapCells) {
		return grid.Meta{}, &FieldError{Field: "scans", Err: &detail{sentinel: slam.ErrTooLarge, msg: fmt.Sprintf("scans span %.0fx%.0f m, %.0f cells at %g m, limit %d", w, h, cells, res, MaxSubmapCells)}}
	}
	meta, err := grid.MetaForBounds(ox, oy, w, h, res)
	if err != nil {
		return grid.Meta{}, &FieldError{Field: "scans", Err: err}
	}
	return meta, nil
}

// AgentData selects what WorldAgents puts in each agent message.
type AgentData int

// The choices of AgentData.
const (
	// Submaps sends each agent's integrated submap (compact, the default).
	Submaps AgentData = iota
	// Scans sends the raw scans with their odometry poses; the services
	// integrate them into submaps.
	Scans
)

// WorldAgentID is the agent_id of the i-th agent of a synthetic world.
func WorldAgentID(i int) string { return "agent-" + strconv.Itoa(i) }

// WorldAgents converts the agents of a synthetic world into request agents,
// with their initial guesses (never the ground truth, except for the anchor
// whose guess is exact by construction).
func WorldAgents(w *world.World, data AgentData) []*typesv1.Agent {
	out := make([]*typesv1.Agent, len(w.Agents))
	for i, a := range w.Agents {
		pa := &typesv1.Agent{
			AgentId:      WorldAgentID(a.Index),
			InitialGuess: PoseToProto(a.InitialGuess),
			Anchor:       a.Anchor,
		}
		if data == Scans {
			pa.Scans = make([]*typesv1.ScanFrame, len(a.Scans))
			for k, s := range a.Scans {
				pa.Scans[k] = &typesv1.ScanFrame{OdomPose: PoseToProto(a.Odometry[k]), Scan: ScanToProto(s)}
			}
		} else {
			pa.Submap = GridToProto(a.Submap)
		}
		out[i] = pa
	}
	return out
}
