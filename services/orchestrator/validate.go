package orchestrator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Request limits and defaults. They are part of the API (the proto comments
// name them): a request beyond them is INVALID_ARGUMENT, never a surprise
// deep inside a step service. Scenario defaults are the world generator's.
const (
	maxMissionIDLen       = 64
	maxAgents             = slamproto.MaxAgents
	defaultScenarioAgents = world.DefaultAgents
	defaultWorldWidthM    = world.DefaultWidthM
	defaultWorldHeightM   = world.DefaultHeightM
	maxWorldSideM         = 200
	defaultResolution     = 0.05
	maxCancelReasonLen    = 1024
)

// reasonFaultInjectionDisabled is the ErrorInfo reason of a fault plan sent to
// an orchestrator that does not allow fault injection (docs/architecture.md,
// "Errors"): a precondition of the deployment, not a bad field, hence
// FAILED_PRECONDITION.
const reasonFaultInjectionDisabled = "FAULT_INJECTION_DISABLED"

// stepNames are the saga's steps in order; fault plans and events name them.
var stepNames = [...]string{stepAllocateMap, stepLocalizeAgents, stepMergeMaps}

// normalizeStart validates a StartMission request and returns the mission's
// saga input: a copy with every default filled in and wait cleared (it is a
// property of the call, not of the mission), so that the record alone
// determines what every step does. The mission id is left as given; the
// caller generates one when it is empty.
func normalizeStart(req *orchestratorv1.StartMissionRequest, allowFaults bool) (*orchestratorv1.StartMissionRequest, error) {
	if id := req.GetMissionId(); id != "" {
		if err := checkMissionID("mission_id", id); err != nil {
			return nil, err
		}
	}
	hasScenario, hasAgents := req.GetScenario() != nil, len(req.GetAgents()) > 0
	switch {
	case hasScenario && hasAgents:
		return nil, rpcerr.InvalidArgument("scenario", "set either scenario or agents, not both")
	case !hasScenario && !hasAgents:
		return nil, rpcerr.InvalidArgument("scenario", "one of scenario or agents is required")
	}
	if req.GetFaults() != nil && len(req.GetFaults().GetFaults()) > 0 {
		if !allowFaults {
			return nil, rpcerr.New(codes.FailedPrecondition, reasonFaultInjectionDisabled,
				"faults: fault injection is disabled on this orchestrator (tests and demos start every service with --allow-fault-injection, or SLAMMESH_ALLOW_FAULT_INJECTION=true)", rpcerr.MetadataField, "faults")
		}
		if err := checkFaults(req.GetFaults()); err != nil {
			return nil, err
		}
	}

	out := proto.CloneOf(req)
	out.Wait = false
	if len(out.GetFaults().GetFaults()) == 0 {
		out.Faults = nil
	}
	normalizeFaults(out.GetFaults())
	if hasScenario {
		if err := normalizeScenario(out.GetScenario()); err != nil {
			return nil, err
		}
		if out.GetMap() == nil {
			out.Map = scenarioMapSpec(out.GetScenario())
		}
	} else {
		if out.GetMap() == nil {
			return nil, rpcerr.InvalidArgument("map", "required with agents")
		}
		if err := checkAgents(out.GetAgents()); err != nil {
			return nil, err
		}
		var fe *slamproto.FieldError
		if err := slamproto.CheckRequestTotals(out.GetAgents()); errors.As(err, &fe) {
			return nil, rpcerr.InvalidArgument(fe.Field, detail(fe.Err))
		}
	}
	if err := checkSearchWindow(out); err != nil {
		return nil, err
	}
	if err := checkMergeGates(out); err != nil {
		return nil, err
	}
	if err := normalizeMapSpec(out.GetMap()); err != nil {
		return nil, err
	}
	return out, nil
}

func normalizeScenario(s *typesv1.Scenario) error {
	switch {
	case s.GetAgents() > maxAgents:
		return rpcerr.InvalidArgument("scenario.agents", fmt.Sprintf("%d agents, at most %d", s.GetAgents(), maxAgents))
	case s.GetAgents() == 0:
		s.Agents = defaultScenarioAgents
	}
	for _, side := range []struct {
		field    string
		v        *float64
		def, min float64
	}{
		{"scenario.width_m", &s.WidthM, defaultWorldWidthM, world.MinWidthM},
		{"scenario.height_m", &s.HeightM, defaultWorldHeightM, world.MinHeightM},
	} {
		if err := checkFinite(side.field, *side.v); err != nil {
			return err
		}
		switch {
		case *side.v < 0:
			return rpcerr.InvalidArgument(side.field, "must not be negative")
		case *side.v > maxWorldSideM:
			return rpcerr.InvalidArgument(side.field, fmt.Sprintf("%g m, at most %d", *side.v, maxWorldSideM))
		case *side.v > 0 && *side.v < side.min:
			return rpcerr.InvalidArgument(side.field, fmt.Sprintf("%g m, at least %g (0: %g)", *side.v, side.min, side.def))
		case *side.v == 0:
			*side.v = side.def
		}
	}
	if _, ok := typesv1.ScenarioKind_name[int32(s.GetKind())]; !ok {
		return rpcerr.InvalidArgument("scenario.kind", fmt.Sprintf("unknown kind %d", s.GetKind()))
	}
	if s.GetKind() == typesv1.ScenarioKind_SCENARIO_KIND_UNSPECIFIED {
		s.Kind = typesv1.ScenarioKind_SCENARIO_KIND_OFFICE
	}
	// The generator has its own limits on combinations (a minimum building
	// size, two agents for the failure scenarios); ask it rather than copy them.
	if _, err := world.MapMeta(worldConfig(s)); err != nil {
		return rpcerr.InvalidArgument("scenario", detail(err))
	}
	return nil
}

// scenarioMapSpec is the default map of a scenario mission: the world's own
// grid (origin at the building's lower-left corner, the generator's
// resolution), so the merged map lines up cell for cell with the ground
// truth.
func scenarioMapSpec(s *typesv1.Scenario) *typesv1.MapSpec {
	return &typesv1.MapSpec{WidthM: s.GetWidthM(), HeightM: s.GetHeightM(), Resolution: world.DefaultResolution}
}

func normalizeMapSpec(m *typesv1.MapSpec) error {
	for _, f := range []struct {
		field string
		v     float64
	}{
		{"map.origin_x", m.GetOriginX()},
		{"map.origin_y", m.GetOriginY()},
		{"map.width_m", m.GetWidthM()},
		{"map.height_m", m.GetHeightM()},
		{"map.resolution", m.GetResolution()},
	} {
		if err := checkFinite(f.field, f.v); err != nil {
			return err
		}
	}
	switch {
	case math.Abs(m.GetOriginX()) > slam.MaxCoordinate:
		return rpcerr.InvalidArgument("map.origin_x", fmt.Sprintf("beyond ±%g m", slam.MaxCoordinate))
	case math.Abs(m.GetOriginY()) > slam.MaxCoordinate:
		return rpcerr.InvalidArgument("map.origin_y", fmt.Sprintf("beyond ±%g m", slam.MaxCoordinate))
	case m.GetWidthM() <= 0:
		return rpcerr.InvalidArgument("map.width_m", "must be positive")
	case m.GetHeightM() <= 0:
		return rpcerr.InvalidArgument("map.height_m", "must be positive")
	case m.GetResolution() < 0:
		return rpcerr.InvalidArgument("map.resolution", "must not be negative")
	case m.GetResolution() == 0:
		m.Resolution = defaultResolution
	}
	switch _, err := grid.MetaForBounds(m.GetOriginX(), m.GetOriginY(), m.GetWidthM(), m.GetHeightM(), m.GetResolution()); {
	case errors.Is(err, slam.ErrTooLarge):
		return rpcerr.InvalidArgument("map", detail(err)+"; "+grid.FewerCells)
	case err != nil:
		return rpcerr.InvalidArgument("map", detail(err))
	}
	return nil
}

func checkAgents(agents []*typesv1.Agent) error {
	if len(agents) > maxAgents {
		return rpcerr.InvalidArgument("agents", fmt.Sprintf("%d agents, at most %d", len(agents), maxAgents))
	}
	seen := make(map[string]int, len(agents))
	anchors := 0
	for i, a := range agents {
		field := "agents[" + strconv.Itoa(i) + "]"
		if err := slamproto.CheckAgentID(a.GetAgentId()); err != nil {
			return rpcerr.InvalidArgument(field+".agent_id", err.Error())
		}
		if j, dup := seen[a.GetAgentId()]; dup {
			return rpcerr.InvalidArgument(field+".agent_id", fmt.Sprintf("duplicate of agents[%d]", j))
		}
		seen[a.GetAgentId()] = i
		// A non-anchor agent may come without a guess: localization then
		// searches the whole map. The anchor's guess defines the map frame.
		switch {
		case a.GetInitialGuess() != nil:
			if err := checkPose(field+".initial_guess", a.GetInitialGuess()); err != nil {
				return err
			}
		case a.GetAnchor():
			return rpcerr.InvalidArgument(field+".initial_guess", "required for the anchor: it defines the map frame")
		}
		if a.GetAnchor() {
			anchors++
		}
		switch {
		case a.GetSubmap() != nil && len(a.GetScans()) > 0:
			return rpcerr.InvalidArgument(field+".submap", "set either submap or scans, not both")
		case a.GetSubmap() != nil:
			if err := checkGrid(field+".submap", a.GetSubmap()); err != nil {
				return err
			}
		case len(a.GetScans()) > 0:
			if err := checkScans(field+".scans", a.GetScans()); err != nil {
				return err
			}
		default:
			return rpcerr.InvalidArgument(field+".submap", "either submap or scans is required")
		}
	}
	if anchors != 1 {
		return rpcerr.InvalidArgument("agents", fmt.Sprintf("exactly one agent must be the anchor, got %d", anchors))
	}
	return nil
}

// checkSearchWindow validates the request-level search window; 0 keeps the
// localization service's defaults. The limits are the service's own
// (match.MaxWindowXY, match.MaxWindowTheta), so a window the orchestrator
// accepts is never refused by the step.
func checkSearchWindow(req *orchestratorv1.StartMissionRequest) error {
	if err := checkUpTo("search_window_m", req.GetSearchWindowM(), match.MaxWindowXY, " m"); err != nil {
		return err
	}
	return checkUpTo("search_window_rad", req.GetSearchWindowRad(), match.MaxWindowTheta, " rad")
}

// checkMergeGates validates the request-level gates, the merge's and
// localization's verification; 0 keeps the services' defaults.
func checkMergeGates(req *orchestratorv1.StartMissionRequest) error {
	if err := checkUpTo("max_changed_share", req.GetMaxChangedShare(), 1, ""); err != nil {
		return err
	}
	if err := checkUpTo("max_free_conflict", req.GetMaxFreeConflict(), 1, ""); err != nil {
		return err
	}
	return checkUpTo("min_consistency", req.GetMinConsistency(), 1, "")
}

// checkUpTo refuses a v of field that is not a finite number in
// [0, limit] (0 meaning the default), naming the field and unit.
func checkUpTo(field string, v, limit float64, unit string) error {
	if err := checkFinite(field, v); err != nil {
		return err
	}
	if v < 0 || v > limit {
		return rpcerr.InvalidArgument(field, fmt.Sprintf("%g%s must be in [0, %g] (0: the default)", v, unit, limit))
	}
	return nil
}

func checkGrid(field string, g *typesv1.OccupancyGrid) error {
	m := g.GetMeta()
	if m == nil {
		return rpcerr.InvalidArgument(field+".meta", "required")
	}
	if err := checkFinite(field+".meta.resolution", m.GetResolution()); err != nil {
		return err
	}
	if m.GetResolution() <= 0 {
		return rpcerr.InvalidArgument(field+".meta.resolution", "must be positive")
	}
	if m.GetWidth() == 0 || m.GetHeight() == 0 {
		return rpcerr.InvalidArgument(field+".meta", "width and height must be positive")
	}
	if err := checkPose(field+".meta.origin", m.GetOrigin()); err != nil {
		return err
	}
	meta := grid.Meta{
		Resolution: m.GetResolution(),
		Width:      int(m.GetWidth()),
		Height:     int(m.GetHeight()),
		Origin:     slam.Pose2D{X: m.GetOrigin().GetX(), Y: m.GetOrigin().GetY(), Theta: m.GetOrigin().GetTheta()},
	}
	if err := meta.Validate(); err != nil {
		return rpcerr.InvalidArgument(field+".meta", detail(err))
	}
	if meta.Cells() > slamproto.MaxSubmapCells {
		return rpcerr.InvalidArgument(field+".meta", fmt.Sprintf("%d cells, at most %d", meta.Cells(), slamproto.MaxSubmapCells))
	}
	if int64(len(g.GetData())) != meta.Cells() {
		return rpcerr.InvalidArgument(field+".data", fmt.Sprintf("%d cells, meta says %d", len(g.GetData()), meta.Cells()))
	}
	for i, b := range g.GetData() {
		if v := int8(b); v < -1 || v > 100 {
			return rpcerr.InvalidArgument(field+".data", fmt.Sprintf("cell %d is %d, want -1 or 0..100", i, v))
		}
	}
	return nil
}

func checkScans(field string, frames []*typesv1.ScanFrame) error {
	if len(frames) > slamproto.MaxScansPerAgent {
		return rpcerr.InvalidArgument(field, fmt.Sprintf("%d frames, at most %d", len(frames), slamproto.MaxScansPerAgent))
	}
	for i, f := range frames {
		ff := field + "[" + strconv.Itoa(i) + "]"
		if f.GetOdomPose() == nil {
			return rpcerr.InvalidArgument(ff+".odom_pose", "required")
		}
		if err := checkPose(ff+".odom_pose", f.GetOdomPose()); err != nil {
			return err
		}
		s := f.GetScan()
		if s == nil {
			return rpcerr.InvalidArgument(ff+".scan", "required")
		}
		scan := slam.LaserScan{
			AngleMin:       float64(s.GetAngleMin()),
			AngleIncrement: float64(s.GetAngleIncrement()),
			RangeMin:       float64(s.GetRangeMin()),
			RangeMax:       float64(s.GetRangeMax()),
			Ranges:         s.GetRanges(),
		}
		if err := scan.Validate(); err != nil {
			return rpcerr.InvalidArgument(ff+".scan", detail(err))
		}
	}
	return nil
}

// checkPose applies the step services' own pose rule (slamproto.PoseField),
// so that a pose the orchestrator accepts is never refused by a step.
func checkPose(field string, p *typesv1.Pose2D) error {
	var fe *slamproto.FieldError
	if err := slamproto.PoseField(field, p); errors.As(err, &fe) {
		return rpcerr.InvalidArgument(fe.Field, detail(fe.Err))
	}
	return nil
}

// normalizeFaults writes a fault plan as the step services read it, so
// that two plans meaning the same are equal (a repeated StartMission is
// compared with the stored one): times 0 is 1, a business error's times
// is moot (it fails every attempt), and the order of the faults, which
// find by step, says nothing.
func normalizeFaults(plan *typesv1.FaultPlan) {
	for _, f := range plan.GetFaults() {
		switch {
		case f.GetKind() == typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR:
			f.Times = 0
		case f.GetTimes() == 0:
			f.Times = 1
		}
	}
	slices.SortFunc(plan.GetFaults(), func(a, b *typesv1.Fault) int {
		if c := strings.Compare(a.GetStep(), b.GetStep()); c != 0 {
			return c
		}
		switch {
		case a.GetCompensation() == b.GetCompensation():
			return 0
		case b.GetCompensation():
			return -1
		}
		return 1
	})
}

func checkFaults(plan *typesv1.FaultPlan) error {
	type slot struct {
		step string
		comp bool
	}
	seen := make(map[slot]bool, len(plan.GetFaults()))
	for i, f := range plan.GetFaults() {
		field := "faults.faults[" + strconv.Itoa(i) + "]"
		if !isStep(f.GetStep()) {
			return rpcerr.InvalidArgument(field+".step", fmt.Sprintf("unknown step %q", f.GetStep()))
		}
		if _, ok := typesv1.FaultKind_name[int32(f.GetKind())]; !ok || f.GetKind() == typesv1.FaultKind_FAULT_KIND_UNSPECIFIED {
			return rpcerr.InvalidArgument(field+".kind", fmt.Sprintf("unknown kind %d", f.GetKind()))
		}
		k := slot{f.GetStep(), f.GetCompensation()}
		if seen[k] {
			return rpcerr.InvalidArgument(field, "at most one fault per step and compensation")
		}
		seen[k] = true
	}
	return nil
}

func isStep(name string) bool { return slices.Contains(stepNames[:], name) }

// detail is err's message for a user: slam.Detail's, without the domain's
// package prefixes ("slam: ", "world: "), which name Go packages, not what
// is wrong with the field.
func detail(err error) string {
	msg := strings.TrimPrefix(slam.Detail(err), "world: ")
	return strings.TrimPrefix(msg, "slam: ")
}

func checkFinite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return rpcerr.InvalidArgument(field, "must be a finite number")
	}
	return nil
}

// checkMissionID validates a mission id. It is rpcerr.CheckID — the rule the
// step services apply to the mission id of a SagaContext, since it becomes
// the hash tag of every Redis key of the mission — made stricter on purpose:
// the orchestrator's API documents mission ids as [A-Za-z0-9_.-], at most
// 64 characters (orchestrator.proto), and clients rely on that narrower
// contract, while the services accept up to 128 characters and ':'. Every
// id the orchestrator accepts thus passes the services' check.
func checkMissionID(field, id string) error {
	if id == "" {
		return rpcerr.CheckID(field, id)
	}
	if len(id) > maxMissionIDLen {
		return rpcerr.InvalidArgument(field, fmt.Sprintf("%d characters, at most %d", len(id), maxMissionIDLen))
	}
	for i, r := range id {
		if r >= 0x80 || !validIDByte(byte(r)) {
			return rpcerr.InvalidArgument(field, fmt.Sprintf("character %q at byte %d; allowed: A-Z a-z 0-9 _ . -", r, i))
		}
	}
	return nil
}

// checkNewMissionID is checkMissionID for the id of a mission to create,
// which also may not be dots alone: a path segment of its own, which the
// console's /missions/<id> would read as the missions' page or the root.
// Only new ids are refused (StartMission asks it only when no mission has
// the id): a mission an earlier release created under such an id can still
// be started again, read, deleted and resumed.
func checkNewMissionID(field, id string) error {
	if err := checkMissionID(field, id); err != nil {
		return err
	}
	if dotsAlone(id) {
		return rpcerr.InvalidArgument(field, fmt.Sprintf("%q: not dots alone", id))
	}
	return nil
}

// dotsAlone reports whether id is made of dots alone.
func dotsAlone(id string) bool { return strings.Trim(id, ".") == "" }

// validIDByte reports whether c may appear in a mission id of the
// orchestrator's API ([A-Za-z0-9_.-]).
func validIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}
