package slamio

import (
	"errors"
	"fmt"
	"math"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// DefaultMapMargin is the margin MapFor adds around what the agents saw, in
// metres: room for guesses that are off by the localization's default
// window (±1 m) plus a wall's thickness.
const DefaultMapMargin = 2.0

// MapFor returns a mission map that holds every agent's observations placed
// at its initial guess (the anchor's places them exactly), grown by margin
// metres on every side and snapped outward to whole cells of resolution.
// Observations are scan endpoints within [range_min, range_max) and the
// known (not −1) cells of submaps. An agent without a guess must overlap
// the others to localize at all, so its observations lie within its own
// extent (the diagonal of their bounding box in its frame) of the guessed
// agents' observations: the map grows by that much on every side. It fails
// when no agent with a guess observed anything, and names a resolution or
// margin that is not a finite number in its range.
func MapFor(agents []*typesv1.Agent, resolution, margin float64) (*typesv1.MapSpec, error) {
	switch {
	case !(resolution > 0):
		return nil, fmt.Errorf("map resolution %g m: want more than 0", resolution)
	case math.IsInf(resolution, 1):
		return nil, fmt.Errorf("map resolution %g m: want a finite number", resolution)
	case !(margin >= 0):
		return nil, fmt.Errorf("map margin %g m: want 0 or more", margin)
	case math.IsInf(margin, 1):
		return nil, fmt.Errorf("map margin %g m: want a finite number", margin)
	}
	placed := emptyBounds()
	grow := 0.0
	for _, a := range agents {
		b, guess := &placed, slamproto.PoseFromProto(a.GetInitialGuess())
		own := emptyBounds()
		if a.GetInitialGuess() == nil {
			b, guess = &own, slam.Pose2D{}
		}
		if sm := a.GetSubmap(); sm != nil {
			b.addSubmap(guess, sm)
		}
		for _, f := range a.GetScans() {
			b.addScan(guess.Compose(slamproto.PoseFromProto(f.GetOdomPose())), f.GetScan())
		}
		if own.minX <= own.maxX {
			grow = math.Max(grow, math.Hypot(own.maxX-own.minX, own.maxY-own.minY))
		}
	}
	if placed.minX > placed.maxX {
		return nil, errors.New("no agent with an initial guess observed anything: no scan endpoint within its range limits, no known submap cell")
	}
	margin += grow
	snapDown := func(v float64) float64 { return math.Floor(v/resolution+1e-9) * resolution }
	snapUp := func(v float64) float64 { return math.Ceil(v/resolution-1e-9) * resolution }
	x0, y0 := snapDown(placed.minX-margin), snapDown(placed.minY-margin)
	x1, y1 := snapUp(placed.maxX+margin), snapUp(placed.maxY+margin)
	round := func(v float64) float64 { return math.Round(v*1e9) / 1e9 } // no 0.30000000000000004 in the JSON
	return &typesv1.MapSpec{OriginX: round(x0), OriginY: round(y0), WidthM: round(x1 - x0), HeightM: round(y1 - y0), Resolution: resolution}, nil
}

func emptyBounds() bounds {
	return bounds{minX: math.Inf(1), minY: math.Inf(1), maxX: math.Inf(-1), maxY: math.Inf(-1)}
}

type bounds struct{ minX, minY, maxX, maxY float64 }

func (b *bounds) add(x, y float64) {
	b.minX, b.maxX = math.Min(b.minX, x), math.Max(b.maxX, x)
	b.minY, b.maxY = math.Min(b.minY, y), math.Max(b.maxY, y)
}

func (b *bounds) addScan(sensor slam.Pose2D, s *typesv1.LaserScan) {
	for i, r := range s.GetRanges() {
		if !(r >= s.GetRangeMin() && r < s.GetRangeMax()) { // also drops NaN
			continue
		}
		a := float64(s.GetAngleMin()) + float64(i)*float64(s.GetAngleIncrement())
		sn, cs := math.Sincos(a)
		b.add(sensor.Apply(float64(r)*cs, float64(r)*sn))
	}
}

// addSubmap adds the corners of every known cell's row span: the extreme
// known cells of each row bound the row.
func (b *bounds) addSubmap(guess slam.Pose2D, g *typesv1.OccupancyGrid) {
	m := g.GetMeta()
	w, h, res := int(m.GetWidth()), int(m.GetHeight()), m.GetResolution()
	data := g.GetData()
	if len(data) != w*h {
		return // the service reports the malformed grid; bounds need not
	}
	ox, oy := m.GetOrigin().GetX(), m.GetOrigin().GetY()
	for y := 0; y < h; y++ {
		row := data[y*w : (y+1)*w]
		first, last := -1, -1
		for x, c := range row {
			if int8(c) != -1 {
				if first < 0 {
					first = x
				}
				last = x
			}
		}
		if first < 0 {
			continue
		}
		for _, cx := range []int{first, last + 1} {
			for _, cy := range []int{y, y + 1} {
				b.add(guess.Apply(ox+float64(cx)*res, oy+float64(cy)*res))
			}
		}
	}
}

// Request assembles a StartMissionRequest from imported agents: guesses
// (map_from_agent, by agent id) replace or add initial guesses, the anchor
// keeps its own, and map is computed by MapFor when nil. An unknown id in
// guesses is an error, and so is what the service would refuse by size: a
// submap beyond slamproto.MaxSubmapCells (naming the agent) or a request
// beyond slamproto.CheckRequestTotals.
func Request(missionID string, agents []*typesv1.Agent, guesses map[string]slam.Pose2D, mapSpec *typesv1.MapSpec, resolution, margin float64) (*orchestratorv1.StartMissionRequest, error) {
	byID := map[string]*typesv1.Agent{}
	for _, a := range agents {
		byID[a.GetAgentId()] = a
		// The service's limits, checked before a request of tens of MB
		// meets gRPC's message limit instead and fails without naming the
		// agent.
		if m := a.GetSubmap().GetMeta(); uint64(m.GetWidth())*uint64(m.GetHeight()) > slamproto.MaxSubmapCells {
			return nil, fmt.Errorf("agent %q: submap of %dx%d cells, more than the %d an agent may send: save the map at a coarser resolution, or split it between agents", a.GetAgentId(), m.GetWidth(), m.GetHeight(), slamproto.MaxSubmapCells)
		}
	}
	if err := slamproto.CheckRequestTotals(agents); err != nil {
		return nil, err
	}
	for id, g := range guesses {
		a, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("guess for agent %q: no such agent (agents: %s)", id, agentList(agents))
		}
		if err := g.Validate(); err != nil {
			return nil, fmt.Errorf("guess for agent %q: %w", id, err)
		}
		a.InitialGuess = slamproto.PoseToProto(g)
	}
	if mapSpec == nil {
		var err error
		if mapSpec, err = MapFor(agents, resolution, margin); err != nil {
			return nil, err
		}
	}
	return &orchestratorv1.StartMissionRequest{MissionId: missionID, Agents: agents, Map: mapSpec}, nil
}

func agentList(agents []*typesv1.Agent) string {
	s := ""
	for i, a := range agents {
		if i > 0 {
			s += ", "
		}
		s += a.GetAgentId()
	}
	return s
}
