package match

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Verification of a match (issue 8): a pose is accepted only if the match
// explains the agent's free space as well as its walls. A wrong pose that
// lines some walls up (a corridor turned by 90°, a room matched into the
// neighbouring one) puts reference walls where the agent saw open floor; the
// right pose does not, except for what really changed (people, furniture,
// doors, glass), which is a small fraction of what an agent sees.
const (
	// freeLogOdds: a cell crossed by about three beams and never hit.
	freeLogOdds = -1.0
	// freeClearance is the distance in cells a free cell must keep from the
	// agent's own occupied cells to take part: a wall seen half a cell off
	// is not a contradiction.
	freeClearance = 2
	// freeStride thins the free cells to one in freeStride² (a lattice):
	// a wall crossing the agent's free space meets the lattice about once
	// every freeStride cells, so conflicts × freeStride estimates the
	// crossing wall's length in cells.
	freeStride = 2
)

// extractFree returns the centres of the submap's confidently free cells
// that keep freeClearance cells from its occupied cells, on a freeStride
// lattice. Only the lattice's free cells are tested, each against the
// occupied cells of its clearance disk (the 3×3 block for a clearance of 2):
// a distance transform of the whole submap would compute distances nothing
// reads.
func extractFree(submap *grid.Grid) []point {
	m := submap.Meta()
	cells := submap.LogOdds()
	var out []point
	for y := 0; y < m.Height; y += freeStride {
		for x := 0; x < m.Width; x += freeStride {
			if cells[y*m.Width+x] > freeLogOdds || nearOccupied(cells, m.Width, m.Height, x, y) {
				continue
			}
			px, py := m.Center(x, y)
			out = append(out, point{X: px, Y: py})
		}
	}
	return out
}

// nearOccupied reports whether an occupied cell of the w×h row-major
// log-odds grid lies closer than freeClearance cells (Euclidean, centre to
// centre) to cell (x, y).
func nearOccupied(cells []float32, w, h, x, y int) bool {
	const r = freeClearance - 1 // the farthest offset that can be closer than freeClearance
	for dy := max(-r, -y); dy <= min(r, h-1-y); dy++ {
		row := cells[(y+dy)*w:]
		for dx := max(-r, -x); dx <= min(r, w-1-x); dx++ {
			if dx*dx+dy*dy < freeClearance*freeClearance && row[x+dx] > occupiedLogOdds {
				return true
			}
		}
	}
	return false
}

// freeConflict measures, both ways, how much of the agent's map the
// reference contradicts at pose: the length in cells of reference walls
// that fall in the agent's free space, plus the agent's walls that fall on
// the reference's open floor (confidently free, freeClearance cells from
// any reference wall), both over the agent's occupied cells (walls, the
// points pts). 0 for a perfect match; a submap turned by 90° in a
// rectangular building lines up its walls with parallel ones but lays
// others across rooms and corridors.
func (r *Reference) freeConflict(free, walls []point, pose slam.Pose2D) float64 {
	m := r.meta
	s, c := math.Sincos(pose.Theta)
	conflicts := 0
	for _, p := range free {
		x := pose.X + c*p.X - s*p.Y
		y := pose.Y + s*p.X + c*p.Y
		cx, cy, ok := m.CellOf(x, y)
		if ok && r.dist2[cy*m.Width+cx] == 0 {
			conflicts += freeStride
		}
	}
	for _, p := range walls {
		x := pose.X + c*p.X - s*p.Y
		y := pose.Y + s*p.X + c*p.Y
		cx, cy, ok := m.CellOf(x, y)
		if ok {
			i := cy*m.Width + cx
			if r.free[i] && r.dist2[i] >= freeClearance*freeClearance {
				conflicts++
			}
		}
	}
	return float64(conflicts) / float64(max(len(walls), 1))
}

// basinSamples and basinDip decide whether two peaks are one basin: the
// score along the straight path between them never drops below basinDip of
// the lower peak. Sliding along a featureless corridor is one elongated
// basin (its extent is the pose's uncertainty, not a second answer); two
// repetitions of a pattern are separated by a dip where the pattern is out
// of phase.
const (
	basinSamples = 6
	basinDip     = 0.97
)

// sameBasin reports whether peaks a and b are one basin of the fine score
// (see basinDip).
func (r *Reference) sameBasin(pts []point, a, b peak) bool {
	lower := math.Min(a.score, b.score)
	dth := slam.AngleDiff(b.pose.Theta, a.pose.Theta)
	for k := 1; k < basinSamples; k++ {
		t := float64(k) / basinSamples
		p := slam.Pose2D{
			X:     a.pose.X + t*(b.pose.X-a.pose.X),
			Y:     a.pose.Y + t*(b.pose.Y-a.pose.Y),
			Theta: a.pose.Theta + t*dth,
		}
		if s, _ := r.evaluate(pts, p); s < basinDip*lower {
			return false
		}
	}
	return true
}

// wideness is how wide a search of window w is, 0..1: 0 up to the default
// window's volume (±DefaultWindowXY, ±DefaultWindowTheta), 1 from
// wideSearchRatio times that volume and for every search without a guess,
// and in between the logarithm of the volume ratio over that of
// wideSearchRatio — the logarithm of the number of candidate poses, which
// is what the best chance score among them grows with. The volume is the
// smaller of the requested window's and the searched one's (clipped to the
// map, but rounded out to whole search cells, which must not make a default
// window wide).
func (o Options) wideness(w Window) float64 {
	if w.Global {
		return 1
	}
	requested := (2 * o.WindowXY) * (2 * o.WindowXY) * (2 * math.Min(o.WindowTheta, math.Pi))
	ratio := math.Min(w.volume(), requested) / defaultWindowVolume
	if ratio <= 1 {
		return 0
	}
	return math.Min(math.Log(ratio)/math.Log(wideSearchRatio), 1)
}

// freeConflictLimit is the verification limit of a search of window w:
// from MaxFreeConflict (a default window) to MaxWideFreeConflict (a wide
// search) by wideness; never above MaxFreeConflict.
func (o Options) freeConflictLimit(w Window) float64 {
	wide := math.Min(o.MaxWideFreeConflict, o.MaxFreeConflict)
	return o.MaxFreeConflict - o.wideness(w)*(o.MaxFreeConflict-wide)
}

// minPoints is the fewest occupied cells a search of window w accepts: from
// MinPoints (a default window) to MinWidePoints (a wide search) by
// wideness; never below MinPoints.
func (o Options) minPoints(w Window) int {
	wide := max(o.MinWidePoints, o.MinPoints)
	return o.MinPoints + int(math.Round(o.wideness(w)*float64(wide-o.MinPoints)))
}

// RequiredPoints is the fewest occupied submap cells a localization with
// o accepts for an agent with a guess (guessed) or without one: MinPoints
// for a default window, rising to MinWidePoints with the window's width
// (see MinWidePoints). A window the map clips can need fewer, never more.
// Invalid options give their defaults' figure.
func (o Options) RequiredPoints(guessed bool) int {
	o, err := o.withDefaults()
	if err != nil {
		o, _ = Options{}.withDefaults()
	}
	if !guessed {
		return o.minPoints(Window{Global: true})
	}
	w := math.Min(o.WindowXY, MaxWindowXY)
	return o.minPoints(Window{MinX: -w, MaxX: w, MinY: -w, MaxY: w, HalfTheta: math.Min(o.WindowTheta, math.Pi)})
}

// defaultWindowVolume is the volume (m²·rad) of the default search window.
const defaultWindowVolume = (2 * DefaultWindowXY) * (2 * DefaultWindowXY) * (2 * DefaultWindowTheta)

// volume is the window's search volume in m²·rad: its translational area
// times its heading range.
func (w Window) volume() float64 {
	return (w.MaxX - w.MinX) * (w.MaxY - w.MinY) * 2 * w.HalfTheta
}
