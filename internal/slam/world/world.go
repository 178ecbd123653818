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

// generator carries the state shared while agents are placed one by one.
type generator struct {
	cfg     Config
	plan    *plan
	scene   *scene // the world as it is
	changed *scene // the world after the change (ChangedWorld only)
	meta    grid.Meta
	seen    []bool   // truth cells near obstacles that earlier agents hit
	mark    []uint32 // per-cell stamp deduplicating hits within one drive
	stamp   uint32
	place   *rand.Rand
	starts  []slam.Pose2D
}

const (
	robotClearance    = 0.45 // metres from the robot centre to any obstacle at a start
	pathClearance     = 0.35 // metres kept while driving
	placementBeams    = 180  // beams of the cheap look-around used to place agents
	maxCandidates     = 80
	maxAttempts       = 6    // whole drives simulated per agent at most
	minOverlap        = 0.55 // fraction of a drive's hits earlier agents saw
	minChange         = 0.15 // fraction of the changed agent's first view that the change altered
	changedMinOverlap = 0.7
	teamRadius        = 5.0 // metres from a teammate within which agents are drawn
	vaultMargin       = 0.4 // metres around the vault other agents' hits must avoid
)

// agent draws agent i's drive and scans; the caller builds its submap.
func (g *generator) agent(i int) (Agent, error) {
	a := Agent{Index: i, Anchor: i == 0}
	cfg := g.cfg
	last := i == cfg.Agents-1
	a.Sealed = cfg.Kind == SealedAgent && last && i > 0
	a.Changed = cfg.Kind == ChangedWorld && last && i > 0
	sc := g.scene
	if a.Changed {
		sc = g.changed
	}
	pathLen := cfg.PathLengthM
	var inArea func(x, y float64) bool
	switch {
	case a.Sealed:
		ar := g.plan.areas[g.plan.sealed]
		inArea = ar.contains
	case cfg.Kind == SymmetricCorridor:
		pathLen = min(pathLen, 0.6)
		inArea = g.plan.corridor.contains
	default:
		inArea = func(x, y float64) bool {
			return g.plan.sealed < 0 || !g.plan.areas[g.plan.sealed].contains(x, y)
		}
	}
	// Draw starts until the whole drive overlaps what earlier agents saw
	// enough to be localized (Office) or, for the changed agent, enough to
	// localize while showing the change; keep the best draw otherwise.
	sensor := newRand(cfg.Seed, streamAgent+uint64(i))
	bestOverlap, bestQuality := 0.0, math.Inf(-1)
	var poses []slam.Pose2D
	var scans []slam.LaserScan
	var dirs [][]beamDir
	attempts := maxAttempts
	if cfg.Kind == SealedAgent {
		attempts = 4 * maxAttempts // keeping the vault unseen can take a few draws
	}
	for attempt := range attempts {
		start, err := g.chooseStart(i, sc, inArea, pathLen, a.Sealed, a.Changed)
		if err != nil {
			return a, err
		}
		p := drive(g.place, sc, start, inArea, pathLen, cfg.ScansPerAgent)
		s := make([]slam.LaserScan, len(p))
		d := make([][]beamDir, len(p))
		flat := make([]beamDir, len(p)*LidarBeams) // one allocation for the drive
		for k, pose := range p {
			d[k] = flat[k*LidarBeams : (k+1)*LidarBeams]
			s[k] = simulateScan(sc, pose, sensor, cfg.RangeNoise, cfg.DropoutRate, d[k])
		}
		overlap := g.overlap(p, s, d)
		quality := overlap
		seesVault := cfg.Kind == SealedAgent && !a.Sealed && g.seesSealed(p, s, d)
		if seesVault {
			quality -= 2 // never prefer a drive that sees the vault
		}
		if quality > bestQuality {
			bestQuality, bestOverlap, poses, scans, dirs = quality, overlap, p, s, d
		}
		need := minOverlap
		if a.Changed {
			need = changedMinOverlap // what it saw of the unchanged walls must carry the match alone
		}
		good := (i == 0 || overlap >= need || a.Sealed || cfg.Kind == SymmetricCorridor) && !seesVault
		if good || attempt == attempts-1 {
			break
		}
	}
	start := poses[0]
	a.Truth = start
	a.ViewOverlap = bestOverlap
	g.starts = append(g.starts, start)
	inv := start.Inverse()
	a.Path = make([]slam.Pose2D, len(poses))
	a.Odometry = make([]slam.Pose2D, len(poses))
	a.Scans = scans
	for k, pose := range poses {
		a.Path[k] = inv.Compose(pose)
		if k == 0 {
			a.Odometry[k] = slam.Pose2D{}
		} else {
			rel := poses[k-1].Inverse().Compose(pose)
			d := math.Hypot(rel.X, rel.Y)
			rel.X += sensor.NormFloat64() * cfg.OdomNoise * d
			rel.Y += sensor.NormFloat64() * cfg.OdomNoise * d
			rel.Theta += sensor.NormFloat64() * cfg.OdomRotNoise * d
			a.Odometry[k] = a.Odometry[k-1].Compose(rel)
		}
		g.markSeen(pose, a.Scans[k], dirs[k])
	}
	return a, nil
}

// chooseStart draws start poses until one satisfies the scenario: anywhere
// free for the anchor and the sealed agent; for the others, near a teammate
// with a first view that overlaps what earlier agents saw (so the chain of
// localizations can succeed); for the changed agent, a view that is mostly
// unchanged walls but shows at least minChange of change. Without a
// satisfying draw it returns the best one.
func (g *generator) chooseStart(i int, sc *scene, inArea func(x, y float64) bool, pathLen float64, sealed, changed bool) (slam.Pose2D, error) {
	cfg := g.cfg
	x0, y0, x1, y1 := outerWall, outerWall, cfg.WidthM-outerWall, cfg.HeightM-outerWall
	corridorKind := cfg.Kind == SymmetricCorridor
	if sealed {
		ar := g.plan.areas[g.plan.sealed]
		x0, y0, x1, y1 = ar.x0, ar.y0, ar.x1, ar.y1
	}
	if corridorKind {
		c := g.plan.corridor
		y0, y1 = c.y0, c.y1
		// Keep the corridor's end walls beyond lidar range where the world is
		// long enough, so nothing but the repetitive walls is in view.
		lo, hi := c.x0+LidarRange+0.3+pathLen, c.x1-LidarRange-0.3-pathLen
		if lo > hi {
			mid := (c.x0 + c.x1) / 2
			lo, hi = mid-1, mid+1
		}
		x0, x1 = lo, hi
		if len(g.starts) > 0 {
			// Teammates stand near the anchor, so that their submaps cover
			// the same stretch of wall and only the repetition differs.
			ax := g.starts[0].X
			x0, x1 = max(lo, ax-0.6), min(hi, ax+0.6)
		}
	}
	var best slam.Pose2D
	bestScore := math.Inf(-1)
	found := false
	for range maxCandidates * 4 {
		x := uniform(g.place, x0, x1)
		y := uniform(g.place, y0, y1)
		if len(g.starts) > 0 && !sealed && !corridorKind {
			// Teams deploy together: draw near a teammate, which is where
			// the overlap that localization needs is.
			s := g.starts[g.place.IntN(len(g.starts))]
			d, a := uniform(g.place, 0.8, teamRadius), uniform(g.place, -math.Pi, math.Pi)
			x, y = s.X+d*math.Cos(a), s.Y+d*math.Sin(a)
		}
		th := uniform(g.place, -math.Pi, math.Pi)
		if corridorKind {
			th = uniform(g.place, -0.3, 0.3)
			if g.place.IntN(2) == 0 {
				th += math.Pi
			}
			th = slam.NormalizeAngle(th)
		}
		if !inArea(x, y) || sc.clearance(x, y) < robotClearance {
			continue
		}
		minSpacing := 0.6
		if corridorKind {
			minSpacing = 0.3 // the corridor is narrow on purpose
		}
		tooClose := false
		for _, s := range g.starts {
			if math.Hypot(s.X-x, s.Y-y) < minSpacing {
				tooClose = true
			}
		}
		if tooClose {
			continue
		}
		pose := slam.Pose2D{X: x, Y: y, Theta: th}
		if i == 0 || sealed {
			return pose, nil
		}
		found = true
		overlap, moved := g.look(sc, pose, changed)
		score := overlap
		if changed && moved < minChange {
			score-- // a changed agent that sees no change tests nothing
		}
		if score > bestScore {
			best, bestScore = pose, score
		}
		if (overlap >= 0.6 && !changed) || (changed && overlap >= changedMinOverlap && moved >= minChange) || corridorKind {
			break
		}
	}
	if !found {
		return slam.Pose2D{}, fmt.Errorf("%w: no free start for agent %d in a %gx%g m world", slam.ErrInvalidArgument, i, cfg.WidthM, cfg.HeightM)
	}
	return best, nil
}

// look casts a cheap ring of beams from pose and reports the fraction of
// hits that land on cells earlier agents hit, and (for the changed agent) the
// fraction of beams whose range differs from the unchanged world.
func (g *generator) look(sc *scene, pose slam.Pose2D, changed bool) (overlap, moved float64) {
	hits, common, diff := 0, 0, 0
	for b := range placementBeams {
		a := pose.Theta + 2*math.Pi*float64(b)/placementBeams
		s, c := math.Sincos(a)
		r := sc.raycast(pose.X, pose.Y, c, s, LidarRange)
		if changed {
			r0 := g.scene.raycast(pose.X, pose.Y, c, s, LidarRange)
			if math.Abs(r-r0) > 0.25 || math.IsInf(r, 1) != math.IsInf(r0, 1) {
				diff++
			}
		}
		if math.IsInf(r, 1) {
			continue
		}
		hits++
		if cx, cy, ok := g.meta.CellOf(pose.X+r*c, pose.Y+r*s); ok && g.seen[cy*g.meta.Width+cx] {
			common++
		}
	}
	if hits == 0 {
		return 0, 0
	}
	return float64(common) / float64(hits), float64(diff) / placementBeams
}

// overlap returns the fraction of the distinct cells a drive hit that
// earlier agents hit too (within a cell): per cell, not per beam, because
// that is what the matcher sees, and a wall next to the robot gets hundreds
// of beams.
func (g *generator) overlap(poses []slam.Pose2D, scans []slam.LaserScan, dirs [][]beamDir) float64 {
	g.stamp++
	if g.mark == nil {
		g.mark = make([]uint32, len(g.seen))
	}
	hits, common := 0, 0
	for k, pose := range poses {
		sc := scans[k]
		for b, r := range sc.Ranges {
			rr := float64(r)
			if math.IsNaN(rr) || math.IsInf(rr, 0) || rr >= sc.RangeMax {
				continue
			}
			d := dirs[k][b]
			cx, cy, ok := g.meta.CellOf(pose.X+rr*d.c, pose.Y+rr*d.s)
			if !ok {
				continue
			}
			i := cy*g.meta.Width + cx
			if g.mark[i] == g.stamp {
				continue
			}
			g.mark[i] = g.stamp
			hits++
			if g.seen[i] {
				common++
			}
		}
	}
	if hits == 0 {
		return 0
	}
	return float64(common) / float64(hits)
}

// seesSealed reports whether any hit of a drive lands on or near the
// vault of a SealedAgent world; the other agents must not see it, or the
// sealed agent's walls would have something to match.
func (g *generator) seesSealed(poses []slam.Pose2D, scans []slam.LaserScan, dirs [][]beamDir) bool {
	v := g.plan.areas[g.plan.sealed]
	pad := sealedWallPad + innerWall + vaultMargin
	for k, pose := range poses {
		sc := scans[k]
		for b, r := range sc.Ranges {
			rr := float64(r)
			if math.IsNaN(rr) || math.IsInf(rr, 0) || rr >= sc.RangeMax {
				continue
			}
			d := dirs[k][b]
			x, y := pose.X+rr*d.c, pose.Y+rr*d.s
			if x > v.x0-pad && x < v.x1+pad && y > v.y0-pad && y < v.y1+pad {
				return true
			}
		}
	}
	return false
}

// markSeen records the cells around every hit of a scan, dilated by one cell
// so that sensor noise does not hide an overlap.
func (g *generator) markSeen(pose slam.Pose2D, scan slam.LaserScan, dirs []beamDir) {
	for b, r := range scan.Ranges {
		rr := float64(r)
		if math.IsNaN(rr) || math.IsInf(rr, 0) || rr >= scan.RangeMax {
			continue
		}
		cx, cy, ok := g.meta.CellOf(pose.X+rr*dirs[b].c, pose.Y+rr*dirs[b].s)
		if !ok {
			continue
		}
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				x, y := cx+dx, cy+dy
				if x >= 0 && y >= 0 && x < g.meta.Width && y < g.meta.Height {
					g.seen[y*g.meta.Width+x] = true
				}
			}
		}
	}
}

// drive produces n poses (the first is start) along a collision-free path of
// about length metres: small random turns, and a sharper turn whenever the
// way ahead is blocked or leaves the agent's area. An agent boxed in turns
// on the spot rather than failing.
func drive(r *rand.Rand, sc *scene, start slam.Pose2D, inArea func(x, y float64) bool, length float64, n int) []slam.Pose2D {
	poses := []slam.Pose2D{start}
	if n <= 1 {
		return poses
	}
	step := length / float64(n-1)
	cur := start
	free := func(x, y float64) bool { return inArea(x, y) && sc.clearance(x, y) >= pathClearance }
	for len(poses) < n {
		base := cur.Theta + r.NormFloat64()*0.25
		next := slam.Pose2D{X: cur.X, Y: cur.Y, Theta: slam.NormalizeAngle(cur.Theta + 0.3)}
		for k := range 9 {
			h := base
			if k > 0 {
				turn := float64((k+1)/2) * math.Pi / 4
				if k%2 == 0 {
					turn = -turn
				}
				h += turn
			}
			s, c := math.Sincos(h)
			nx, ny := cur.X+step*c, cur.Y+step*s
			if free(cur.X+step*c/2, cur.Y+step*s/2) && free(nx, ny) {
				next = slam.Pose2D{X: nx, Y: ny, Theta: slam.NormalizeAngle(h)}
				break
			}
		}
		poses = append(poses, next)
		cur = next
	}
	return poses
}

// beamDir is the direction of one beam in the map frame: the sine and
// cosine of the pose's heading plus the beam's angle.
type beamDir struct{ s, c float64 }

// simulateScan casts the lidar's beams from pose against sc, adding Gaussian
// range noise and random dropouts (NaN), and reporting no return as +Inf.
// It writes the beams' directions to dirs (LidarBeams of them): the checks
// of a drive (overlap, seesSealed, markSeen) need the very same values, and
// computing each once spares a math.Sincos per beam and check.
func simulateScan(sc *scene, pose slam.Pose2D, r *rand.Rand, noise, dropout float64, dirs []beamDir) slam.LaserScan {
	scan := slam.LaserScan{
		AngleMin:       -math.Pi,
		AngleIncrement: 2 * math.Pi / LidarBeams,
		RangeMin:       LidarRangeMin,
		RangeMax:       LidarRange,
		Ranges:         make([]float32, LidarBeams),
	}
	for b := range LidarBeams {
		s, c := math.Sincos(pose.Theta + scan.BeamAngle(b))
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
	for k, p := range odom {
		grow(p.X, p.Y)
		sc := scans[k]
		for b, r := range sc.Ranges {
			rr := float64(r)
			if math.IsNaN(rr) || rr < sc.RangeMin {
				continue
			}
			rr = min(rr, sc.RangeMax)
			s, c := math.Sincos(p.Theta + sc.BeamAngle(b))
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
