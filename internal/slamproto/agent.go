package slamproto

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
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
	// MaxRequestBytes bounds one gRPC message, received or sent, on every
	// slammesh server and client: a larger one fails with
	// RESOURCE_EXHAUSTED naming both sizes. A merged map with its PNG
	// exceeds gRPC's 4 MiB default; the real-data missions are 2 MB.
	MaxRequestBytes = 16 << 20
	// MaxRequestCells bounds the given submap cells of all agents of one
	// request together: 8 Mi cells, two full-size submaps or 16 agents of
	// 700x700 cells, half of what MaxRequestBytes could carry.
	MaxRequestCells = 1 << 23
	// MaxRequestBeams bounds the beams of all scans of one request
	// together: 2 Mi beams (8 MiB of ranges), e.g. 5,800 scans of 360
	// beams; the real-data missions use a tenth of it.
	MaxRequestBeams = 1 << 21
)

// CheckRequestTotals enforces MaxRequestCells and MaxRequestBeams over the
// agents of one request; the error is a *FieldError at "agents" naming the
// limit.
func CheckRequestTotals(agents []*typesv1.Agent) error {
	var cells, beams uint64
	for _, a := range agents {
		m := a.GetSubmap().GetMeta()
		cells += uint64(m.GetWidth()) * uint64(m.GetHeight())
		for _, f := range a.GetScans() {
			beams += uint64(len(f.GetScan().GetRanges()))
		}
	}
	switch {
	case cells > MaxRequestCells:
		return invalid("agents", "%d submap cells in the request, limit %d", cells, MaxRequestCells)
	case beams > MaxRequestBeams:
		return invalid("agents", "%d scan beams in the request, limit %d", beams, MaxRequestBeams)
	}
	return nil
}

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
	// Scans are the scans the submap was integrated from, each at the
	// pose it was inserted at (agent frame), with grid.DefaultUsableRange;
	// nil for a submap sent as cells. The merge's see-through test reads
	// them (fuse.Input).
	Scans  []slam.PosedScan
	Guess  slam.Pose2D
	Anchor bool
}

// AgentFromProto validates and converts an agent. Exactly one of submap and
// scans must be set; scans become a submap of resolution res (the mission
// map's) through BuildSubmap with its default options: placed by the local
// front end (or at their sent poses when those are as sharp), sized to what
// they observed, and kept with the poses they were inserted at (Scans).
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
		var info SubmapInfo
		out.Submap, info, err = BuildSubmap(a.GetScans(), res, SubmapOptions{})
		if err != nil {
			return Agent{}, err
		}
		out.Scans = make([]slam.PosedScan, len(info.Scans))
		for k, sc := range info.Scans {
			out.Scans[k] = slam.PosedScan{Pose: info.Poses[k], Scan: sc}
		}
	default:
		return Agent{}, invalid("submap", "one of submap or scans is required")
	}
	return out, nil
}

// AgentsFromProto converts the agents of a request (see AgentFromProto):
// 1..MaxAgents of them with unique ids. Errors are *FieldError with paths
// relative to the request ("agents", "agents[2].submap.meta.resolution");
// of several, the one of the lowest agent index is reported, as a
// sequential conversion would. Agents are converted concurrently (at most
// GOMAXPROCS at a time): building a submap from scans runs the local front
// end, which is the bulk of the cost.
func AgentsFromProto(agents []*typesv1.Agent, res float64) ([]Agent, error) {
	if len(agents) == 0 || len(agents) > MaxAgents {
		return nil, invalid("agents", "%d agents, want 1..%d", len(agents), MaxAgents)
	}
	if err := CheckRequestTotals(agents); err != nil {
		return nil, err
	}
	// The first repeated id ends the list that is converted: a sequential
	// conversion would have stopped there.
	n, dupErr := len(agents), error(nil)
	seen := make(map[string]int, len(agents))
	for i, pa := range agents {
		if j, dup := seen[pa.GetAgentId()]; dup {
			n = i
			dupErr = invalid("agents["+strconv.Itoa(i)+"].agent_id", "%q repeats agents[%d]", pa.GetAgentId(), j)
			break
		}
		seen[pa.GetAgentId()] = i
	}
	out := make([]Agent, n)
	errs := make([]error, n)
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = AgentFromProto(agents[i], res)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fieldErr("agents["+strconv.Itoa(i)+"]", err)
		}
	}
	if dupErr != nil {
		return nil, dupErr
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
