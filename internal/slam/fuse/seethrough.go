package fuse

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam/grid"
)

// The see-through test: glass. A laser scanner sees a pane of glass only
// near the pane's normal, where the pane reflects the beam straight back;
// at a slant the beam passes through (or glances off) and returns from
// whatever lies behind. Two passes along a glass wall, one that met it
// head-on and one that looked through it at a slant, therefore contradict
// each other in their grids — occupied against free — just as a closed door
// or a moved cabinet does, and the region test refuses them: Freiburg 079's
// glass facade and partitions were most of its merge refusals at the right
// poses (docs/slam.md §6). The idea of a surface visible only from a range
// of angles is Foster, Sun, Park and Kuipers, "VISAGGE: Visible Angle Grid
// for Glass Environments", ICRA 2013.
//
// When an input fails a gate, each contradicted cell is forgiven as glass
// when all of these hold, and the gates are applied again without the
// forgiven cells (their neighbours' regions are not judged again:
// buffers.forget):
//
//   - the grid that says occupied holds a surface there: its confident
//     occupied cells in the (2·surfaceHalf+1)² box around the cell lie
//     along a line, whose normal the other tests use (surfaceNormal);
//   - that grid's own beams went through its surface: at least
//     minThroughBeams of them crossed one of its occupied cells within
//     seeThroughSpan cells of the cell along the surface, more than the
//     see-through angle from the normal, starting and ending at least
//     throughCells from the surface (passes), and the grid is confidently
//     free on both sides there (2..seeThroughReach cells along the normal).
//     A wall, a door or a cabinet is never seen through; a pane is, at a
//     slant;
//   - the grid that says free has no surface of its own just across
//     (no confident occupied cell 2..seeThroughReach cells along the
//     normal): its wall a few cells away is a pose error, not glass;
//   - at least one beam of the free side's scans crosses the cell, and every
//     one that does meets the surface more than the see-through angle from
//     its normal: a beam that crossed it head-on found an opening;
//   - at least minPaneCells cells are forgiven at once.
//
// Evidence without beams — a submap sent as cells, the previous map version
// under a merge — is never forgiven, so the synthetic scenarios (submaps)
// are judged as before. Sent as scans, the 299 changed worlds that
// localize are all still refused; docs/slam.md §5 has both sides.
const (
	// DefaultSeeThroughAngle (radians, 20°) is the largest angle from a
	// pane's normal at which it is taken to return a beam; 12° forgives
	// the same Freiburg 079 sets, 30° fewer (docs/slam.md §5).
	DefaultSeeThroughAngle = 20 * math.Pi / 180
	// surfaceHalf is the half-side, in cells, of the box whose occupied
	// cells give a surface's direction.
	surfaceHalf = 3
	// surfaceElongation is how much longer than wide (ratio of the
	// scatter's eigenvalues) the occupied cells must lie to be a surface;
	// a blob (a person, a chair leg) has no normal and is never forgiven.
	// A straight wall one or two cells thick is 16:1 or more; at 4:1, two
	// cells from the vertex of an L, the normal came out 22° off, more than
	// the see-through angle.
	surfaceElongation = 6
	// seeThroughReach is how far, in cells (0.5 m at 5 cm), the sides of
	// a surface are looked at along its normal.
	seeThroughReach = 10
	// seeThroughSpan is how far along the surface, in cells, the occupied
	// side's beams through it are looked for.
	seeThroughSpan = 3
	// throughCells is how far, in cells, a beam must start before a
	// surface and end beyond it to have gone through it: a beam that
	// meets a wall at a slant, its end point a little deep (range noise),
	// crosses the wall's first cells without seeing through anything.
	throughCells = seeThroughReach / 2
	// minThroughBeams is how many of the occupied side's beams must have
	// gone through its surface: one can be a beam grazing the corner of
	// a piece of furniture (the mildest changed world, seed 294, merged on
	// three such cells).
	minThroughBeams = 2
	// minPaneCells is the fewest cells the test forgives at once: a pane
	// is a run of cells, and a cell or three that meet every rule at the
	// end of a wall or a door jamb in a building without glass tipped a
	// pose 3° off under the gate in a review's 6,400 wrong-pose merges.
	minPaneCells = 5
	// maxSeeThroughBeams bounds the beams one merge's see-through tests
	// walk in all (a fraction of a microsecond each): a 4-agent Freiburg
	// 079 merge walks under a million; 16 agents of 72,000 beams each,
	// refused one after another, walked 17 million in 6 s before the
	// bound. When it is spent the test forgives nothing more, and the
	// gates judge as without it.
	maxSeeThroughBeams = 1 << 21
)

// seeThroughState is what the see-through tests of one merge share: the
// inputs already in the map, and the beams they may still walk.
type seeThroughState struct {
	earlier   []Input
	beamsLeft int
}

func newSeeThroughState() *seeThroughState {
	return &seeThroughState{beamsLeft: maxSeeThroughBeams}
}

// glassCell is a contradicted cell the see-through test may forgive.
type glassCell struct {
	at     int32   // index in the compared window
	nx, ny float64 // unit normal of the occupied side's surface
	// input is true when the input says free (its beams are traced),
	// false when the map does (the earlier inputs' beams are).
	input   bool
	crossed bool    // a free-side beam crosses the cell
	maxCos  float64 // the largest |cos| of such a beam's angle to the normal
	// seenThrough counts the occupied side's beams that crossed its own
	// surface near the cell at a slant.
	seenThrough int
}

// seeThroughScene is what the see-through test reads: the map before the
// input is added (cells, of meta), the input's window over it, and the
// confidence a cell needs to count.
type seeThroughScene struct {
	meta  grid.Meta
	cells []float32
	win   window
	conf  float32
}

func (s *seeThroughScene) mapAt(x, y int) float32 {
	if x < 0 || y < 0 || x >= s.meta.Width || y >= s.meta.Height {
		return 0
	}
	return s.cells[y*s.meta.Width+x]
}

func (s *seeThroughScene) winAt(x, y int) float32 {
	x, y = x-s.win.x0, y-s.win.y0
	if x < 0 || y < 0 || x >= s.win.bw || y >= s.win.bh {
		return 0
	}
	return s.win.v[y*s.win.bw+x]
}

// seeThrough forgives the contradicted cells of buf (the comparison of in,
// whose window is sc.win, with the map; st.earlier are the inputs already
// in the map) that are glass seen through at a slant, as the comment above
// says, with panes returning beams within angle of their normal. It takes
// the forgiven cells out of buf's against list (buffers.forget), so that
// buf.contradicted counts without them, and returns how many it forgave;
// none when st's beam budget runs out before every beam is walked.
func seeThrough(sc *seeThroughScene, buf *buffers, in Input, st *seeThroughState, angle float64) int {
	bw, bh := sc.win.bw, sc.win.bh
	var cands []glassCell
	for _, i := range buf.against {
		x, y := int(i)%bw, int(i)/bw
		if !buf.inContradictedRegion(x, y, bw, bh) {
			continue
		}
		mx, my := x+sc.win.x0, y+sc.win.y0
		inputFree := sc.win.v[i] < 0
		occupied, free := sc.mapAt, sc.winAt
		if !inputFree {
			occupied, free = sc.winAt, sc.mapAt
		}
		nx, ny, ok := surfaceNormal(occupied, mx, my, sc.conf)
		if !ok || !alongNormal(occupied, mx, my, nx, ny, func(v float32) bool { return v <= -sc.conf }, true) ||
			alongNormal(free, mx, my, nx, ny, func(v float32) bool { return v >= sc.conf }, false) {
			continue
		}
		cands = append(cands, glassCell{at: i, nx: nx, ny: ny, input: inputFree})
	}
	if len(cands) == 0 {
		return 0
	}
	if !traceBeams(sc, cands, in, st, angle) {
		return 0
	}
	forgive := make(map[int32]bool, len(cands))
	for _, c := range cands {
		if c.seenThrough >= minThroughBeams && c.crossed && c.maxCos < math.Cos(angle) {
			forgive[c.at] = true
		}
	}
	if len(forgive) < minPaneCells {
		return 0
	}
	buf.forget(forgive)
	return len(forgive)
}

// surfaceNormal returns the unit normal of the surface that get's confident
// occupied cells (>= conf) form around (x, y): the scatter matrix's minor
// axis, when they lie along a line (surfaceElongation).
func surfaceNormal(get func(x, y int) float32, x, y int, conf float32) (nx, ny float64, ok bool) {
	var n, sx, sy, sxx, syy, sxy float64
	for dy := -surfaceHalf; dy <= surfaceHalf; dy++ {
		for dx := -surfaceHalf; dx <= surfaceHalf; dx++ {
			if get(x+dx, y+dy) >= conf {
				fx, fy := float64(dx), float64(dy)
				n, sx, sy = n+1, sx+fx, sy+fy
				sxx, syy, sxy = sxx+fx*fx, syy+fy*fy, sxy+fx*fy
			}
		}
	}
	if n < 3 {
		return 0, 0, false
	}
	cxx, cyy, cxy := sxx/n-sx*sx/(n*n), syy/n-sy*sy/(n*n), sxy/n-sx*sy/(n*n)
	half, diff := (cxx+cyy)/2, math.Hypot((cxx-cyy)/2, cxy)
	major, minor := half+diff, half-diff
	if major < surfaceElongation*minor || major == 0 {
		return 0, 0, false
	}
	// The major axis's direction is (cos φ, sin φ) with tan 2φ =
	// 2cxy/(cxx−cyy); the normal is perpendicular to it.
	phi := math.Atan2(2*cxy, cxx-cyy) / 2
	return -math.Sin(phi), math.Cos(phi), true
}

// alongNormal reports whether get has a cell satisfying want 2..seeThroughReach
// cells from the surface along its normal (nx, ny): on either side through
// (x, y); or, when both is set, on both sides, each through a point of the
// surface within seeThroughSpan cells of (x, y) along it (a pane seen
// through at a slant is crossed beside the cell, not only at it).
func alongNormal(get func(x, y int) float32, x, y int, nx, ny float64, want func(float32) bool, both bool) bool {
	var found [2]bool
	span := 0
	if both {
		span = seeThroughSpan
	}
	for side, sign := range [2]float64{-1, 1} {
	line:
		for t := -span; t <= span; t++ {
			px, py := float64(x)-float64(t)*ny, float64(y)+float64(t)*nx
			for k := 2; k <= seeThroughReach; k++ {
				d := sign * float64(k)
				if want(get(int(math.Round(px+d*nx)), int(math.Round(py+d*ny)))) {
					found[side] = true
					break line
				}
			}
		}
	}
	if both {
		return found[0] && found[1]
	}
	return found[0] || found[1]
}

// traceBeams walks the free part of every beam that may decide a
// candidate, the input's and the earlier inputs', and records for each
// candidate: whether a beam of its free side crossed it, and the steepest
// such crossing; and how many beams of its occupied side went through its
// surface within seeThroughSpan cells of it, more than angle from the
// normal (the occupied side's own look through the pane). It reports false,
// having recorded only part of that, when st's beam budget ran out.
func traceBeams(sc *seeThroughScene, cands []glassCell, in Input, st *seeThroughState, angle float64) bool {
	// Each candidate's surface cells, found through a bitmap over their
	// bounding box (a bit per cell: the box can be the whole map) and a
	// map from a cell to the candidates whose surface holds it.
	type mark struct {
		k    int32
		self bool // the candidate's own cell, else a cell of its surface
	}
	surface := func(c glassCell, f func(x, y int)) {
		x, y := int(c.at)%sc.win.bw+sc.win.x0, int(c.at)/sc.win.bw+sc.win.y0
		for t := -seeThroughSpan; t <= seeThroughSpan; t++ {
			f(x+int(math.Round(-float64(t)*c.ny)), y+int(math.Round(float64(t)*c.nx)))
		}
	}
	bx0, by0, bx1, by1 := math.MaxInt, math.MaxInt, math.MinInt, math.MinInt
	for _, c := range cands {
		surface(c, func(x, y int) { bx0, by0, bx1, by1 = min(bx0, x), min(by0, y), max(bx1, x), max(by1, y) })
	}
	lw := bx1 - bx0 + 1
	has := make([]uint64, (lw*(by1-by0+1)+63)/64)
	marks := make(map[int][]mark, len(cands)*(2*seeThroughSpan+1))
	for k, c := range cands {
		surface(c, func(x, y int) {
			i := (y-by0)*lw + x - bx0
			has[i/64] |= 1 << (i % 64)
			marks[i] = append(marks[i], mark{k: int32(k), self: int(c.at) == (y-sc.win.y0)*sc.win.bw+x-sc.win.x0})
		})
	}
	cosAngle := math.Cos(angle)
	res, ox, oy := sc.meta.Resolution, sc.meta.Origin.X, sc.meta.Origin.Y
	var ins grid.Inserter
	trace := func(src Input, input bool) bool {
		for _, ps := range src.Scans {
			if st.beamsLeft -= len(ps.Scan.Ranges); st.beamsLeft < 0 {
				return false
			}
			sensor := src.Pose.Compose(ps.Pose)
			sx, sy := (sensor.X-ox)/res, (sensor.Y-oy)/res
			// Scans are validated where they were integrated; one that is
			// not valid here has no beams to offer.
			_ = ins.EachBeam(sensor, ps.Scan, func(c, s, reach float64, hit bool) {
				ex, ey := sx+reach*c/res, sy+reach*s/res
				walkCells(sx, sy, ex, ey, hit, bx0, by0, bx1, by1, func(x, y int) {
					i := (y-by0)*lw + x - bx0
					if has[i/64]&(1<<(i%64)) == 0 {
						return
					}
					for _, m := range marks[i] {
						cand := &cands[m.k]
						cos := math.Abs(c*cand.nx + s*cand.ny)
						switch {
						case m.self && cand.input == input: // the free side's beam
							cand.crossed = true
							cand.maxCos = max(cand.maxCos, cos)
						case cand.input != input && cos < cosAngle && occupiedIn(sc, cand, x, y) && passes(cand, sc, sx, sy, ex, ey): // the occupied side's, at a slant, through its own wall
							cand.seenThrough++
						}
					}
				})
			})
		}
		return true
	}
	if !trace(in, true) {
		return false
	}
	for _, e := range st.earlier {
		if !trace(e, false) {
			return false
		}
	}
	return true
}

// occupiedIn reports whether cell (x, y) is confidently occupied in the
// grid that says cand's cell is (the map when the input says free).
func occupiedIn(sc *seeThroughScene, cand *glassCell, x, y int) bool {
	if cand.input {
		return sc.mapAt(x, y) >= sc.conf
	}
	return sc.winAt(x, y) >= sc.conf
}

// passes reports whether the beam from (sx, sy) to (ex, ey), in map cells,
// starts and ends at least throughCells from cand's surface, on opposite
// sides: a beam that went through it, not one that ended in it.
func passes(cand *glassCell, sc *seeThroughScene, sx, sy, ex, ey float64) bool {
	cx := float64(int(cand.at)%sc.win.bw+sc.win.x0) + 0.5
	cy := float64(int(cand.at)/sc.win.bw+sc.win.y0) + 0.5
	d0 := (sx-cx)*cand.nx + (sy-cy)*cand.ny
	d1 := (ex-cx)*cand.nx + (ey-cy)*cand.ny
	return (d0 <= -throughCells && d1 >= throughCells) || (d0 >= throughCells && d1 <= -throughCells)
}

// walkCells calls f for every cell of the box [bx0, bx1] × [by0, by1] that
// the segment from (x0, y0) to (x1, y1), in cell units, passes through,
// leaving out the cell the segment ends in when endsInHit (the cell a
// returned beam hit is not free). Cells are found by Amanatides and Woo's
// traversal (1987), after clipping the segment to the box (Liang–Barsky).
func walkCells(x0, y0, x1, y1 float64, endsInHit bool, bx0, by0, bx1, by1 int, f func(x, y int)) {
	dx, dy := x1-x0, y1-y0
	t0, t1 := 0.0, 1.0
	for k, pq := range [4][2]float64{
		{-dx, x0 - float64(bx0)}, {dx, float64(bx1+1) - x0},
		{-dy, y0 - float64(by0)}, {dy, float64(by1+1) - y0},
	} {
		p, q := pq[0], pq[1]
		if p == 0 {
			// Parallel to this edge: outside the box, or on its far
			// edge (k odd: the box ends before bx1+1, by1+1).
			if q < 0 || (q == 0 && k%2 == 1) {
				return
			}
			continue
		}
		r := q / p
		if p < 0 {
			t0 = max(t0, r)
		} else {
			t1 = min(t1, r)
		}
	}
	if t0 >= t1 {
		return
	}
	// The end is the hit's cell only when it lies in the box: a segment
	// ending on the box's far edge ends in the cell beyond it.
	endX, endY := int(math.Floor(x1)), int(math.Floor(y1))
	clippedEnd := t1 < 1 || endX < bx0 || endX > bx1 || endY < by0 || endY > by1
	ax, ay := x0+t0*dx, y0+t0*dy
	ix, iy := int(math.Floor(ax)), int(math.Floor(ay))
	ex, ey := int(math.Floor(x0+t1*dx)), int(math.Floor(y0+t1*dy))
	// The clipped ends lie on the box's far edges: keep them inside it.
	ix, iy = min(max(ix, bx0), bx1), min(max(iy, by0), by1)
	ex, ey = min(max(ex, bx0), bx1), min(max(ey, by0), by1)
	stepX, stepY := 1, 1
	if dx < 0 {
		stepX = -1
	}
	if dy < 0 {
		stepY = -1
	}
	// tMax: the parameter at the next cell boundary on each axis; tDelta:
	// the parameter across one cell.
	tMaxX, tMaxY, tDeltaX, tDeltaY := math.Inf(1), math.Inf(1), math.Inf(1), math.Inf(1)
	if dx != 0 {
		next := float64(ix)
		if stepX > 0 {
			next++
		}
		tMaxX, tDeltaX = (next-x0)/dx, 1/math.Abs(dx)
	}
	if dy != 0 {
		next := float64(iy)
		if stepY > 0 {
			next++
		}
		tMaxY, tDeltaY = (next-y0)/dy, 1/math.Abs(dy)
	}
	steps := abs(ex-ix) + abs(ey-iy)
	for n := 0; ; n++ {
		last := n == steps
		if !(last && endsInHit && !clippedEnd) {
			f(ix, iy)
		}
		if last {
			return
		}
		if tMaxX < tMaxY {
			ix, tMaxX = ix+stepX, tMaxX+tDeltaX
		} else {
			iy, tMaxY = iy+stepY, tMaxY+tDeltaY
		}
		if ix < bx0 || ix > bx1 || iy < by0 || iy > by1 {
			return
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
