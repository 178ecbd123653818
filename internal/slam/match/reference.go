package match

import (
	"fmt"
	"math"
	"sync"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Field parameters. The fine field is a likelihood exp(-d²/2σ²) of the
// distance d to the nearest occupied cell with σ of 1.5 cells: sharp enough to
// resolve a cell, wide enough that sensor noise does not fall off it. The
// coarse field is the same at 4× the cell size, which is what lets the coarse
// search take 20 cm steps without stepping over the true pose.
const (
	coarseFactor = 4
	fineSigma    = 1.5 // cells
	coarseSigma  = 1.0 // coarse cells
	// globalFactor: the field a search without a guess starts on has
	// cells globalFactor × the coarse cells (40 cm at 5 cm maps).
	globalFactor = 2
	// globalSigma is the global field's σ in its cells: half a cell, so
	// that its likelihood reaches as far (0.6 m) as the coarse field's and
	// does not credit a wall landing a metre from any reference wall.
	globalSigma = 0.5
)

// occupiedLogOdds is the log-odds above which a cell counts as occupied for
// matching: one clean hit (0.85) qualifies, a hit cancelled by two misses
// does not.
const occupiedLogOdds = 0.5

// OccupiedCells returns how many cells of g a localization matches as walls
// (log-odds above occupiedLogOdds): what Options.MinPoints and
// Options.MinWidePoints count.
func OccupiedCells(g *grid.Grid) int {
	n := 0
	for _, l := range g.LogOdds() {
		if l > occupiedLogOdds {
			n++
		}
	}
	return n
}

// Reference is a grid prepared for matching: a fine and a coarse likelihood
// field, and for every cell the nearest occupied cell (for ICP). Building it
// costs a few milliseconds; LocalizeAll builds one per round and matches all
// of that round's agents against it concurrently (it is read-only).
type Reference struct {
	meta     grid.Meta
	occupied int
	// bounds is the mission map a pose may lie in: the searches are
	// clipped to it. It is meta, unless the reference was cropped to the
	// known part of a larger map (newCroppedReference).
	bounds grid.Meta

	fine    []float32 // likelihood, fine cells
	nearest []int32   // index of the nearest occupied fine cell, -1 if none
	dist2   []float32 // squared distance to it, in cells²
	normals []float32 // per fine cell: unit normal (x, y) of the wall through it, or (0, 0) at corners

	coarse       []float32 // search field, coarse cells: likelihood, −freePenalty on open floor
	cw, ch       int
	coarseRes    float64
	coarseOrigin [2]float64

	// The branch-and-bound fields (bnb.go), their stacks built on first use
	// and then shared, read-only, by every agent matched against this
	// reference: the coarse field, and the global field at twice its cell
	// size, which a search without a guess starts on.
	coarseBnB bnbField
	globalBnB bnbField
	mask      []bool // occupied fine cells
	free      []bool // confidently free fine cells (log-odds < freeLogOdds)
}

// bnbField is a likelihood field prepared for branch and bound.
type bnbField struct {
	v      []float32
	w, h   int
	res    float64
	origin [2]float64
	once   sync.Once
	stack  *precompStack
	build  func() // fills v, w, h when the field is made on demand
}

// precomp returns f's branch-and-bound stack, building it (and the field,
// if it is made on demand) once.
func (f *bnbField) precomp() *precompStack {
	f.once.Do(func() {
		if f.build != nil {
			f.build()
		}
		f.stack = newPrecompStack(f.v, f.w, f.h)
	})
	return f.stack
}

// freePenalty is the value of the search fields (coarse and global) in
// known open floor away from any wall: negative evidence. An agent's wall
// landing where the reference saw floor counts against the pose, a wall
// landing in space the reference never saw counts nothing. Without it, a
// thin real overlap (Willow's robot-2: 31 % of its walls seen by others)
// ranks below wrong poses that lay its walls over the reference's densest
// clutter (coarse means 0.31 at the truth against 0.44–0.46).
const freePenalty = 0.5

// downsampledField is the search field of mask and free (w×h fine cells)
// coarsened by factor: the likelihood of the nearest occupied cell (a cell
// is occupied when any fine cell of its block is; σ is sigma cells of the
// result, or sigma cells), lowered towards −freePenalty as it falls off the walls in cells
// whose block is at least half confidently free: l − freePenalty·(1 − l).
func downsampledField(mask, free []bool, w, h, factor int, sigma float64) ([]float32, int, int) {
	cw, ch := (w+factor-1)/factor, (h+factor-1)/factor
	cmask := make([]bool, cw*ch)
	nfree := make([]int32, cw*ch)
	for y := range h {
		for x := range w {
			i := (y/factor)*cw + x/factor
			if mask[y*w+x] {
				cmask[i] = true
			}
			if free[y*w+x] {
				nfree[i]++
			}
		}
	}
	cd2, _ := grid.DistanceTransform(cw, ch, cmask, nil, nil)
	v := likelihood(cd2, sigma)
	half := int32(factor * factor / 2)
	for i, n := range nfree {
		if n >= half {
			v[i] -= freePenalty * (1 - v[i])
		}
	}
	return v, cw, ch
}

// NewReference prepares g for matching. It fails with
// slam.ErrInsufficientData when g has no occupied cell at all.
func NewReference(g *grid.Grid) (*Reference, error) { return newReference(g, true) }

// newReference is NewReference; without search it prepares only the fine
// level (likelihood, nearest cell, wall normals), which is all that polishing
// a known pose uses (fineSearch, icp, evaluate), and leaves out the coarse
// search field, the free cells and the branch-and-bound fields: a fifth of
// the preparation, spared for each agent refinement (refineAll).
func newReference(g *grid.Grid, search bool) (*Reference, error) {
	m := g.Meta()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	cells := g.LogOdds()
	mask := make([]bool, len(cells))
	occ := 0
	for i, l := range cells {
		if l > occupiedLogOdds {
			mask[i] = true
			occ++
		}
	}
	if occ == 0 {
		return nil, fmt.Errorf("%w: reference map has no occupied cells", slam.ErrInsufficientData)
	}
	r := &Reference{meta: m, bounds: m, occupied: occ}
	r.dist2, r.nearest = grid.DistanceTransformWithin(m.Width, m.Height, mask, fineReach2(m.Resolution), nil, nil)
	r.fine = likelihood(r.dist2, fineSigma)
	r.normals = wallNormals(m.Width, m.Height, mask)

	// Coarse level: a cell is occupied when any fine cell in its block is.
	r.cw = (m.Width + coarseFactor - 1) / coarseFactor
	r.ch = (m.Height + coarseFactor - 1) / coarseFactor
	r.coarseRes = m.Resolution * coarseFactor
	r.coarseOrigin = [2]float64{m.Origin.X, m.Origin.Y}
	if !search {
		return r, nil
	}
	r.free = make([]bool, len(cells))
	for i, l := range cells {
		r.free[i] = l < freeLogOdds
	}
	r.coarse, _, _ = downsampledField(mask, r.free, m.Width, m.Height, coarseFactor, coarseSigma)
	r.mask = mask
	r.coarseBnB = bnbField{v: r.coarse, w: r.cw, h: r.ch, res: r.coarseRes, origin: r.coarseOrigin}
	r.globalBnB = bnbField{res: m.Resolution * coarseFactor * globalFactor, origin: r.coarseOrigin}
	r.globalBnB.build = func() {
		r.globalBnB.v, r.globalBnB.w, r.globalBnB.h = downsampledField(r.mask, r.free, m.Width, m.Height, coarseFactor*globalFactor, globalSigma)
	}
	return r, nil
}

// Meta returns the metadata of the reference grid.
func (r *Reference) Meta() grid.Meta { return r.meta }

// OccupiedCells returns how many cells of the reference are occupied.
func (r *Reference) OccupiedCells() int { return r.occupied }

// fineReach2 is the farthest squared distance, in cells², that anything
// reads off a fine reference's distance transform at resolution res: the
// fine likelihood (likelihoodLimit), the widest ICP gate (its first
// iteration) and the two-cell tests of evaluate and freeConflict. Beyond
// it only "farther" matters, so the transform need not be exact there.
func fineReach2(res float64) float64 {
	return max(float64(likelihoodLimit(fineSigma)), float64(icpGate2(res, 0)), freeClearance*freeClearance, 4)
}

// likelihoodLimit is the largest squared distance, in cells², at which
// likelihood's field is not zero: 3σ, rounded up to a whole cell².
func likelihoodLimit(sigma float64) int { return int(math.Ceil(9 * sigma * sigma)) }

// likelihood turns squared distances (in cells², integers from the exact
// distance transform) into exp(-d²/2σ²) through a lookup table; beyond 3σ the
// value is zero so far-away points add nothing.
func likelihood(dist2 []float32, sigma float64) []float32 {
	limit := likelihoodLimit(sigma)
	lut := make([]float32, limit+1)
	for i := range lut {
		lut[i] = float32(math.Exp(-float64(i) / (2 * sigma * sigma)))
	}
	out := make([]float32, len(dist2))
	for i, d := range dist2 {
		if d <= float32(limit) {
			out[i] = lut[int(d)]
		}
	}
	return out
}

// normalRadius is the half-size in cells of the window whose occupied cells
// define a wall's direction: 3 cells (15 cm at 5 cm) see a straight stretch
// of wall without rounding corners away.
const normalRadius = 3

// wallNormals estimates, for every occupied cell, the normal of the wall it
// belongs to from the principal axes of the occupied cells around it. Cells
// whose neighbourhood is not line-like (corners, clutter) get no normal, and
// ICP pairs them point-to-point instead.
func wallNormals(w, h int, mask []bool) []float32 {
	out := make([]float32, 2*w*h)
	for y := range h {
		for x := range w {
			if !mask[y*w+x] {
				continue
			}
			var n, sx, sy, sxx, sxy, syy float64
			for dy := -normalRadius; dy <= normalRadius; dy++ {
				yy := y + dy
				if yy < 0 || yy >= h {
					continue
				}
				for dx := -normalRadius; dx <= normalRadius; dx++ {
					xx := x + dx
					if xx < 0 || xx >= w || !mask[yy*w+xx] {
						continue
					}
					fx, fy := float64(dx), float64(dy)
					n++
					sx += fx
					sy += fy
					sxx += fx * fx
					sxy += fx * fy
					syy += fy * fy
				}
			}
			if n < 4 {
				continue
			}
			mx, my := sx/n, sy/n
			cxx, cxy, cyy := sxx/n-mx*mx, sxy/n-mx*my, syy/n-my*my
			// Eigen-decomposition of the 2×2 covariance.
			tr, det := cxx+cyy, cxx*cyy-cxy*cxy
			disc := math.Sqrt(math.Max(tr*tr/4-det, 0))
			l1, l2 := tr/2+disc, tr/2-disc // l1 >= l2
			if l1 <= 0 || l2 > 0.1*l1 {
				continue // not a line
			}
			// The normal is the eigenvector of the smaller eigenvalue.
			nx, ny := cxy, l2-cxx
			if math.Abs(nx)+math.Abs(ny) < 1e-12 {
				nx, ny = l2-cyy, cxy
			}
			norm := math.Hypot(nx, ny)
			if norm == 0 {
				continue
			}
			i := 2 * (y*w + x)
			out[i], out[i+1] = float32(nx/norm), float32(ny/norm)
		}
	}
	return out
}

// cropMargin is the unknown border kept around the known cells when a
// reference is cropped: beyond 1 m from any known cell every field is 0 (the
// likelihoods reach 0.6 m), so scores do not change.
const cropMargin = 1.0

// newCroppedReference prepares the known part of g (its bounding box of
// non-zero cells, plus cropMargin) for matching, with g's extent as the
// bounds the searches may use. On a large mission map whose agents have
// seen a small part, this is what keeps a round from spending its time on
// distance transforms of unknown space (a 150×100 m map at 5 cm is 6 M cells).
// search is newReference's.
func newCroppedReference(g *grid.Grid, search bool) (*Reference, error) {
	m := g.Meta()
	cells := g.LogOdds()
	x0, y0, x1, y1 := m.Width, m.Height, -1, -1
	for y := range m.Height {
		row := cells[y*m.Width : (y+1)*m.Width]
		for x, v := range row {
			if v != 0 {
				x0, x1 = min(x0, x), max(x1, x)
				y0, y1 = min(y0, y), max(y1, y)
			}
		}
	}
	if x1 < 0 {
		return newReference(g, search) // nothing known: newReference says so
	}
	pad := int(math.Ceil(cropMargin / m.Resolution))
	x0, y0 = max(x0-pad, 0), max(y0-pad, 0)
	x1, y1 = min(x1+pad, m.Width-1), min(y1+pad, m.Height-1)
	cm := grid.Meta{Resolution: m.Resolution, Width: x1 - x0 + 1, Height: y1 - y0 + 1,
		Origin: slam.Pose2D{X: m.Origin.X + float64(x0)*m.Resolution, Y: m.Origin.Y + float64(y0)*m.Resolution}}
	sub, err := grid.New(cm)
	if err != nil {
		return nil, err
	}
	dst := sub.LogOdds()
	for y := y0; y <= y1; y++ {
		copy(dst[(y-y0)*cm.Width:(y-y0+1)*cm.Width], cells[y*m.Width+x0:y*m.Width+x1+1])
	}
	r, err := newReference(sub, search)
	if err != nil {
		return nil, err
	}
	r.bounds = m
	return r, nil
}
