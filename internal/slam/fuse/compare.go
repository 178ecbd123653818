package fuse

import (
	"math"
	"sync"

	"github.com/slammesh/slammesh/internal/slam/grid"
)

// window is an input warped into a map's frame: bw×bh cells row-major from
// map cell (x0, y0), the input's bounding box; 0 where no known input cell
// lies. v is nil when the input covers no cell of the map.
type window struct {
	x0, y0, bw, bh int
	v              []float32
}

// buffers are the per-cell working memory of compareAndAdd and of a
// contributor layer, taken from bufferPool for one call and put back:
// allocated afresh for each input they were two thirds of an office
// merge's allocations, and the runtime's work for them (fresh pages to
// fault in and clear, the collections they set off) cost more than the
// comparison itself.
type buffers struct {
	// so, sv and sd are summed-area tables over the window being compared
	// ((bw+1)×(bh+1), see boxSum): of its structure, of the cells that
	// voted and of those that disagreed.
	so, sv, sd []int32
	// against holds the window indices of the disagreeing cells, in
	// row-major order.
	against []int32
	best    []float32 // the attribution's, per map cell
}

// bufferPool holds the buffers between calls, of one merge and the next.
// They stay as large as the largest window (or map) they served, memory a
// merge allocated anyway; an idle service's are dropped by the collector.
var bufferPool = sync.Pool{New: func() any { return new(buffers) }}

// resize returns s with length n, on s's array when it is large enough;
// the contents are left as they are.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// compareAndAdd warps in into a window over out's covered box (in scratch
// when it is large enough), counts agreement against out in buf's memory,
// then adds it, and returns the window. Counting happens before adding so
// an input is never compared with itself. It reads the window twice: once
// for the structure's summed-area table, once for the vote, which builds
// the per-region test's tables as it goes. An input the gates of opts
// refuse gets the see-through test when st is not nil (st.earlier are the
// inputs already in out, whose beams it may trace) and is judged again
// without the glass it finds.
//
// A shared cell is one where both grids are confident (|l| >= Confidence).
// It agrees when both say occupied or both say free. An occupied/free clash
// is forgiven when the grid saying free is not confidently free within
// boundaryTolerance cells of it (one, when both sides were made at out's
// resolution): that is a wall seen half a cell apart, not a contradiction,
// and counting it would make consistency measure sensor noise instead of
// change. coarse holds, per cell of out, how many of out's cells wide the
// coarsest grid fused into that cell had its cells (see cellsWide); nil or
// 0 means out's own.
func compareAndAdd(out *grid.Grid, in Input, coarse []uint8, st *seeThroughState, opts Options, scratch []float32, buf *buffers) (AgentReport, window) {
	ar := AgentReport{Agent: in.Agent, Consistency: 1}
	var w warper
	m := out.Meta()
	w.init(m, in.Submap, in.Pose)
	if w.empty {
		return ar, window{}
	}
	bw, bh := w.x1-w.x0+1, w.y1-w.y0+1
	n := bw * bh
	scratch = resize(scratch, n)
	clear(scratch)
	w.window(scratch)
	win := window{x0: w.x0, y0: w.y0, bw: bw, bh: bh, v: scratch}
	cells := out.LogOdds()
	conf := opts.Confidence
	if opts.MinOverlapCells > 0 && !confidentIn(cells, m.Width, &w, conf) {
		// The map knows nothing confidently under the input (the map as
		// allocated, or ground nobody has seen yet): no cell can vote, so
		// the input is only added, and is not judged.
		addWindow(cells, m.Width, scratch, &w)
		return ar, win
	}
	stride := bw + 1
	buf.so = resize(buf.so, stride*(bh+1))
	structureTable(buf.so, cells, m.Width, scratch, w.x0, w.y0, bw, bh, conf)
	// freeAround: the grid is confidently free in the whole neighbourhood
	// of (x, y) that the boundary tolerance spans (3×3 at one resolution).
	kIn := cellsWide(in.Submap.Meta().Resolution, m.Resolution)
	freeAround := func(get func(x, y int) float32, x, y int) bool {
		k := kIn
		if coarse != nil {
			k = max(k, coarse[y*m.Width+x])
		}
		tol := boundaryTolerance(k)
		for dy := -tol; dy <= tol; dy++ {
			for dx := -tol; dx <= tol; dx++ {
				if get(x+dx, y+dy) > -conf {
					return false
				}
			}
		}
		return true
	}
	getOut := func(x, y int) float32 { return out.At(x, y) }
	getIn := func(x, y int) float32 {
		if x < w.x0 || y < w.y0 || x > w.x1 || y > w.y1 {
			return 0
		}
		return scratch[(y-w.y0)*bw+(x-w.x0)]
	}
	// The vote, with the summed-area tables of the cells that voted and
	// disagreed (the per-region test's input) built row by row as it goes.
	buf.sv, buf.sd = resize(buf.sv, stride*(bh+1)), resize(buf.sd, stride*(bh+1))
	sv, sd := buf.sv, buf.sd
	clear(sv[:stride])
	clear(sd[:stride])
	buf.against = buf.against[:0]
	// A band past the window's size is the whole window (and a box edge
	// computed from it must not overflow); a negative band holds no cell,
	// so nothing votes.
	band := min(opts.Band, max(bw, bh))
	for y := range bh {
		mapRow := cells[(y+w.y0)*m.Width+w.x0 : (y+w.y0)*m.Width+w.x1+1]
		winRow := scratch[y*bw : (y+1)*bw]
		above, row := sv[y*stride:(y+1)*stride], sv[(y+1)*stride:(y+2)*stride]
		aboveD, rowD := sd[y*stride:(y+1)*stride], sd[(y+1)*stride:(y+2)*stride]
		row[0], rowD[0] = 0, 0
		var votes, against int32
		for x, a := range mapRow {
			b := winRow[x]
			if !(a < conf && a > -conf) && !(b < conf && b > -conf) && band >= 0 &&
				boxSum(buf.so, bw, bh, x-band, y-band, x+band+1, y+band+1) > 0 {
				votes++
				mx, my := x+w.x0, y+w.y0
				switch {
				case (a > 0) == (b > 0):
					ar.Agreement++
				case a < 0 && !freeAround(getOut, mx, my): // the map's free cell borders a wall or the unseen
					ar.Agreement++
				case b < 0 && !freeAround(getIn, mx, my):
					ar.Agreement++
				default:
					ar.Disagreement++
					against++
					buf.against = append(buf.against, int32(y*bw+x))
				}
			}
			row[x+1] = above[x+1] + votes
			rowD[x+1] = aboveD[x+1] + against
		}
	}
	if ar.Agreement+ar.Disagreement >= opts.MinOverlapCells {
		ar.Judged = true
		ar.judge(buf, bw, bh)
		if opts.refuses(ar) && opts.SeeThroughAngle > 0 && st != nil {
			sc := seeThroughScene{meta: m, cells: cells, win: win, conf: conf}
			if n := seeThrough(&sc, buf, in, st, opts.SeeThroughAngle); n > 0 {
				ar.SeeThroughCells = n
				ar.Disagreement -= n
				ar.judge(buf, bw, bh)
			}
		}
	}
	addWindow(cells, m.Width, scratch, &w)
	return ar, win
}

// boundaryTolerance is how many cells an occupied/free clash may lie from
// the free side's edge and be forgiven, where the coarser of the two grids
// compared has cells k of the map's wide (cellsWide): one cell, or one
// short of a coarse cell. A wall a coarse grid holds fills a whole coarse
// cell — 0.2 m of a 0.05 m map where the finer map's wall is 0.05–0.1 m
// thick — so at the right pose it overlaps the finer map's free floor by up
// to k − 1 cells on one side. Without it a 0.2 m ROS map of Willow merged at
// its true pose into the 0.1 m map it was cut from was refused at
// consistency 0.934, 0.0192 of its votes contradicted. It is taken per
// cell: a coarse map elsewhere in the team must not loosen the comparison
// of fine grids (a review merged a 0.1 m map 0.3 m off once a 0.3 m map
// lay elsewhere in the mission).
func boundaryTolerance(k uint8) int {
	return max(1, int(k)-1)
}

// cellsWide is how many cells of a map of resolution res (metres per
// cell) a cell of resolution src spans, rounded up and at most 255.
func cellsWide(src, res float64) uint8 {
	return uint8(min(max(math.Ceil(src/res-1e-6), 1), 255))
}

// judge sets ar's consistency and per-region figures from its counts and
// buf's tables of the bw×bh window.
func (ar *AgentReport) judge(buf *buffers, bw, bh int) {
	shared := ar.Agreement + ar.Disagreement
	ar.Consistency, ar.ChangedShare = 1, 0
	ar.ContradictedCells, ar.ContradictedRegions = buf.contradicted(bw, bh)
	if shared > 0 {
		ar.Consistency = float64(ar.Agreement) / float64(shared)
		ar.ChangedShare = float64(ar.ContradictedCells) / float64(shared)
	}
}

// confidentIn reports whether a cell of the grid of width mw under w's
// bounding box is confident (|l| >= conf): only such cells take part in
// compareAndAdd's votes.
func confidentIn(cells []float32, mw int, w *warper, conf float32) bool {
	for y := w.y0; y <= w.y1; y++ {
		for _, a := range cells[y*mw+w.x0 : y*mw+w.x1+1] {
			if a >= conf || a <= -conf {
				return true
			}
		}
	}
	return false
}

// addWindow adds the warped input win (w's bounding box, row-major) into
// the grid of width mw, clamped.
func addWindow(cells []float32, mw int, win []float32, w *warper) {
	bw := w.x1 - w.x0 + 1
	for y := w.y0; y <= w.y1; y++ {
		row := cells[y*mw+w.x0 : y*mw+w.x1+1]
		for i, v := range win[(y-w.y0)*bw : (y-w.y0+1)*bw] {
			if v != 0 {
				row[i] = grid.ClampLogOdds(row[i] + v)
			}
		}
	}
}

// Per-region consistency (issue 8). Real data disagrees with itself a
// little everywhere: glass seen through or not, people walking, a chair
// moved, a wall hit at a grazing angle; a wrong pose or a changed world
// disagrees a lot in some places: the walls of a room that is not there,
// the furniture that moved, the door that closed. So a disagreeing cell is
// *contradicted* when the region of regionCells × regionCells cells (1 m at
// 5 cm) centred on it holds at least minRegionVotes votes of which at least
// contradictedRegion disagree, and the gate is on the share of all votes
// that are contradicted cells (ChangedShare): scattered noise does not
// count, concentrated contradiction does.
//
// The region slides with the cell. Fixed 1 m tiles (the first version) cut
// a moved desk or a closed door in two or four whenever a tile border ran
// through it, and each piece could stay under the 10 %: over 300 changed
// worlds the mildest scored 0.0105–0.0146 that way against 0.0106 with
// the sliding region, while Freiburg 079's people and glass, scattered
// over the building, scored 0.0101 with tiles and 0.0085 sliding.
const (
	regionCells        = 20
	minRegionVotes     = 12
	contradictedRegion = 0.10
)

// contradicted returns the number of disagreeing cells of a bw×bh window
// (b.against, with b.sv and b.sd the summed-area tables of the cells that
// voted and disagreed) whose centred region is contradicted (see
// regionCells), and how many fixed regionCells tiles of the window hold at
// least one of them (what the merge service's message reports as
// contradicted 1 m regions). Region sums come from the tables, so the cost
// is linear in the window.
func (b *buffers) contradicted(bw, bh int) (cells, regions int) {
	tw := (bw + regionCells - 1) / regionCells
	tiles := make([]bool, tw*((bh+regionCells-1)/regionCells))
	for _, i := range b.against {
		x, y := int(i)%bw, int(i)/bw
		if !b.inContradictedRegion(x, y, bw, bh) {
			continue
		}
		cells++
		if t := (y/regionCells)*tw + x/regionCells; !tiles[t] {
			tiles[t] = true
			regions++
		}
	}
	return cells, regions
}

// inContradictedRegion reports whether the region centred on cell (x, y)
// of the bw×bh window holds at least minRegionVotes votes of which at least
// contradictedRegion disagree (b.sv and b.sd are their tables).
func (b *buffers) inContradictedRegion(x, y, bw, bh int) bool {
	const half = regionCells / 2
	v := boxSum(b.sv, bw, bh, x-half, y-half, x+half, y+half)
	d := boxSum(b.sd, bw, bh, x-half, y-half, x+half, y+half)
	return v >= minRegionVotes && float64(d) >= contradictedRegion*float64(v)
}

// forget takes the cells of the set (window indices) out of b.against, so
// that contradicted counts without them. The tables of votes and
// disagreements stay as they were: a forgiven cell still counts in its
// neighbours' regions, so forgiving a few cells cannot pull a whole region
// under contradictedRegion (a review found three cells forgiven at a wall's
// end taking twelve others with them, enough to pass a pose 0.4 m off).
func (b *buffers) forget(set map[int32]bool) {
	kept := b.against[:0]
	for _, i := range b.against {
		if !set[i] {
			kept = append(kept, i)
		}
	}
	b.against = kept
}

// boxSum is the sum over [x0, x1) × [y0, y1), clipped to the bw×bh array
// whose summed-area table is t: entry (y·(bw+1) + x) holds the sum over
// [0, x) × [0, y).
func boxSum(t []int32, bw, bh, x0, y0, x1, y1 int) int32 {
	x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, bw), min(y1, bh)
	stride := bw + 1
	return t[y1*stride+x1] - t[y0*stride+x1] - t[y1*stride+x0] + t[y0*stride+x0]
}

// structureTable writes into t, (bw+1)×(bh+1), the summed-area table of
// the structure of the window (x0, y0, bw×bh) of a grid of width mw: the
// cells where the map (cells) or the warped input (win) is confidently
// occupied. A cell lies in the structure band, within band cells
// (Chebyshev) of structure inside the window, when its (2·band+1)² box
// sums above zero (boxSum): one table and a lookup per voting cell instead
// of dilating the whole window.
func structureTable(t []int32, cells []float32, mw int, win []float32, x0, y0, bw, bh int, conf float32) {
	stride := bw + 1
	clear(t[:stride])
	for y := range bh {
		mapRow := cells[(y+y0)*mw+x0 : (y+y0)*mw+x0+bw]
		winRow := win[y*bw : (y+1)*bw]
		above, row := t[y*stride:(y+1)*stride], t[(y+1)*stride:(y+2)*stride]
		row[0] = 0
		var sum int32
		for x, a := range mapRow {
			if a >= conf || winRow[x] >= conf {
				sum++
			}
			row[x+1] = above[x+1] + sum
		}
	}
}
