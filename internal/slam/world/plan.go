package world

import (
	"math"
	"math/rand/v2"
)

// Floor-plan dimensions in metres. Walls are thick enough (>= 2 cells at the
// default 5 cm) that the ground-truth raster never has holes.
const (
	outerWall     = 0.2
	innerWall     = 0.12
	sealedWallPad = 0.2 // extra thickness lining a sealed room
	doorLeaf      = 0.06
)

// area is an axis-aligned free region of the plan (a room or a corridor)
// where agents may be placed.
type area struct {
	x0, y0, x1, y1 float64
	sealed         bool
}

func (a area) contains(x, y float64) bool { return x >= a.x0 && x <= a.x1 && y >= a.y0 && y <= a.y1 }

// gap is an opening in a wall: doors (which a changed world may close) and
// wider open fronts.
type gap struct {
	x0, y0, x1, y1 float64 // the opening's rectangle across the wall
	door           bool
}

// plan is a floor plan: the static walls, the movable furniture, the
// openings and the areas agents may stand in.
type plan struct {
	width, height float64
	walls         []Rect
	furniture     []Rect
	gaps          []gap
	areas         []area
	corridor      area
	sealed        int // index into areas of the sealed room, -1 if none
}

func (p *plan) shapes() []Rect {
	out := make([]Rect, 0, len(p.walls)+len(p.furniture))
	out = append(out, p.walls...)
	return append(out, p.furniture...)
}

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// wallWithGaps adds a straight wall from a to b along one axis, leaving the
// given openings (intervals along the wall) out.
func (p *plan) wallWithGaps(horizontal bool, fixed0, fixed1, from, to float64, openings [][2]float64) {
	cur := from
	add := func(a, b float64) {
		if b-a < 0.02 {
			return
		}
		if horizontal {
			p.walls = append(p.walls, axisRect(a, fixed0, b, fixed1, ShapeWall))
		} else {
			p.walls = append(p.walls, axisRect(fixed0, a, fixed1, b, ShapeWall))
		}
	}
	for _, o := range openings {
		add(cur, o[0])
		cur = o[1]
	}
	add(cur, to)
}

func (p *plan) outerWalls() {
	w, h := p.width, p.height
	p.walls = append(p.walls,
		axisRect(0, 0, w, outerWall, ShapeWall),
		axisRect(0, h-outerWall, w, h, ShapeWall),
		axisRect(0, 0, outerWall, h, ShapeWall),
		axisRect(w-outerWall, 0, w, h, ShapeWall),
	)
}

// officePlan lays out an office: a corridor across the building with a band
// of rooms on each side. Room widths, door positions, open fronts and
// furniture are all drawn from r, and each band is partitioned
// independently, so the plan has no symmetry a matcher could fall into.
// With sealed set, one end room gets no openings and thickened walls.
func officePlan(r *rand.Rand, w, h float64, sealed bool) *plan {
	p := &plan{width: w, height: h, sealed: -1}
	p.outerWalls()
	cw := uniform(r, 1.8, 2.4)
	cy := h * uniform(r, 0.42, 0.58)
	yl, yu := cy-cw/2, cy+cw/2
	p.corridor = area{x0: outerWall, y0: yl, x1: w - outerWall, y1: yu}
	lx0, lx1 := outerWall, w-outerWall

	type band struct {
		y0, y1   float64 // room interior
		wall0    float64 // corridor wall, y range [wall0, wall0+innerWall]
		doorSide float64 // y of the corridor-facing wall face
	}
	bands := []band{
		{y0: outerWall, y1: yl - innerWall, wall0: yl - innerWall},
		{y0: yu + innerWall, y1: h - outerWall, wall0: yu},
	}
	sealedBand, sealedEnd := r.IntN(2), r.IntN(2)
	for bi, b := range bands {
		// Partition the band into rooms.
		var cuts []float64 // x of partition walls (left face)
		x := lx0
		for {
			rw := uniform(r, 3.5, 6.5)
			if x+rw+innerWall+2.8 > lx1 {
				break
			}
			x += rw
			cuts = append(cuts, x)
			x += innerWall
		}
		roomX0 := []float64{lx0}
		roomX1 := []float64{}
		for _, c := range cuts {
			roomX1 = append(roomX1, c)
			roomX0 = append(roomX0, c+innerWall)
		}
		roomX1 = append(roomX1, lx1)
		sealedRoom := -1
		if sealed && len(roomX0) > 1 {
			sealedRoom = 0
			if sealedEnd == 1 {
				sealedRoom = len(roomX0) - 1
			}
			if bi != sealedBand {
				sealedRoom = -1
			}
		}
		// Openings onto the corridor.
		var openings [][2]float64
		for i := range roomX0 {
			a, bx := roomX0[i], roomX1[i]
			if i == sealedRoom {
				continue
			}
			var width float64
			door := true
			if r.Float64() < 0.3 && bx-a > 3.5 {
				width = uniform(r, 1.8, math.Min(3.0, bx-a-1.0))
				door = false
			} else {
				width = uniform(r, 0.9, 1.3)
			}
			o0 := uniform(r, a+0.35, bx-0.35-width)
			openings = append(openings, [2]float64{o0, o0 + width})
			p.gaps = append(p.gaps, gap{x0: o0, y0: b.wall0, x1: o0 + width, y1: b.wall0 + innerWall, door: door})
		}
		p.wallWithGaps(true, b.wall0, b.wall0+innerWall, lx0, lx1, openings)
		// Partition walls, some with a door to the neighbour.
		for i, c := range cuts {
			var op [][2]float64
			if i != sealedRoom && i+1 != sealedRoom && r.Float64() < 0.4 && b.y1-b.y0 > 2.2 {
				dw := uniform(r, 0.9, 1.1)
				o0 := uniform(r, b.y0+0.3, b.y1-0.3-dw)
				op = append(op, [2]float64{o0, o0 + dw})
				p.gaps = append(p.gaps, gap{x0: c, y0: o0, x1: c + innerWall, y1: o0 + dw, door: true})
			}
			p.wallWithGaps(false, c, c+innerWall, b.y0, b.y1, op)
		}
		for i := range roomX0 {
			ar := area{x0: roomX0[i], y0: b.y0, x1: roomX1[i], y1: b.y1}
			if i != sealedRoom && b.y1-b.y0 > maxRoomDepth {
				ar = p.splitDeepRoom(r, ar)
			}
			if i == sealedRoom {
				// Line the vault so its inner faces sit far from any face
				// visible from outside.
				p.walls = append(p.walls,
					axisRect(ar.x0, ar.y0, ar.x1, ar.y0+sealedWallPad, ShapeWall),
					axisRect(ar.x0, ar.y1-sealedWallPad, ar.x1, ar.y1, ShapeWall),
					axisRect(ar.x0, ar.y0, ar.x0+sealedWallPad, ar.y1, ShapeWall),
					axisRect(ar.x1-sealedWallPad, ar.y0, ar.x1, ar.y1, ShapeWall),
				)
				ar = area{x0: ar.x0 + sealedWallPad, y0: ar.y0 + sealedWallPad, x1: ar.x1 - sealedWallPad, y1: ar.y1 - sealedWallPad, sealed: true}
				p.sealed = len(p.areas)
			}
			p.areas = append(p.areas, ar)
		}
	}
	p.areas = append(p.areas, p.corridor)
	for ai, ar := range p.areas {
		if ar == p.corridor {
			p.corridorFurniture(r)
			continue
		}
		n := 1 + r.IntN(3)
		if ai == p.sealed {
			n = 3
		}
		for range n {
			p.placeFurniture(r, ar)
		}
	}
	return p
}

// Depth of the rooms of a deep band (metres): a band deeper than
// maxRoomDepth (the buildings of 30 m and more) is cut across into rooms
// roomDepthMin..roomDepthMax deep. A room as deep as the band — 25 to 56 m
// at 80×60 and 150×100 m, 3.5–6.5 m wide — shows an agent inside it two
// long parallel walls and nothing that fixes its position along them: in
// TestLargeOfficeWorlds every refused agent stood in such a room and
// slid along it (ambiguity 0.86–1.00, best pose up to 1.6 m off). Offices
// are not built like that; default worlds (bands ≤ 7.2 m) are unchanged.
const (
	maxRoomDepth = 9.0
	roomDepthMin = 4.0
	roomDepthMax = 7.0
)

// splitDeepRoom cuts the room column ar across (walls along x) into rooms
// of office depth, each cross wall with a door at a random place, adds
// every room but the last to the plan's areas, and returns the last one
// (the caller adds it as it would the uncut column).
func (p *plan) splitDeepRoom(r *rand.Rand, ar area) area {
	y := ar.y0
	for {
		d := uniform(r, roomDepthMin, roomDepthMax)
		if y+d+innerWall+roomDepthMin > ar.y1 {
			break
		}
		c := y + d
		width := uniform(r, 0.9, 1.3)
		o0 := uniform(r, ar.x0+0.35, ar.x1-0.35-width)
		p.wallWithGaps(true, c, c+innerWall, ar.x0, ar.x1, [][2]float64{{o0, o0 + width}})
		p.gaps = append(p.gaps, gap{x0: o0, y0: c, x1: o0 + width, y1: c + innerWall, door: true})
		p.areas = append(p.areas, area{x0: ar.x0, y0: y, x1: ar.x1, y1: c})
		y = c + innerWall
	}
	ar.y0 = y
	return ar
}

// nearGap reports whether a point is within d of an opening, so furniture
// never blocks a door (agents must be able to see through it).
func (p *plan) nearGap(x, y, d float64) bool {
	for _, g := range p.gaps {
		cx := math.Max(g.x0, math.Min(x, g.x1))
		cy := math.Max(g.y0, math.Min(y, g.y1))
		if math.Hypot(x-cx, y-cy) < d {
			return true
		}
	}
	return false
}

// placeFurniture drops one desk, cabinet or L-shaped workstation into a room
// at a random pose, retrying when it would block a door or touch another
// piece. Rotations are arbitrary so rooms do not look alike.
func (p *plan) placeFurniture(r *rand.Rand, ar area) {
	for range 30 {
		pw, ph := uniform(r, 0.25, 0.8), uniform(r, 0.2, 0.45)
		ang := uniform(r, 0, math.Pi)
		if r.Float64() < 0.5 {
			ang = float64(r.IntN(2)) * math.Pi / 2
		}
		cx := uniform(r, ar.x0+0.5, ar.x1-0.5)
		cy := uniform(r, ar.y0+0.5, ar.y1-0.5)
		pieces := []Rect{{CX: cx, CY: cy, HalfW: pw, HalfH: ph, Angle: ang, Kind: ShapeFurniture}}
		if r.Float64() < 0.35 { // L shape: a wing at one end, perpendicular
			s, c := math.Sincos(ang)
			wl := uniform(r, 0.3, 0.6)
			lx, ly := pw-ph, ph+wl
			pieces = append(pieces, Rect{CX: cx + c*lx - s*ly, CY: cy + s*lx + c*ly, HalfW: ph, HalfH: wl, Angle: ang, Kind: ShapeFurniture})
		}
		if p.fits(pieces, ar, 0.15) {
			p.furniture = append(p.furniture, pieces...)
			return
		}
	}
}

// fits checks pieces stay inside the area with a margin, away from openings
// and from other furniture.
func (p *plan) fits(pieces []Rect, ar area, margin float64) bool {
	for _, pc := range pieces {
		x0, y0, x1, y1 := pc.bounds()
		if x0 < ar.x0+margin || y0 < ar.y0+margin || x1 > ar.x1-margin || y1 > ar.y1-margin {
			return false
		}
		for _, c := range pc.Corners() {
			if p.nearGap(c[0], c[1], 0.9) {
				return false
			}
		}
		if p.nearGap(pc.CX, pc.CY, 0.9) {
			return false
		}
		for _, o := range p.furniture {
			if math.Hypot(pc.CX-o.CX, pc.CY-o.CY) < math.Hypot(pc.HalfW, pc.HalfH)+math.Hypot(o.HalfW, o.HalfH)+0.6 {
				return false
			}
		}
	}
	return true
}

// corridorFurniture puts a few cabinets and plant pots against the corridor
// walls at random places, which is what breaks the corridor's translational
// symmetry.
func (p *plan) corridorFurniture(r *rand.Rand) {
	c := p.corridor
	n := 2 + r.IntN(3)
	for range n {
		for range 30 {
			lw, dp := uniform(r, 0.3, 0.9), uniform(r, 0.25, 0.45)
			x := uniform(r, c.x0+0.5, c.x1-0.5-lw)
			var pc Rect
			if r.IntN(2) == 0 {
				pc = axisRect(x, c.y0, x+lw, c.y0+dp, ShapeFurniture)
			} else {
				pc = axisRect(x, c.y1-dp, x+lw, c.y1, ShapeFurniture)
			}
			if p.fits([]Rect{pc}, area{x0: c.x0, y0: c.y0 - 0.2, x1: c.x1, y1: c.y1 + 0.2}, 0.1) {
				p.furniture = append(p.furniture, pc)
				break
			}
		}
	}
}

// corridorPlan is the deliberately ambiguous world: one long straight
// corridor whose walls carry identical pilasters at a 0.6 m pitch, shorter
// than the ±1 m search window, and nothing else. Agents stand where the
// corridor's ends are beyond lidar range (when the world is long enough), so
// shifting a scan along the corridor by the pitch explains it as well as the
// true pose does.
func corridorPlan(r *rand.Rand, w, h float64) *plan {
	p := &plan{width: w, height: h, sealed: -1}
	p.outerWalls()
	cw := uniform(r, 2.0, 2.6)
	cy := h / 2
	yl, yu := cy-cw/2, cy+cw/2
	p.walls = append(p.walls,
		axisRect(outerWall, yl-0.2, w-outerWall, yl, ShapeWall),
		axisRect(outerWall, yu, w-outerWall, yu+0.2, ShapeWall),
	)
	const pitch, pw, pd = 0.6, 0.2, 0.12
	for x := outerWall + uniform(r, 0.2, pitch); x+pw < w-outerWall; x += pitch {
		p.walls = append(p.walls,
			axisRect(x, yl, x+pw, yl+pd, ShapeWall),
			axisRect(x, yu-pd, x+pw, yu, ShapeWall),
		)
	}
	p.corridor = area{x0: outerWall, y0: yl + pd, x1: w - outerWall, y1: yu - pd}
	p.areas = []area{p.corridor}
	return p
}

// changed returns the plan as a later visitor sees it: every door closed by
// its leaf and every piece of furniture moved (shifted and turned) within
// reach of where it was. Walls stay, so localization still works; the map
// built from it contradicts the others, which the fusion gate must catch.
func (p *plan) changed(r *rand.Rand) *plan {
	q := *p
	q.walls = append([]Rect(nil), p.walls...)
	for _, g := range p.gaps {
		if !g.door {
			continue
		}
		leaf := axisRect(g.x0, g.y0, g.x1, g.y1, ShapeDoorLeaf)
		if g.x1-g.x0 > g.y1-g.y0 { // horizontal wall: thin in y
			leaf.HalfH = doorLeaf / 2
		} else {
			leaf.HalfW = doorLeaf / 2
		}
		q.walls = append(q.walls, leaf)
	}
	q.furniture = nil
	for _, f := range p.furniture {
		d := uniform(r, 0.6, 1.2)
		a := uniform(r, 0, 2*math.Pi)
		m := f
		m.CX += d * math.Cos(a)
		m.CY += d * math.Sin(a)
		m.Angle += uniform(r, -0.8, 0.8)
		// Keep moved furniture inside the building.
		m.CX = math.Min(math.Max(m.CX, outerWall+0.6), p.width-outerWall-0.6)
		m.CY = math.Min(math.Max(m.CY, outerWall+0.6), p.height-outerWall-0.6)
		q.furniture = append(q.furniture, m)
	}
	// New shelving and partitions wheeled in: long, thin and placed
	// anywhere there is room, they change what a corridor or room looks like
	// far more than a moved desk does.
	for range 2 + r.IntN(3) {
		for range 30 {
			ar := p.areas[r.IntN(len(p.areas))]
			if ar.sealed {
				continue
			}
			pc := Rect{
				CX: uniform(r, ar.x0+0.5, ar.x1-0.5), CY: uniform(r, ar.y0+0.5, ar.y1-0.5),
				HalfW: uniform(r, 0.6, 1.3), HalfH: uniform(r, 0.12, 0.25),
				Angle: uniform(r, 0, math.Pi), Kind: ShapeFurniture,
			}
			clear := true
			for _, c := range pc.Corners() {
				if !ar.contains(c[0], c[1]) {
					clear = false
				}
			}
			if clear {
				q.furniture = append(q.furniture, pc)
				break
			}
		}
	}
	return &q
}
