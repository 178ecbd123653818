package fuse

import (
	"fmt"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Merger is Merge one input at a time, for a caller that reports progress
// between inputs or stops at the first inconsistent one, and that wants the
// contributor layer of the result: it copies base once, not once per input,
// and keeps the inputs' warped windows so that Contributors reads them
// instead of warping those inputs a second time (the merge step of an
// office mission spent a third of its time in that second warp and the
// copies, BenchmarkMergeStep).
//
// The windows kept add up to at most as many cells as the map (a merge's
// peak memory stays under the two map copies a chain of Merge calls held);
// the inputs past that budget are warped again by Contributors.
//
// The grid, reports and layer are exactly Merge's and Contributors' for the
// same inputs in the same order. Create one with NewMerger; it is not safe
// for concurrent use.
type Merger struct {
	out  *grid.Grid
	opts Options
	// inputs and windows have one entry per Add, in order. windows[k].v is
	// nil when input k covers no cell of the map, was refused, or was not
	// kept (Contributors then warps inputs[k] again).
	inputs  []Input
	windows []window
	// keep is how many more window cells may be kept; scratch is the
	// buffer of the windows that are not.
	keep    int64
	scratch []float32
	// glass is the see-through test's state (the inputs so far and its
	// beam budget). It stays on after a refusal: the inputs' reports after
	// it are what the merge service's survey advises gates from, and they
	// must be what a merge with those gates would find (without the test a
	// Freiburg survey named a fourth agent and a share of 0.0261 where
	// 0.0148 accepts all). The budget bounds what a run of refusals costs.
	glass *seeThroughState
	// coarse is, per map cell, how many map cells wide the coarsest input
	// added there had its cells (compareAndAdd's boundary tolerance); nil
	// until an input coarser than boundaryTolerance's one cell arrives.
	coarse []uint8
}

// NewMerger starts a merge onto a copy of base (never modified) with opts
// (zero fields take their defaults, as in Merge).
func NewMerger(base *grid.Grid, opts Options) *Merger {
	return &Merger{out: base.Clone(), opts: opts.withDefaults(), keep: base.Meta().Cells(), glass: newSeeThroughState()}
}

// Add compares in with the map so far and adds it, as Merge does for each of
// its inputs, and returns the input's report. Each call numbers its input:
// the k-th call's (from 0) is input k of the error messages and k+1 in the
// contributor layer. A nil submap or an invalid pose is
// slam.ErrInvalidArgument and adds nothing. An input that fails the
// consistency gates is still added, and the error is an *InconsistencyError;
// the merge has then failed, and Grid and Contributors must not be used as
// its result.
func (m *Merger) Add(in Input) (AgentReport, error) {
	k := len(m.inputs)
	m.inputs = append(m.inputs, in)
	m.windows = append(m.windows, window{})
	if in.Submap == nil {
		return AgentReport{}, fmt.Errorf("%w: input %d has no submap", slam.ErrInvalidArgument, k)
	}
	if err := in.Pose.Validate(); err != nil {
		return AgentReport{}, fmt.Errorf("input %d (agent %d): %w", k, in.Agent, err)
	}
	buf := bufferPool.Get().(*buffers)
	m.glass.earlier = m.inputs[:k]
	ar, win := compareAndAdd(m.out, in, m.coarse, m.glass, m.opts, m.scratch, buf)
	bufferPool.Put(buf)
	m.markCoarse(in, win)
	if n := int64(len(win.v)); n > 0 && n <= m.keep {
		m.keep -= n
		m.windows[k] = win
		if int64(cap(m.scratch)) >= n {
			m.scratch = nil // the window was warped into it and is the window now
		}
	} else if n > 0 {
		m.scratch = win.v // not kept: the next input may reuse it
	}
	if m.opts.refuses(ar) {
		return ar, &InconsistencyError{Agent: in.Agent, Consistency: ar.Consistency, Threshold: m.opts.MinConsistency,
			ChangedShare: ar.ChangedShare, MaxChangedShare: m.opts.MaxChangedShare, Report: ar}
	}
	return ar, nil
}

// markCoarse records in m.coarse how coarse in's cells were, over the
// cells its window win covers.
func (m *Merger) markCoarse(in Input, win window) {
	meta := m.out.Meta()
	k := cellsWide(in.Submap.Meta().Resolution, meta.Resolution)
	if boundaryTolerance(k) == boundaryTolerance(1) || win.v == nil {
		return
	}
	if m.coarse == nil {
		m.coarse = make([]uint8, meta.Cells())
	}
	for y := range win.bh {
		row := m.coarse[(y+win.y0)*meta.Width+win.x0:]
		for x, v := range win.v[y*win.bw : (y+1)*win.bw] {
			if v != 0 {
				row[x] = max(row[x], k)
			}
		}
	}
}

// Grid returns the merged map so far. It is the Merger's own grid: adding
// more inputs changes it.
func (m *Merger) Grid() *grid.Grid { return m.out }

// Contributors returns the contributor layer of the merged map (see the
// function Contributors; k+1 names input k). More than MaxContributors
// inputs, or an input Add refused, is slam.ErrInvalidArgument.
func (m *Merger) Contributors() ([]uint8, error) {
	if len(m.inputs) > MaxContributors {
		return nil, fmt.Errorf("%w: %d inputs, a contributor layer names at most %d", slam.ErrInvalidArgument, len(m.inputs), MaxContributors)
	}
	a := newAttribution(m.out)
	defer a.release()
	meta := m.out.Meta()
	for k, in := range m.inputs {
		if in.Submap == nil || in.Pose.Validate() != nil {
			return nil, fmt.Errorf("%w: input %d was refused", slam.ErrInvalidArgument, k)
		}
		if win := m.windows[k]; win.v != nil {
			a.voteWindow(win, meta.Width, uint8(k+1))
		} else {
			a.voteInput(meta, in, uint8(k+1))
		}
	}
	return a.layer, nil
}
