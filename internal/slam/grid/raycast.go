package grid

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// DefaultUsableRange is how far a no-return beam clears free space when the
// caller does not say, in metres. "No return" only proves that nothing
// reflected within the sensor's reach under good conditions; far out, a beam
// can miss a dark or glancing wall, so clearing all the way to range_max
// (81.83 m for the SICK of the Intel log) would erase real walls and size
// submaps by the sensor rather than by the building. 10 m is the usual
// "usable range" of indoor 2D SLAM front ends (GMapping's maxUrange, Hector's
// laser_max_dist, Cartographer's missing_data_ray_length are set so).
const DefaultUsableRange = 10.0

// ScanStats counts what IntegrateScan did with the beams of one scan, so that
// callers can tell a scan of garbage from a scan of walls.
type ScanStats struct {
	Hits     int // beams that ended on an obstacle inside the grid
	MaxRange int // no-return beams (>= RangeMax or +Inf): free space only, up to the usable range
	Skipped  int // beams carrying no information: NaN, -Inf, below RangeMin
}

// Inserter integrates scans into grids with the inverse sensor model. It
// caches the beam directions (sine and cosine per beam) of the last scan
// geometry it saw, so a stream of scans from one sensor costs no
// trigonometry per beam; an Inserter is therefore not safe for concurrent
// use. The zero value uses DefaultUsableRange.
type Inserter struct {
	// UsableRange (metres, > 0; 0 selects DefaultUsableRange) bounds the
	// free space a no-return beam clears: up to min(UsableRange, RangeMax).
	// Beams that return are integrated in full whatever their length.
	UsableRange float64

	beams Beams
}

// Beams holds the unit direction of every beam of one scan geometry in the
// sensor frame, computed once (one Sincos per beam) and reused for every
// scan with the same AngleMin, AngleIncrement and beam count.
type Beams struct {
	angleMin, angleInc float64
	Cos, Sin           []float64
}

// For returns the directions of scan's beams, recomputing them only when
// the geometry differs from the cached one. The slices are owned by b.
func (b *Beams) For(scan slam.LaserScan) (cos, sin []float64) {
	n := len(scan.Ranges)
	if len(b.Cos) != n || b.angleMin != scan.AngleMin || b.angleInc != scan.AngleIncrement {
		b.angleMin, b.angleInc = scan.AngleMin, scan.AngleIncrement
		b.Cos, b.Sin = make([]float64, n), make([]float64, n)
		for i := range n {
			b.Sin[i], b.Cos[i] = math.Sincos(scan.BeamAngle(i))
		}
	}
	return b.Cos, b.Sin
}

func (in *Inserter) usable() float64 {
	if in.UsableRange > 0 && !math.IsInf(in.UsableRange, 0) {
		return in.UsableRange
	}
	return DefaultUsableRange
}

// Beam classes of the real-sensor model (see IntegrateScan).
const (
	beamSkip = iota
	beamHit
	beamNoReturn
)

// classify returns how a beam of range r is treated and how far it reaches.
func classify(r float32, scan slam.LaserScan, usable float64) (kind int, reach float64) {
	rr := float64(r)
	switch {
	case math.IsNaN(rr) || rr < scan.RangeMin: // includes -Inf
		return beamSkip, 0
	case rr >= scan.RangeMax: // includes +Inf
		return beamNoReturn, min(usable, scan.RangeMax)
	}
	return beamHit, rr
}

// IntegrateScan adds one scan with a zero Inserter (DefaultUsableRange); see
// Inserter.Integrate.
func (g *Grid) IntegrateScan(sensor slam.Pose2D, scan slam.LaserScan) (ScanStats, error) {
	var in Inserter
	return in.Integrate(g, sensor, scan)
}

// Integrate adds one scan taken from sensor (the sensor pose in the grid's
// parent frame) to g with the inverse sensor model: every cell a beam passes
// through gets LogOddsMiss, the cell it ends in gets LogOddsHit. Rays are
// traced with Bresenham's algorithm after clipping to the grid, so a sensor
// far outside the grid costs nothing and parts of beams outside the grid are
// dropped.
//
// A reading at or beyond RangeMax (+Inf included) is a no-return beam: it
// marks no obstacle and clears free space only up to min(UsableRange,
// RangeMax). NaN, -Inf and readings below RangeMin carry no information and
// are skipped: ROS REP 117 reserves NaN for an erroneous measurement, which
// says nothing about the space along the beam (simulated dropouts are NaN
// too), so it must not clear anything either. Only the header and the pose
// can make it fail.
func (in *Inserter) Integrate(g *Grid, sensor slam.Pose2D, scan slam.LaserScan) (ScanStats, error) {
	var st ScanStats
	if err := sensor.Validate(); err != nil {
		return st, err
	}
	if err := scan.Validate(); err != nil {
		return st, err
	}
	usable := in.usable()
	cos, sin := in.beams.For(scan)
	ps, pc := math.Sincos(sensor.Theta)
	res := g.meta.Resolution
	sx := (sensor.X - g.meta.Origin.X) / res
	sy := (sensor.Y - g.meta.Origin.Y) / res
	for i, r := range scan.Ranges {
		kind, reach := classify(r, scan, usable)
		switch kind {
		case beamSkip:
			st.Skipped++
			continue
		case beamNoReturn:
			st.MaxRange++
		}
		// Beam direction in the parent frame: the cached sensor-frame
		// direction rotated by the heading (exact, no drift).
		c := pc*cos[i] - ps*sin[i]
		s := ps*cos[i] + pc*sin[i]
		ex := sx + reach*c/res
		ey := sy + reach*s/res
		if g.traceRay(sx, sy, ex, ey, kind == beamHit) {
			st.Hits++
		}
	}
	return st, nil
}

// Bounds is an axis-aligned rectangle in metres; the zero value is empty.
type Bounds struct {
	MinX, MinY, MaxX, MaxY float64
	NonEmpty               bool
}

// Add grows b to contain the point (x, y).
func (b *Bounds) Add(x, y float64) {
	if !b.NonEmpty {
		*b = Bounds{MinX: x, MinY: y, MaxX: x, MaxY: y, NonEmpty: true}
		return
	}
	b.MinX, b.MinY = min(b.MinX, x), min(b.MinY, y)
	b.MaxX, b.MaxY = max(b.MaxX, x), max(b.MaxY, y)
}

// Union grows b to contain o.
func (b *Bounds) Union(o Bounds) {
	if o.NonEmpty {
		b.Add(o.MinX, o.MinY)
		b.Add(o.MaxX, o.MaxY)
	}
}

// Observed returns the rectangle of what a scan taken from sensor actually
// observes, which is what Integrate can change: the sensor position, the end
// points of returned beams, and no-return beams only up to min(UsableRange,
// RangeMax). Skipped beams add nothing. It validates like Integrate.
func (in *Inserter) Observed(sensor slam.Pose2D, scan slam.LaserScan) (Bounds, error) {
	var b Bounds
	b.Add(sensor.X, sensor.Y)
	err := in.EachBeam(sensor, scan, func(c, s, reach float64, _ bool) {
		b.Add(sensor.X+reach*c, sensor.Y+reach*s)
	})
	if err != nil {
		return Bounds{}, err
	}
	return b, nil
}

// EachBeam calls f, in beam order, for every beam of scan taken from
// sensor that Integrate traces: its unit direction (c, s) in the parent
// frame, how far it reaches in metres (its range, or for a no-return beam
// min(UsableRange, RangeMax)) and whether it ends in a hit. Skipped beams
// (NaN, −Inf, below RangeMin) are not passed. It validates like Integrate.
func (in *Inserter) EachBeam(sensor slam.Pose2D, scan slam.LaserScan, f func(c, s, reach float64, hit bool)) error {
	if err := sensor.Validate(); err != nil {
		return err
	}
	if err := scan.Validate(); err != nil {
		return err
	}
	usable := in.usable()
	cos, sin := in.beams.For(scan)
	ps, pc := math.Sincos(sensor.Theta)
	for i, r := range scan.Ranges {
		kind, reach := classify(r, scan, usable)
		if kind == beamSkip {
			continue
		}
		f(pc*cos[i]-ps*sin[i], ps*cos[i]+pc*sin[i], reach, kind == beamHit)
	}
	return nil
}

// miss lowers cell i by LogOddsMiss. A miss only lowers a cell, so only
// the lower clamp can bite: the value ClampLogOdds gives, with one
// comparison fewer.
func miss(cells []float32, i int) {
	if v := cells[i] + LogOddsMiss; v > -Clamp {
		cells[i] = v
	} else {
		cells[i] = -Clamp
	}
}

// traceRay updates the cells on the segment from (x0,y0) to (x1,y1), given in
// fractional cell coordinates. It reports whether a hit was marked.
func (g *Grid) traceRay(x0, y0, x1, y1 float64, hit bool) bool {
	w, h := float64(g.meta.Width), float64(g.meta.Height)
	// Liang–Barsky clipping against [0,w)x[0,h); the small inset keeps the
	// clipped end strictly inside so floor() stays a valid index.
	const inset = 1e-9
	t0, t1 := 0.0, 1.0
	dx, dy := x1-x0, y1-y0
	clip := func(p, q float64) bool {
		if p == 0 {
			return q >= 0
		}
		r := q / p
		if p < 0 {
			if r > t1 {
				return false
			}
			if r > t0 {
				t0 = r
			}
		} else {
			if r < t0 {
				return false
			}
			if r < t1 {
				t1 = r
			}
		}
		return true
	}
	if !clip(-dx, x0) || !clip(dx, w-inset-x0) || !clip(-dy, y0) || !clip(dy, h-inset-y0) {
		return false
	}
	endInside := t1 == 1
	cx0, cy0 := x0+t0*dx, y0+t0*dy
	cx1, cy1 := x0+t1*dx, y0+t1*dy
	ix0, iy0 := clampIndex(cx0, g.meta.Width), clampIndex(cy0, g.meta.Height)
	ix1, iy1 := clampIndex(cx1, g.meta.Width), clampIndex(cy1, g.meta.Height)

	markEnd := hit && endInside
	stride := g.meta.Width
	cells := g.logOdds
	// Bresenham over all octants.
	adx, ady := ix1-ix0, iy1-iy0
	sxStep, syStep := 1, 1
	if adx < 0 {
		adx, sxStep = -adx, -1
	}
	if ady < 0 {
		ady, syStep = -ady, -1
	}
	// The walk moves the cell index itself (a step in y is a row): the same
	// cells as Add on (x, y), for less work in the loop that dominates scan
	// integration.
	i, end := iy0*stride+ix0, iy1*stride+ix1
	rowStep := syStep * stride
	err := adx - ady
	switch {
	case adx > ady:
		// Every step moves along x (2·err stays above -ady), so only the
		// step in y is a choice: one unpredictable branch per cell, not two.
		for i != end {
			miss(cells, i)
			if 2*err < adx {
				err += adx
				i += rowStep
			}
			err -= ady
			i += sxStep
		}
	case ady > adx:
		// Likewise every step moves along y (2·err stays below adx).
		for i != end {
			miss(cells, i)
			if 2*err > -ady {
				err -= ady
				i += sxStep
			}
			err += adx
			i += rowStep
		}
	default:
		for i != end {
			miss(cells, i)
			e2 := 2 * err
			if e2 > -ady {
				err -= ady
				i += sxStep
			}
			if e2 < adx {
				err += adx
				i += rowStep
			}
		}
	}
	if markEnd {
		cells[i] = ClampLogOdds(cells[i] + LogOddsHit)
	} else {
		cells[i] = ClampLogOdds(cells[i] + LogOddsMiss)
	}
	return markEnd
}

func clampIndex(v float64, n int) int {
	i := int(math.Floor(v))
	if i < 0 {
		return 0
	}
	if i >= n {
		return n - 1
	}
	return i
}
