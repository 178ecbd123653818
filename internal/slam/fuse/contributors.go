package fuse

import (
	"fmt"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// MaxContributors is the most inputs a contributor layer can name: a cell
// holds its input's index plus one in a byte, and 0 means none. Missions
// have at most 16 agents (world.MaxAgents), far below it.
const MaxContributors = 255

// NoContributor is the layer value of a cell that no input decided.
const NoContributor uint8 = 0

// Contributors attributes each cell of merged, the result of merging inputs
// (in that order) into some base, to the input whose evidence decided it.
// The layer has one byte per cell, row-major like merged.LogOdds(): k+1
// names inputs[k]; NoContributor marks a cell that is unknown in merged, or
// that no input observed with the sign merged has (it is known from the
// base only, or the inputs' evidence there was outvoted).
//
// The deciding input of a cell is the one whose warped log-odds agree in
// sign with the fused value and are largest in magnitude: the agent whose
// evidence weighs most in the fused verdict. An agent that saw free floor
// where the fused map has a wall did not draw that wall, however sure it
// was, so disagreeing evidence never wins. Ties go to the earlier input.
//
// One index per cell rather than a bitmask of every contributor: a map is
// read (and drawn) as one colour per cell, and an index needs one byte for
// up to MaxContributors agents where a bitmask would need a byte per eight.
// Who else saw a cell is still in the submaps.
//
// inputs must be the ones Merge fused (same submaps and poses, so the same
// cells are covered); more than MaxContributors, a nil submap or an invalid
// pose is slam.ErrInvalidArgument. It allocates a byte per cell of merged,
// and 4 more for its working memory when bufferPool has none that large.
func Contributors(merged *grid.Grid, inputs []Input) ([]uint8, error) {
	if len(inputs) > MaxContributors {
		return nil, fmt.Errorf("%w: %d inputs, a contributor layer names at most %d", slam.ErrInvalidArgument, len(inputs), MaxContributors)
	}
	a := newAttribution(merged)
	defer a.release()
	for k, in := range inputs {
		if in.Submap == nil {
			return nil, fmt.Errorf("%w: input %d has no submap", slam.ErrInvalidArgument, k)
		}
		if err := in.Pose.Validate(); err != nil {
			return nil, fmt.Errorf("input %d (agent %d): %w", k, in.Agent, err)
		}
		a.voteInput(merged.Meta(), in, uint8(k+1))
	}
	return a.layer, nil
}

// attribution is a contributor layer being decided, input by input.
type attribution struct {
	fused []float32 // the merged map's log-odds
	layer []uint8
	// best is the winning input's evidence so far, signed towards the fused
	// value: only positive values (agreeing evidence) ever win. It is
	// buf's, until release.
	best []float32
	buf  *buffers
}

func newAttribution(merged *grid.Grid) *attribution {
	fused := merged.LogOdds()
	buf := bufferPool.Get().(*buffers)
	buf.best = resize(buf.best, len(fused))
	clear(buf.best)
	return &attribution{fused: fused, layer: make([]uint8, len(fused)), best: buf.best, buf: buf}
}

// release puts the working memory back into bufferPool; a must not vote
// after it.
func (a *attribution) release() {
	bufferPool.Put(a.buf)
	a.best, a.buf = nil, nil
}

// vote weighs input id's evidence v at cell i.
func (a *attribution) vote(i int, v float32, id uint8) {
	switch f := a.fused[i]; {
	case f < 0:
		v = -v
	case f == 0:
		return // unknown in the fused map: nobody decided it
	}
	if v > a.best[i] {
		a.best[i], a.layer[i] = v, id
	}
}

// voteInput weighs input id, warped into the map of meta m.
func (a *attribution) voteInput(m grid.Meta, in Input, id uint8) {
	var w warper
	w.init(m, in.Submap, in.Pose)
	if !w.empty {
		w.each(func(i int, v float32) { a.vote(i, v, id) })
	}
}

// voteWindow weighs input id's warped window, in a map of width mw.
func (a *attribution) voteWindow(win window, mw int, id uint8) {
	for y := range win.bh {
		row := (win.y0+y)*mw + win.x0
		for x, v := range win.v[y*win.bw : (y+1)*win.bw] {
			if v != 0 {
				a.vote(row+x, v, id)
			}
		}
	}
}
