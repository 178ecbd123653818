package grid

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// ScanStats counts what IntegrateScan did with the beams of one scan, so that
// callers can tell a scan of garbage from a scan of walls.
type ScanStats struct {
	Hits     int // beams that ended on an obstacle inside the grid
	MaxRange int // beams with no return (>= RangeMax or +Inf): free space only
	Skipped  int // invalid beams: NaN, -Inf, below RangeMin
}

// IntegrateScan adds one scan taken from sensor (the sensor pose in the
// grid's parent frame) to the grid with the inverse sensor model: every cell
// a beam passes through gets LogOddsMiss, the cell it ends in gets
// LogOddsHit. Rays are traced with Bresenham's algorithm after clipping to
// the grid, so a sensor far outside the grid costs nothing and parts of beams
// outside the grid are dropped.
//
// Max-range beams clear space up to RangeMax and mark no hit, because "no
// return" is evidence of free space but not of an obstacle; invalid beams are
// skipped. Only the header and the pose can make it fail.
func (g *Grid) IntegrateScan(sensor slam.Pose2D, scan slam.LaserScan) (ScanStats, error) {
	var st ScanStats
	if err := sensor.Validate(); err != nil {
		return st, err
	}
	if err := scan.Validate(); err != nil {
		return st, err
	}
	res := g.meta.Resolution
	sx := (sensor.X - g.meta.Origin.X) / res
	sy := (sensor.Y - g.meta.Origin.Y) / res
	// Rotating the beam direction incrementally would drift; sin/cos per beam
	// is cheap next to the ray walk.
	for i, r := range scan.Ranges {
		rr := float64(r)
		hit := true
		switch {
		case math.IsNaN(rr) || rr < scan.RangeMin: // includes -Inf
			st.Skipped++
			continue
		case rr >= scan.RangeMax: // includes +Inf
			rr = scan.RangeMax
			hit = false
			st.MaxRange++
		}
		s, c := math.Sincos(sensor.Theta + scan.BeamAngle(i))
		ex := sx + rr*c/res
		ey := sy + rr*s/res
		if g.traceRay(sx, sy, ex, ey, hit) {
			st.Hits++
		}
	}
	return st, nil
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
	x, y := ix0, iy0
	err := adx - ady
	for {
		i := y*stride + x
		if x == ix1 && y == iy1 {
			if markEnd {
				cells[i] = ClampLogOdds(cells[i] + LogOddsHit)
			} else {
				cells[i] = ClampLogOdds(cells[i] + LogOddsMiss)
			}
			return markEnd
		}
		cells[i] = ClampLogOdds(cells[i] + LogOddsMiss)
		e2 := 2 * err
		if e2 > -ady {
			err -= ady
			x += sxStep
		}
		if e2 < adx {
			err += adx
			y += syStep
		}
	}
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
