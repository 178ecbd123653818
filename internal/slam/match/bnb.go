package match

import (
	"cmp"
	"context"
	"math"
	"slices"

	"github.com/slammesh/slammesh/internal/slam"
)

// Branch-and-bound correlative search (Olson 2009, "Real-time correlative
// scan matching", §III-C; Hess et al. 2016, "Real-time loop closure in 2D
// LIDAR SLAM", §V, whose fast_correlative_scan_matcher_2d.cc is the model).
//
// The leaves are the poses of the coarse search: translations in whole
// coarse cells (20 cm at 5 cm maps) around a centre, and rotations in steps
// that move the far points by about one coarse cell as they turn about the
// submap's pivot (pointSets.pivot). A leaf's score is
// the mean coarse likelihood under the agent's points. An inner node of
// height h stands for the 2^h × 2^h translations starting at its offset, for
// one rotation; its bound is the mean, over the points, of the maximum of the
// likelihood over the 2^h × 2^h cells the point can reach: precomputed once
// per reference as a stack of max-filtered grids (level h from level h−1 by
// the maximum of four shifted reads). The bound is never below any leaf
// under the node, so a node whose bound is below the threshold is pruned
// without losing a leaf above it.
//
// Unlike Cartographer, which wants the single best pose, the search keeps
// every distinct peak scoring at least peakRatio of the best leaf found so
// far: the runner-up far from the best is what the ambiguity test and the
// error message need.
const (
	// maxDepth is the height of the top level: 2^6 coarse cells = 12.8 m at
	// 5 cm maps, enough that the top level of a 150 m map has a few hundred
	// nodes per rotation.
	maxDepth = 6
	// peakRatio: leaves below this fraction of the best leaf so far are
	// pruned. Coarse ambiguities stay below refined ones (the coarse field
	// is wider), so peaks that could still reach MaxAmbiguity after
	// refinement are kept.
	peakRatio = 0.8
	// globalPeakRatio is peakRatio for the first stage of a search
	// without a guess, on the global field: its cells are twice as wide,
	// so it ranks the right pose less sharply against a wrong one (Willow's
	// robot-2, a 31 % overlap, scores 0.83 of a wrong pose there).
	globalPeakRatio = 0.8
	// minCoarseScore is the floor of the threshold, so that a submap with no
	// overlap at all still ends quickly (its best leaf is reported).
	minCoarseScore = 0.08
	// maxPeaks bounds the distinct peaks kept (the lowest is dropped).
	maxPeaks = 12
	// bnbMaxPoints caps the points the search scores: the coarse points,
	// thinned evenly. The mean likelihood of a few hundred points spread
	// over the submap ranks poses as well as thousands, at a fraction of
	// the cost.
	bnbMaxPoints = 200
)

// precompStack is the max-filtered coarse field at heights 0..maxDepth:
// level h holds, for every cell (x, y) with x, y ≥ −(2^h − 1), the maximum
// of the coarse likelihood over [x, x+2^h) × [y, y+2^h).
type precompStack struct {
	levels [maxDepth + 1]precompGrid
}

// precompGrid is one level of the stack, stored with a one-cell ring of
// zeros around it: a read clamps its coordinates into the ring instead of
// branching on them (whatever lies outside the field scores 0), which keeps
// the inner loop of the search free of unpredictable branches.
type precompGrid struct {
	off  int // 2^h − 1 + 1: cell (−off, −off) is stored at index 0
	w, h int
	v    []float32
}

func (g *precompGrid) at(x, y int) float32 {
	x = min(max(x+g.off, 0), g.w-1)
	y = min(max(y+g.off, 0), g.h-1)
	return g.v[y*g.w+x]
}

func newPrecompStack(coarse []float32, cw, ch int) *precompStack {
	s := &precompStack{}
	base := precompGrid{off: 1, w: cw + 2, h: ch + 2}
	base.v = make([]float32, base.w*base.h)
	for y := range ch {
		copy(base.v[(y+1)*base.w+1:], coarse[y*cw:(y+1)*cw])
	}
	s.levels[0] = base
	for lv := 1; lv <= maxDepth; lv++ {
		prev := &s.levels[lv-1]
		half := 1 << (lv - 1)
		span := 1<<lv - 1
		g := precompGrid{off: span + 1, w: cw + span + 2, h: ch + span + 2}
		g.v = make([]float32, g.w*g.h)
		for y := -span; y < ch; y++ {
			row := g.v[(y+g.off)*g.w:]
			for x := -span; x < cw; x++ {
				row[x+g.off] = max(prev.at(x, y), prev.at(x+half, y), prev.at(x, y+half), prev.at(x+half, y+half))
			}
		}
		s.levels[lv] = g
	}
	return s
}

// searchSpace is the set of leaves: the headings thetas, and translations
// that put the submap's point placed at centre + (i, j)·res for i in
// [x0, x1], j in [y0, y1].
type searchSpace struct {
	cx, cy         float64
	x0, x1, y0, y1 int
	thetas         []float64
	// placed is the agent's origin for a window around a guess (the
	// window is one of map_from_agent), and pivot for a whole-map search
	// (the cells may lie anywhere in the map, wherever the origin falls).
	placed point
	// pivot is pointSets.pivot: leaves are told apart where it lands.
	pivot point
}

// bnbNode is a node of the search: rotation k, offset (x, y), height h.
type bnbNode struct {
	k, x, y int
	score   float32
}

// bnbSearch holds one search's state.
type bnbSearch struct {
	f     *bnbField
	stack *precompStack
	sp    searchSpace
	scans [][]int32 // per rotation: discretized points (x, y, x, y, ...) at offset 0
	boxes [][4]int  // per rotation: min x, max x, min y, max y of scans
	invN  float32
	ratio float32 // peakRatio or globalPeakRatio
	best  float32
	kth   float32
	peaks []peak
	// children holds, per level, the children being searched there.
	children [maxDepth][4]bnbNode
	visited  int
}

// thinPoints returns at most n of pts, evenly spread over the slice (the
// points come row by row, so this keeps them spread over the submap).
func thinPoints(pts []point, n int) []point {
	if len(pts) <= n {
		return pts
	}
	out := make([]point, n)
	for i := range out {
		out[i] = pts[i*len(pts)/n]
	}
	return out
}

// branchAndBound returns the distinct peaks of the search space on field f,
// best first; none if no leaf reached minCoarseScore.
func branchAndBound(ctx context.Context, f *bnbField, pts []point, sp searchSpace, ratio float32) ([]peak, error) {
	st := f.precomp()
	b := &bnbSearch{f: f, stack: st, sp: sp, invN: 1 / float32(len(pts)), ratio: ratio}
	inv := 1 / f.res
	b.scans = make([][]int32, len(sp.thetas))
	b.boxes = make([][4]int, len(sp.thetas))
	for k, th := range sp.thetas {
		s, c := math.Sincos(th)
		d := make([]int32, 0, 2*len(pts))
		for _, p := range pts {
			px, py := p.X-sp.placed.X, p.Y-sp.placed.Y
			x := sp.cx + c*px - s*py
			y := sp.cy + s*px + c*py
			fx := math.Floor((x - f.origin[0]) * inv)
			fy := math.Floor((y - f.origin[1]) * inv)
			// Points far outside the map score 0 at every offset; clamping
			// keeps the int32 arithmetic safe without changing any score
			// (the window is at most a map's size beyond it).
			fx = math.Max(math.Min(fx, 1<<24), -(1 << 24))
			fy = math.Max(math.Min(fy, 1<<24), -(1 << 24))
			d = append(d, int32(fx), int32(fy))
		}
		b.scans[k] = d
		box := [4]int{math.MaxInt, math.MinInt, math.MaxInt, math.MinInt}
		for i := 0; i+1 < len(d); i += 2 {
			box = [4]int{min(box[0], int(d[i])), max(box[1], int(d[i])), min(box[2], int(d[i+1])), max(box[3], int(d[i+1]))}
		}
		b.boxes[k] = box
	}
	top := maxDepth
	step := 1 << top
	var cands []bnbNode
	for k := range sp.thetas {
		for x := sp.x0; x <= sp.x1; x += step {
			for y := sp.y0; y <= sp.y1; y += step {
				n := bnbNode{k: k, x: x, y: y}
				n.score = b.score(top, n)
				cands = append(cands, n)
			}
		}
	}
	if err := b.descend(ctx, top, cands); err != nil {
		return nil, err
	}
	slices.SortStableFunc(b.peaks, func(a, c peak) int { return cmp.Compare(c.score, a.score) })
	return b.peaks, nil
}

func (b *bnbSearch) score(level int, n bnbNode) float32 {
	g := &b.stack.levels[level]
	d := b.scans[n.k]
	v, w, h := g.v, g.w, g.h
	ox, oy := n.x+g.off, n.y+g.off
	var sum float32
	for i := 0; i+1 < len(d); i += 2 {
		x := min(max(int(d[i])+ox, 0), w-1)
		y := min(max(int(d[i+1])+oy, 0), h-1)
		sum += v[y*w+x]
	}
	return sum * b.invN
}

// score4 scores the four children of node n (offsets (0, 0), (0, half),
// (half, 0), (half, half)) on level in one pass over the points: the
// clamped coordinates of a point are shared by its four reads.
func (b *bnbSearch) score4(level int, n bnbNode, half int, out *[4]float32) {
	g := &b.stack.levels[level]
	d := b.scans[n.k]
	v, w, h := g.v, g.w, g.h
	ox, oy := n.x+g.off, n.y+g.off
	var s0, s1, s2, s3 float32
	if bb := b.boxes[n.k]; bb[0]+ox >= 0 && bb[1]+ox+half < w && bb[2]+oy >= 0 && bb[3]+oy+half < h {
		// Every read lies inside the level: no clamping.
		for i := 0; i+1 < len(d); i += 2 {
			a := (int(d[i+1])+oy)*w + int(d[i]) + ox
			s0 += v[a]
			s1 += v[a+half*w]
			s2 += v[a+half]
			s3 += v[a+half*w+half]
		}
	} else {
		for i := 0; i+1 < len(d); i += 2 {
			x, y := int(d[i])+ox, int(d[i+1])+oy
			xa, xb := min(max(x, 0), w-1), min(max(x+half, 0), w-1)
			ya, yb := min(max(y, 0), h-1)*w, min(max(y+half, 0), h-1)*w
			s0 += v[ya+xa]
			s1 += v[yb+xa]
			s2 += v[ya+xb]
			s3 += v[yb+xb]
		}
	}
	*out = [4]float32{s0 * b.invN, s1 * b.invN, s2 * b.invN, s3 * b.invN}
}

func (b *bnbSearch) threshold() float32 {
	return max(minCoarseScore, b.ratio*b.best, b.kth)
}

func (b *bnbSearch) descend(ctx context.Context, level int, cands []bnbNode) error {
	slices.SortFunc(cands, func(a, c bnbNode) int { return cmp.Compare(c.score, a.score) })
	for _, n := range cands {
		if n.score < b.threshold() {
			break // sorted: every later candidate is lower
		}
		if level == 0 {
			b.leaf(n)
			continue
		}
		b.visited++
		if b.visited%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		half := 1 << (level - 1)
		var four [4]float32
		b.score4(level-1, n, half, &four)
		// The children of a node are searched before its next sibling
		// makes its own, so one buffer per level serves the whole search.
		children := b.children[level-1][:0]
		for i, d := range [4][2]int{{0, 0}, {0, half}, {half, 0}, {half, half}} {
			if n.x+d[0] > b.sp.x1 || n.y+d[1] > b.sp.y1 {
				continue
			}
			children = append(children, bnbNode{k: n.k, x: n.x + d[0], y: n.y + d[1], score: four[i]})
		}
		if err := b.descend(ctx, level-1, children); err != nil {
			return err
		}
	}
	return nil
}

// leaf records a leaf: it joins the peak it is not distinct from (keeping
// the higher pose), or starts a new one.
func (b *bnbSearch) leaf(n bnbNode) {
	b.best = max(b.best, n.score)
	res := b.f.res
	th := b.sp.thetas[n.k]
	s, c := math.Sincos(th)
	pl := b.sp.placed
	p := peak{
		pose: slam.Pose2D{
			X:     b.sp.cx + float64(n.x)*res - (c*pl.X - s*pl.Y),
			Y:     b.sp.cy + float64(n.y)*res - (s*pl.X + c*pl.Y),
			Theta: slam.NormalizeAngle(th),
		},
		score: float64(n.score),
	}
	for i := range b.peaks {
		if !distinct(b.peaks[i].pose, p.pose, b.sp.pivot) {
			if p.score > b.peaks[i].score {
				b.peaks[i] = p
				b.updateKth()
			}
			return
		}
	}
	b.peaks = append(b.peaks, p)
	b.updateKth()
	if len(b.peaks) > 4*maxPeaks {
		// Drop the peaks the threshold has overtaken, then the lowest.
		th := float64(b.threshold())
		b.peaks = slices.DeleteFunc(b.peaks, func(q peak) bool { return q.score < th })
		if len(b.peaks) > maxPeaks {
			slices.SortStableFunc(b.peaks, func(a, c peak) int { return cmp.Compare(c.score, a.score) })
			b.peaks = b.peaks[:maxPeaks]
		}
	}
}

func (b *bnbSearch) updateKth() {
	if len(b.peaks) < candidates {
		return
	}
	var top [candidates]float32
	for _, q := range b.peaks {
		s := float32(q.score)
		if s <= top[candidates-1] {
			continue
		}
		i := candidates - 1
		for i > 0 && top[i-1] < s {
			top[i] = top[i-1]
			i--
		}
		top[i] = s
	}
	b.kth = top[candidates-1]
}
