package localslam

import (
	"fmt"
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Likelihood-field parameters. The fine field is exp(-d²/2σ²) of the distance
// d to the nearest occupied cell with σ of 2 cells: smooth enough for
// Gauss-Newton to see a slope from where the fine search leaves it, sharp
// enough to resolve a cell. The coarse field has cells of coarseFactor fine
// cells and σ of one coarse cell, which lets the correlative search step by
// a coarse cell without stepping over the true pose.
const (
	coarseFactor = 4
	fineSigma    = 2.0 // fine cells
	coarseSigma  = 1.0 // coarse cells
	// occupiedLogOdds: one clean hit (0.85) makes a cell occupied, a hit
	// cancelled by two misses does not (the threshold of internal/slam/match).
	occupiedLogOdds = 0.5
	// growMargin is how far beyond the observed bounds a growing working map
	// reaches, so that a robot driving on does not reallocate every scan.
	growMargin = 6.0 // metres
)

// kernel is a stamp: offsets in cells and the likelihood at each.
type kernel struct {
	dx, dy []int
	v      []float32
}

// newKernel tabulates exp(-d²/2σ²) within 3σ: the only transcendental math
// of the fields, done once.
func newKernel(sigma float64) kernel {
	r := int(math.Ceil(3 * sigma))
	var k kernel
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			d2 := float64(dx*dx + dy*dy)
			if d2 > 9*sigma*sigma {
				continue
			}
			k.dx, k.dy = append(k.dx, dx), append(k.dy, dy)
			k.v = append(k.v, float32(math.Exp(-d2/(2*sigma*sigma))))
		}
	}
	return k
}

var (
	fineKernel   = newKernel(fineSigma)
	coarseKernel = newKernel(coarseSigma)
)

// localMap is the working submap and its likelihood fields. Its origin lies
// on the coarse lattice (a multiple of coarseFactor·res), so coarse cells are
// whole blocks of fine cells and a grown map copies the old one at an
// integer offset.
type localMap struct {
	g        *grid.Grid
	w, h     int
	res      float64
	ox, oy   float64
	fine     []float32 // likelihood per fine cell
	stamped  []bool    // fine cell stamped into the fields
	cw, ch   int
	coarse   []float32 // likelihood per coarse cell
	cstamped []bool    // coarse cell stamped
}

// contains reports whether b lies inside the map, one cell in from its edge.
func (m *localMap) contains(b grid.Bounds) bool {
	if !b.NonEmpty {
		return true
	}
	return b.MinX >= m.ox+m.res && b.MinY >= m.oy+m.res &&
		b.MaxX <= m.ox+float64(m.w-1)*m.res && b.MaxY <= m.oy+float64(m.h-1)*m.res
}

// growMap returns a map covering old (if any) and b with growMargin around
// b, the old cells copied over and the fields rebuilt.
func growMap(old *localMap, b grid.Bounds, res float64, maxCells int64) (*localMap, error) {
	step := res * coarseFactor
	if old != nil {
		b.Add(old.ox, old.oy)
		b.Add(old.ox+float64(old.w)*res, old.oy+float64(old.h)*res)
	}
	x0 := math.Floor((b.MinX-growMargin)/step) * step
	y0 := math.Floor((b.MinY-growMargin)/step) * step
	x1 := math.Ceil((b.MaxX+growMargin)/step) * step
	y1 := math.Ceil((b.MaxY+growMargin)/step) * step
	w := int(math.Round((x1-x0)/step)) * coarseFactor
	h := int(math.Round((y1-y0)/step)) * coarseFactor
	if int64(w)*int64(h) > maxCells || w <= 0 || h <= 0 {
		return nil, fmt.Errorf("%w: scans span %.0fx%.0f m, %d cells at %g m, front-end limit %d", slam.ErrTooLarge, x1-x0, y1-y0, int64(w)*int64(h), res, maxCells)
	}
	g, err := grid.New(grid.Meta{Resolution: res, Width: w, Height: h, Origin: slam.Pose2D{X: x0, Y: y0}})
	if err != nil {
		return nil, err
	}
	m := &localMap{g: g, w: w, h: h, res: res, ox: x0, oy: y0, cw: w / coarseFactor, ch: h / coarseFactor}
	m.fine = make([]float32, w*h)
	m.stamped = make([]bool, w*h)
	m.coarse = make([]float32, m.cw*m.ch)
	m.cstamped = make([]bool, m.cw*m.ch)
	if old != nil {
		offX := int(math.Round((old.ox - x0) / res))
		offY := int(math.Round((old.oy - y0) / res))
		src, dst := old.g.LogOdds(), g.LogOdds()
		for y := range old.h {
			copy(dst[(y+offY)*w+offX:(y+offY)*w+offX+old.w], src[y*old.w:(y+1)*old.w])
		}
		m.rebuild()
	}
	return m, nil
}

// rebuild recomputes both fields from the occupied cells.
func (m *localMap) rebuild() {
	clear(m.fine)
	clear(m.stamped)
	clear(m.coarse)
	clear(m.cstamped)
	for i, l := range m.g.LogOdds() {
		if l > occupiedLogOdds {
			m.stamp(i%m.w, i/m.w)
		}
	}
}

// stampIfOccupied stamps cell (x, y) if it is occupied and not yet stamped.
func (m *localMap) stampIfOccupied(x, y int) {
	i := y*m.w + x
	if !m.stamped[i] && m.g.LogOdds()[i] > occupiedLogOdds {
		m.stamp(x, y)
	}
}

// stamp raises both fields to the kernel around the occupied cell (x, y):
// the field is the maximum of the kernels of all occupied cells, which is
// exp(-d²/2σ²) of the distance to the nearest one.
func (m *localMap) stamp(x, y int) {
	m.stamped[y*m.w+x] = true
	stampKernel(m.fine, m.w, m.h, x, y, &fineKernel)
	cx, cy := x/coarseFactor, y/coarseFactor
	if ci := cy*m.cw + cx; !m.cstamped[ci] {
		m.cstamped[ci] = true
		stampKernel(m.coarse, m.cw, m.ch, cx, cy, &coarseKernel)
	}
}

func stampKernel(field []float32, w, h, x, y int, k *kernel) {
	for j, v := range k.v {
		xx, yy := x+k.dx[j], y+k.dy[j]
		if xx < 0 || yy < 0 || xx >= w || yy >= h {
			continue
		}
		if i := yy*w + xx; field[i] < v {
			field[i] = v
		}
	}
}
