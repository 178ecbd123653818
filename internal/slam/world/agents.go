package world

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

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
		overlap := 0.0 // the anchor's: no earlier agent saw anything
		if i > 0 {
			overlap = g.overlap(p, s, d)
		}
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
		if !last { // what the agents after this one may overlap
			g.markSeen(pose, a.Scans[k], dirs[k])
		}
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
		for x, y := range scanHits(pose, scans[k], dirs[k]) {
			cx, cy, ok := g.meta.CellOf(x, y)
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
		for x, y := range scanHits(pose, scans[k], dirs[k]) {
			if x > v.x0-pad && x < v.x1+pad && y > v.y0-pad && y < v.y1+pad {
				return true
			}
		}
	}
	return false
}

// scanHits yields the map-frame end point of every beam of scan that
// returned (neither a dropout nor a no-return beam), in beam order; dirs
// are the beams' directions simulateScan wrote.
func scanHits(pose slam.Pose2D, scan slam.LaserScan, dirs []beamDir) iter.Seq2[float64, float64] {
	return func(yield func(x, y float64) bool) {
		for b, r := range scan.Ranges {
			rr := float64(r)
			if math.IsNaN(rr) || math.IsInf(rr, 0) || rr >= scan.RangeMax {
				continue
			}
			if !yield(pose.X+rr*dirs[b].c, pose.Y+rr*dirs[b].s) {
				return
			}
		}
	}
}

// markSeen records the cells around every hit of a scan, dilated by one cell
// so that sensor noise does not hide an overlap.
func (g *generator) markSeen(pose slam.Pose2D, scan slam.LaserScan, dirs []beamDir) {
	for x, y := range scanHits(pose, scan, dirs) {
		cx, cy, ok := g.meta.CellOf(x, y)
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
