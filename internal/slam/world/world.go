// Package world generates seeded synthetic worlds for slammesh: an office
// floor plan (rooms off a corridor, doors, asymmetric furniture) inside given
// bounds, its ground-truth occupancy grid, and up to 16 agents that each drive
// a short collision-free path with a simulated 360-beam lidar and a drifting
// odometry and build a submap in their own start frame.
//
// Everything is derived from Config.Seed through math/rand/v2's PCG, with a
// separate stream per concern (layout, placement, change, each agent's
// sensors), so that equal configs give equal worlds and changing the number
// of agents does not change the building. Scenario kinds (Kind) turn the same
// machinery into the failures the mission saga must handle.
package world

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// World is a generated scenario: ground truth plus what each agent measured.
// The map frame is the building's frame, with its lower-left corner at the
// origin of Truth.
type World struct {
	Config Config     // the config with defaults filled in
	Truth  *grid.Grid // ground-truth occupancy of the map frame (saturated: ±Clamp)
	Shapes []Rect     // the floor plan Truth was rasterised from
	// ChangedShapes is the floor plan the changed agent saw (ChangedWorld
	// only): doors closed, furniture moved.
	ChangedShapes []Rect
	Agents        []Agent
}

// Agent is one robot's contribution to a mission.
type Agent struct {
	Index int
	// Anchor marks the agent whose pose is known (it started at a surveyed
	// dock): InitialGuess equals Truth and it defines the map frame for the
	// others. Agent 0 is the anchor.
	Anchor bool
	// Sealed and Changed mark the agents a scenario kind made fail.
	Sealed, Changed bool
	// Truth is the ground-truth map_from_agent: the agent's start pose in the
	// map frame, which is also the frame of its submap.
	Truth slam.Pose2D
	// InitialGuess is what localization starts from: Truth for the anchor,
	// otherwise Truth perturbed by up to ±0.5 m per axis and ±10°.
	InitialGuess slam.Pose2D
	// Submap is the agent's map in its own start frame, integrated from Scans
	// at the Odometry poses (so it carries the odometry drift).
	Submap *grid.Grid
	// Scans are the raw lidar sweeps; Odometry[k] and Path[k] are the
	// measured and true agent_from_robot poses of Scans[k].
	Scans    []slam.LaserScan
	Odometry []slam.Pose2D
	Path     []slam.Pose2D
	// ViewOverlap is the fraction of the distinct cells the agent's drive
	// hit that earlier agents hit too: the generator's evidence that it can
	// be localized (0 for the anchor and a sealed agent).
	ViewOverlap float64
}

// RNG stream identifiers: one PCG stream per concern keeps the concerns
// independent of each other's draw counts.
const (
	streamLayout    = 1
	streamPlacement = 2
	streamGuess     = 3
	streamChange    = 4
	streamAgent     = 100
)

func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^stream))
}

// Generate builds the world described by cfg. Invalid configs are errors
// wrapping slam.ErrInvalidArgument (or slam.ErrTooLarge), never panics.
func Generate(cfg Config) (*World, error) {
	p, err := start(cfg, true)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// StartAgents generates the agents of the world cfg describes, without its
// truth raster (World.Truth stays nil), for a caller that needs only what
// the agents measured. It returns once every agent has driven, when
// everything but the submaps is final and every check that can refuse cfg
// has passed, with Generate's errors; the submaps are integrated in the
// background, and Pending.Wait returns the world once they are. The world is
// Generate's, Truth aside.
func StartAgents(cfg Config) (*Pending, error) { return start(cfg, false) }

// Pending is a world whose agents have driven while their submaps (and the
// truth raster, for Generate) are still being built.
type Pending struct {
	done  chan struct{}
	world *World
	err   error
}

// Done is closed once the world is built; Wait does not block after that.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait blocks until the world is built and returns it; any number of
// goroutines may call it, any number of times. Its error is a submap that
// could not be integrated, which a config StartAgents accepted does not
// cause: the sizes were checked before it returned.
func (p *Pending) Wait() (*World, error) {
	<-p.done
	return p.world, p.err
}

// start drives the agents of cfg one by one and builds each submap (and the
// truth raster, with truth) in the background while the next agents drive:
// an agent's submap depends only on its own odometry and scans, while its
// drive depends on what the earlier agents saw. Nothing on the sequential
// path reads the truth raster.
func start(cfg Config, truth bool) (*Pending, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	meta, err := grid.MetaForBounds(0, 0, cfg.WidthM, cfg.HeightM, cfg.Resolution)
	if err != nil {
		return nil, err
	}
	layout := newRand(cfg.Seed, streamLayout)
	var p *plan
	switch cfg.Kind {
	case SymmetricCorridor:
		p = corridorPlan(layout, cfg.WidthM, cfg.HeightM)
	default:
		p = officePlan(layout, cfg.WidthM, cfg.HeightM, cfg.Kind == SealedAgent)
	}
	if cfg.Kind == SealedAgent && p.sealed < 0 {
		return nil, fmt.Errorf("%w: world %gx%g m too small for a sealed room", slam.ErrInvalidArgument, cfg.WidthM, cfg.HeightM)
	}
	w := &World{Config: cfg, Shapes: p.shapes()}
	var build sync.WaitGroup
	var truthErr error
	if truth {
		build.Go(func() { w.Truth, truthErr = rasterise(meta, w.Shapes) })
	}
	g := &generator{
		cfg:   cfg,
		plan:  p,
		scene: newScene(w.Shapes, cfg.WidthM, cfg.HeightM),
		meta:  meta,
		seen:  make([]bool, meta.Cells()),
		place: newRand(cfg.Seed, streamPlacement),
	}
	if cfg.Kind == ChangedWorld {
		cp := p.changed(newRand(cfg.Seed, streamChange))
		w.ChangedShapes = cp.shapes()
		g.changed = newScene(w.ChangedShapes, cfg.WidthM, cfg.HeightM)
	}
	guess := newRand(cfg.Seed, streamGuess)
	submaps := make([]*grid.Grid, cfg.Agents)
	errs := make([]error, cfg.Agents)
	for i := range cfg.Agents {
		a, err := g.agent(i)
		if err == nil {
			err = checkSubmapSize(cfg.Resolution, a.Odometry, a.Scans)
		}
		if err != nil {
			build.Wait()
			return nil, err
		}
		build.Go(func() { submaps[i], errs[i] = buildSubmap(cfg.Resolution, a.Odometry, a.Scans) })
		a.InitialGuess = a.Truth
		if !a.Anchor {
			a.InitialGuess = slam.Pose2D{
				X:     a.Truth.X + uniform(guess, -0.5, 0.5),
				Y:     a.Truth.Y + uniform(guess, -0.5, 0.5),
				Theta: slam.NormalizeAngle(a.Truth.Theta + uniform(guess, -1, 1)*10*math.Pi/180),
			}
		}
		w.Agents = append(w.Agents, a)
	}
	pending := &Pending{done: make(chan struct{})}
	go func() {
		defer close(pending.done)
		build.Wait()
		if err := errors.Join(append(errs, truthErr)...); err != nil {
			pending.err = err
			return
		}
		for i := range w.Agents {
			w.Agents[i].Submap = submaps[i]
		}
		pending.world = w
	}()
	return pending, nil
}

// rasterise draws shapes into a saturated truth grid: a cell is occupied when
// its centre lies inside a shape, free otherwise.
func rasterise(meta grid.Meta, shapes []Rect) (*grid.Grid, error) {
	g, err := grid.New(meta)
	if err != nil {
		return nil, err
	}
	cells := g.LogOdds()
	for i := range cells {
		cells[i] = -grid.Clamp
	}
	res := meta.Resolution
	for _, r := range shapes {
		x0, y0, x1, y1 := r.bounds()
		cx0 := max(int(math.Floor((x0-meta.Origin.X)/res)), 0)
		cy0 := max(int(math.Floor((y0-meta.Origin.Y)/res)), 0)
		cx1 := min(int(math.Ceil((x1-meta.Origin.X)/res)), meta.Width-1)
		cy1 := min(int(math.Ceil((y1-meta.Origin.Y)/res)), meta.Height-1)
		for cy := cy0; cy <= cy1; cy++ {
			for cx := cx0; cx <= cx1; cx++ {
				x, y := meta.Center(cx, cy)
				if r.Contains(x, y) {
					cells[cy*meta.Width+cx] = grid.Clamp
				}
			}
		}
	}
	return g, nil
}

// beamDir is the direction of one beam, its sine and cosine: in the map
// frame (the pose's heading plus the beam's angle) for a drive's checks,
// in the sensor frame in lidarBeams.
type beamDir struct{ s, c float64 }

// lidarBeams are the simulated lidar's beam directions in the sensor frame
// (AngleMin -π, LidarBeams of them over the full turn), for simulateScan.
var lidarBeams = func() (dirs [LidarBeams]beamDir) {
	scan := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: 2 * math.Pi / LidarBeams}
	for b := range dirs {
		dirs[b].s, dirs[b].c = math.Sincos(scan.BeamAngle(b))
	}
	return dirs
}()

// simulateScan casts the lidar's beams from pose against sc, adding Gaussian
// range noise and random dropouts (NaN), and reporting no return as +Inf.
// It writes the beams' directions to dirs (LidarBeams of them): the checks
// of a drive (overlap, seesSealed, markSeen) need the very same values, and
// computing each once spares a math.Sincos per beam and check. A beam's
// direction in the world is its sensor-frame direction (lidarBeams) turned
// by the pose's heading, one Sincos per scan instead of one per beam.
func simulateScan(sc *scene, pose slam.Pose2D, r *rand.Rand, noise, dropout float64, dirs []beamDir) slam.LaserScan {
	scan := slam.LaserScan{
		AngleMin:       -math.Pi,
		AngleIncrement: 2 * math.Pi / LidarBeams,
		RangeMin:       LidarRangeMin,
		RangeMax:       LidarRange,
		Ranges:         make([]float32, LidarBeams),
	}
	ps, pc := math.Sincos(pose.Theta)
	for b := range LidarBeams {
		in := lidarBeams[b]
		s, c := ps*in.c+pc*in.s, pc*in.c-ps*in.s
		dirs[b] = beamDir{s: s, c: c}
		d := sc.raycast(pose.X, pose.Y, c, s, LidarRange)
		n := r.NormFloat64()
		drop := r.Float64() < dropout
		switch {
		case drop:
			scan.Ranges[b] = float32(math.NaN())
		case math.IsInf(d, 1):
			scan.Ranges[b] = float32(math.Inf(1))
		default:
			scan.Ranges[b] = float32(max(d+n*noise, LidarRangeMin))
		}
	}
	return scan
}

// checkSubmapSize refuses a drive whose submap buildSubmap would refuse as
// too large, so that StartAgents can leave the integration to the
// background. Every beam ends within RangeMax of its odometry pose, so the
// odometry's bounds padded by the range bound the submap's, and only a drive
// past that bound (a long path at a fine resolution) is measured exactly.
func checkSubmapSize(res float64, odom []slam.Pose2D, scans []slam.LaserScan) error {
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	reach := 0.0
	for k, p := range odom {
		x0, y0 = min(x0, p.X), min(y0, p.Y)
		x1, y1 = max(x1, p.X), max(y1, p.Y)
		reach = max(reach, scans[k].RangeMax)
	}
	pad := reach + 3*res // submapMeta's pad, and a cell for its floored origin
	if _, err := grid.MetaForBounds(x0-pad, y0-pad, x1-x0+2*pad, y1-y0+2*pad, res); err == nil {
		return nil
	}
	_, err := submapMeta(res, odom, scans)
	return err
}

// submapMeta returns the geometry of the submap of the scans at the
// odometry poses: what the scans reach, padded by two cells, with the
// origin on the resolution's lattice.
func submapMeta(res float64, odom []slam.Pose2D, scans []slam.LaserScan) (grid.Meta, error) {
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	grow := func(x, y float64) {
		x0, y0 = min(x0, x), min(y0, y)
		x1, y1 = max(x1, x), max(y1, y)
	}
	var beams grid.Beams // one Sincos per beam, and one per pose to turn them
	for k, p := range odom {
		grow(p.X, p.Y)
		sc := scans[k]
		cos, sin := beams.For(sc)
		ps, pc := math.Sincos(p.Theta)
		for b, r := range sc.Ranges {
			rr := float64(r)
			if math.IsNaN(rr) || rr < sc.RangeMin {
				continue
			}
			rr = min(rr, sc.RangeMax)
			s, c := ps*cos[b]+pc*sin[b], pc*cos[b]-ps*sin[b]
			grow(p.X+rr*c, p.Y+rr*s)
		}
	}
	pad := 2 * res
	ox := math.Floor((x0-pad)/res) * res
	oy := math.Floor((y0-pad)/res) * res
	return grid.MetaForBounds(ox, oy, x1+pad-ox, y1+pad-oy, res)
}

// buildSubmap integrates the scans at the odometry poses into a grid in the
// agent's start frame, sized to what the scans reach (submapMeta).
func buildSubmap(res float64, odom []slam.Pose2D, scans []slam.LaserScan) (*grid.Grid, error) {
	meta, err := submapMeta(res, odom, scans)
	if err != nil {
		return nil, err
	}
	g, err := grid.New(meta)
	if err != nil {
		return nil, err
	}
	var in grid.Inserter // one for all scans: their beam directions are computed once
	for k, p := range odom {
		if _, err := in.Integrate(g, p, scans[k]); err != nil {
			return nil, err
		}
	}
	return g, nil
}
