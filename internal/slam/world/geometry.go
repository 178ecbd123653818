package world

import "math"

// ShapeKind says what a rectangle of the floor plan is, which decides what a
// scenario may change: walls never move, doors can close, furniture moves.
type ShapeKind int

// The kinds of shapes in a floor plan.
const (
	ShapeWall ShapeKind = iota
	ShapeFurniture
	ShapeDoorLeaf
)

// Rect is an oriented rectangle of the floor plan in the map frame: centre
// (CX, CY), half extents along its own axes, rotated by Angle. Every obstacle
// is built from these, which keeps rasterising and ray casting exact and
// simple; L-shaped furniture is two rectangles.
type Rect struct {
	CX, CY       float64
	HalfW, HalfH float64
	Angle        float64
	Kind         ShapeKind
}

// axisRect builds an axis-aligned rectangle from its corners.
func axisRect(x0, y0, x1, y1 float64, kind ShapeKind) Rect {
	if x1 < x0 {
		x0, x1 = x1, x0
	}
	if y1 < y0 {
		y0, y1 = y1, y0
	}
	return Rect{CX: (x0 + x1) / 2, CY: (y0 + y1) / 2, HalfW: (x1 - x0) / 2, HalfH: (y1 - y0) / 2, Kind: kind}
}

// Corners returns the four corners counter-clockwise.
func (r Rect) Corners() [4][2]float64 {
	s, c := math.Sincos(r.Angle)
	var out [4][2]float64
	for i, sg := range [4][2]float64{{-1, -1}, {1, -1}, {1, 1}, {-1, 1}} {
		lx, ly := sg[0]*r.HalfW, sg[1]*r.HalfH
		out[i] = [2]float64{r.CX + c*lx - s*ly, r.CY + s*lx + c*ly}
	}
	return out
}

// Contains reports whether the point lies inside the rectangle.
func (r Rect) Contains(x, y float64) bool {
	s, c := math.Sincos(r.Angle)
	dx, dy := x-r.CX, y-r.CY
	lx, ly := c*dx+s*dy, -s*dx+c*dy
	return math.Abs(lx) <= r.HalfW && math.Abs(ly) <= r.HalfH
}

// Distance returns the distance from the point to the rectangle (0 inside).
func (r Rect) Distance(x, y float64) float64 {
	s, c := math.Sincos(r.Angle)
	dx, dy := x-r.CX, y-r.CY
	lx, ly := c*dx+s*dy, -s*dx+c*dy
	ex := max(math.Abs(lx)-r.HalfW, 0)
	ey := max(math.Abs(ly)-r.HalfH, 0)
	return math.Hypot(ex, ey)
}

// bounds returns the axis-aligned bounding box.
func (r Rect) bounds() (x0, y0, x1, y1 float64) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, p := range r.Corners() {
		x0, y0 = min(x0, p[0]), min(y0, p[1])
		x1, y1 = max(x1, p[0]), max(y1, p[1])
	}
	return
}

type segment struct{ ax, ay, ex, ey float64 } // a + u*e, u in [0,1]

// scene answers the two geometric questions the simulation asks, "where does
// this beam hit" and "how far is the nearest obstacle", against a fixed set
// of rectangles. Segments are bucketed in a coarse uniform grid so that a
// beam tests only the handful of segments near its path.
type scene struct {
	rects    []Rect
	segs     []segment
	x0, y0   float64
	cell     float64
	bw, bh   int
	bucketAt []int32 // offsets into bucketed, len bw*bh+1
	bucketed []int32
}

const sceneBucket = 1.0 // metres; rooms are a few metres, so a beam visits ~10 buckets

func newScene(rects []Rect, width, height float64) *scene {
	s := &scene{rects: rects, x0: -1, y0: -1, cell: sceneBucket}
	s.bw = int(math.Ceil((width+2)/s.cell)) + 1
	s.bh = int(math.Ceil((height+2)/s.cell)) + 1
	for _, r := range rects {
		c := r.Corners()
		for i := range 4 {
			a, b := c[i], c[(i+1)%4]
			s.segs = append(s.segs, segment{a[0], a[1], b[0] - a[0], b[1] - a[1]})
		}
	}
	counts := make([]int32, s.bw*s.bh+1)
	visit := func(si int, f func(b int)) {
		sg := s.segs[si]
		bx0, by0 := s.bucket(min(sg.ax, sg.ax+sg.ex), min(sg.ay, sg.ay+sg.ey))
		bx1, by1 := s.bucket(max(sg.ax, sg.ax+sg.ex), max(sg.ay, sg.ay+sg.ey))
		for by := by0; by <= by1; by++ {
			for bx := bx0; bx <= bx1; bx++ {
				f(by*s.bw + bx)
			}
		}
	}
	for si := range s.segs {
		visit(si, func(b int) { counts[b+1]++ })
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	s.bucketAt = counts
	s.bucketed = make([]int32, counts[len(counts)-1])
	fill := make([]int32, s.bw*s.bh)
	for si := range s.segs {
		visit(si, func(b int) {
			s.bucketed[s.bucketAt[b]+fill[b]] = int32(si)
			fill[b]++
		})
	}
	return s
}

func (s *scene) bucket(x, y float64) (int, int) {
	bx := int(math.Floor((x - s.x0) / s.cell))
	by := int(math.Floor((y - s.y0) / s.cell))
	return min(max(bx, 0), s.bw-1), min(max(by, 0), s.bh-1)
}

// raycast returns the distance along the unit direction (dx, dy) from (ox,
// oy) to the first obstacle surface, or +Inf when nothing is hit within
// maxRange. It walks the bucket grid with Amanatides–Woo and stops at the
// first bucket whose segments produce a hit inside that bucket.
func (s *scene) raycast(ox, oy, dx, dy, maxRange float64) float64 {
	bx, by := s.bucket(ox, oy)
	stepX, stepY := 1, 1
	tMaxX, tMaxY := math.Inf(1), math.Inf(1)
	tDeltaX, tDeltaY := math.Inf(1), math.Inf(1)
	if dx > 0 {
		tMaxX = (s.x0 + float64(bx+1)*s.cell - ox) / dx
		tDeltaX = s.cell / dx
	} else if dx < 0 {
		stepX = -1
		tMaxX = (s.x0 + float64(bx)*s.cell - ox) / dx
		tDeltaX = -s.cell / dx
	}
	if dy > 0 {
		tMaxY = (s.y0 + float64(by+1)*s.cell - oy) / dy
		tDeltaY = s.cell / dy
	} else if dy < 0 {
		stepY = -1
		tMaxY = (s.y0 + float64(by)*s.cell - oy) / dy
		tDeltaY = -s.cell / dy
	}
	best := math.Inf(1)
	for {
		b := by*s.bw + bx
		for _, si := range s.bucketed[s.bucketAt[b]:s.bucketAt[b+1]] {
			sg := &s.segs[si]
			den := dx*sg.ey - dy*sg.ex
			if den == 0 {
				continue
			}
			wx, wy := sg.ax-ox, sg.ay-oy
			t := (wx*sg.ey - wy*sg.ex) / den
			if t <= 1e-9 || t >= best {
				continue
			}
			u := (wx*dy - wy*dx) / den
			if u >= 0 && u <= 1 {
				best = t
			}
		}
		exit := min(tMaxX, tMaxY)
		if best <= exit || exit > maxRange {
			break
		}
		if tMaxX < tMaxY {
			bx += stepX
			tMaxX += tDeltaX
		} else {
			by += stepY
			tMaxY += tDeltaY
		}
		if bx < 0 || by < 0 || bx >= s.bw || by >= s.bh {
			break
		}
	}
	if best > maxRange {
		return math.Inf(1)
	}
	return best
}

// clearance returns the distance from the point to the nearest obstacle.
func (s *scene) clearance(x, y float64) float64 {
	d := math.Inf(1)
	for _, r := range s.rects {
		// The bounding-circle test skips most rectangles cheaply.
		rad := math.Hypot(r.HalfW, r.HalfH)
		if math.Hypot(x-r.CX, y-r.CY)-rad >= d {
			continue
		}
		d = min(d, r.Distance(x, y))
	}
	return d
}

// inside reports whether the point lies inside any obstacle.
func (s *scene) inside(x, y float64) bool {
	for _, r := range s.rects {
		if r.Contains(x, y) {
			return true
		}
	}
	return false
}
