package fuse

import (
	"fmt"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Merger is Merge one input at a time, for a caller that reports progress
// between inputs or stops at the first inconsistent one, and that wants the
// contributor layer of the result: it copies base once, not once per input,
// and keeps each input's warped window so that Contributors reads the
// windows instead of warping every input a second time (the merge step of
// an office mission spends a fifth of its time in that second warp).
//
// The grid, reports and layer are exactly Merge's and Contributors' for the
// same inputs in the same order. A Merger is not safe for concurrent use.
type Merger struct {
	out     *grid.Grid
	opts    Options
	windows []window // one per input added, in order; v nil when it covers nothing
}

// NewMerger starts a merge onto a copy of base (never modified) with opts
// (zero fields take their defaults, as in Merge).
func NewMerger(base *grid.Grid, opts Options) *Merger {
	return &Merger{out: base.Clone(), opts: opts.withDefaults()}
}

// Add compares in with the map so far and adds it, as Merge does for each of
// its inputs, and returns the input's report. A nil submap or an invalid pose
// is slam.ErrInvalidArgument and adds nothing. An input that fails the
// consistency gates is still added, and the error is an *InconsistencyError;
// the merge has then failed, and Grid and Contributors must not be used as
// its result.
func (m *Merger) Add(in Input) (AgentReport, error) {
	k := len(m.windows)
	if in.Submap == nil {
		return AgentReport{}, fmt.Errorf("%w: input %d has no submap", slam.ErrInvalidArgument, k)
	}
	if err := in.Pose.Validate(); err != nil {
		return AgentReport{}, fmt.Errorf("input %d (agent %d): %w", k, in.Agent, err)
	}
	ar, win := compareAndAdd(m.out, in, m.opts, nil)
	m.windows = append(m.windows, win)
	if ar.Judged && (ar.Consistency < m.opts.MinConsistency || ar.ChangedShare > m.opts.MaxChangedShare) {
		return ar, &InconsistencyError{Agent: in.Agent, Consistency: ar.Consistency, Threshold: m.opts.MinConsistency,
			ChangedShare: ar.ChangedShare, MaxChangedShare: m.opts.MaxChangedShare, Report: ar}
	}
	return ar, nil
}

// Grid returns the merged map so far. It is the Merger's own grid: adding
// more inputs changes it.
func (m *Merger) Grid() *grid.Grid { return m.out }

// Contributors returns the contributor layer of the merged map (see the
// function Contributors; k+1 names the k-th input added). More than
// MaxContributors inputs is slam.ErrInvalidArgument.
func (m *Merger) Contributors() ([]uint8, error) {
	if len(m.windows) > MaxContributors {
		return nil, fmt.Errorf("%w: %d inputs, a contributor layer names at most %d", slam.ErrInvalidArgument, len(m.windows), MaxContributors)
	}
	a := newAttribution(m.out)
	mw := m.out.Meta().Width
	for k, win := range m.windows {
		if win.v != nil {
			a.voteWindow(win, mw, uint8(k+1))
		}
	}
	return a.layer, nil
}
