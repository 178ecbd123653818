// Package fuse merges submaps into a map: each submap is warped by its pose
// (map_from_agent) into the target grid and its log-odds are added, clamped,
// which is the Bayesian combination of independent evidence. Before a submap
// is added, its agreement with what the map already knows is measured, and a
// merge whose inputs contradict each other fails with slam.ErrInconsistent
// instead of producing a confident, wrong map.
package fuse

import (
	"errors"
	"fmt"
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Warp adds src, a grid in its own frame, into dst after transforming it by
// dstFromSrc (for a submap: map_from_agent). Every dst cell whose centre
// falls inside src takes the value of the src cell under it (nearest
// neighbour, sampled from the destination side so rotated walls have no
// holes). Cells of src that land outside dst are dropped.
func Warp(dst, src *grid.Grid, dstFromSrc slam.Pose2D) error {
	if err := dstFromSrc.Validate(); err != nil {
		return err
	}
	var w warper
	w.init(dst.Meta(), src, dstFromSrc)
	if w.empty {
		return nil
	}
	w.add(dst.LogOdds())
	return nil
}

// warper walks the destination cells covered by a transformed source grid.
type warper struct {
	dm         grid.Meta
	src        *grid.Grid
	x0, y0     int // destination bounding box, inclusive
	x1, y1     int
	empty      bool
	ox, oy     float64 // source cell coordinates of destination cell (x0, y0)'s centre
	dxx, dxy   float64 // change of source cell coordinates per destination step in x
	dyx, dyy   float64 // ... and in y
	srcW, srcH int
	srcLogOdds []float32
}

func (w *warper) init(dm grid.Meta, src *grid.Grid, dstFromSrc slam.Pose2D) {
	sm := src.Meta()
	w.dm, w.src = dm, src
	// Destination bounding box of the transformed source extent.
	sw, sh := sm.SizeM()
	bx0, by0, bx1, by1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range [4][2]float64{{0, 0}, {sw, 0}, {0, sh}, {sw, sh}} {
		x, y := dstFromSrc.Apply(sm.Origin.X+c[0], sm.Origin.Y+c[1])
		bx0, by0 = math.Min(bx0, x), math.Min(by0, y)
		bx1, by1 = math.Max(bx1, x), math.Max(by1, y)
	}
	cx0 := math.Floor((bx0 - dm.Origin.X) / dm.Resolution)
	cy0 := math.Floor((by0 - dm.Origin.Y) / dm.Resolution)
	cx1 := math.Floor((bx1 - dm.Origin.X) / dm.Resolution)
	cy1 := math.Floor((by1 - dm.Origin.Y) / dm.Resolution)
	if cx1 < 0 || cy1 < 0 || cx0 >= float64(dm.Width) || cy0 >= float64(dm.Height) {
		w.empty = true
		return
	}
	w.x0, w.y0 = int(math.Max(cx0, 0)), int(math.Max(cy0, 0))
	w.x1, w.y1 = int(math.Min(cx1, float64(dm.Width-1))), int(math.Min(cy1, float64(dm.Height-1)))
	// Source coordinates move linearly with the destination cell, so the
	// inner loop only adds; srcFromDst maps destination metres to source
	// metres.
	inv := dstFromSrc.Inverse()
	px, py := dm.Center(w.x0, w.y0)
	qx, qy := inv.Apply(px, py)
	w.ox, w.oy = (qx-sm.Origin.X)/sm.Resolution, (qy-sm.Origin.Y)/sm.Resolution
	s, c := math.Sincos(inv.Theta)
	k := dm.Resolution / sm.Resolution
	w.dxx, w.dxy = c*k, s*k
	w.dyx, w.dyy = -s*k, c*k
	w.srcW, w.srcH = sm.Width, sm.Height
	w.srcLogOdds = src.LogOdds()
}

// each calls f for every destination cell covered by a known source cell.
func (w *warper) each(f func(i int, v float32)) {
	fw, fh := float64(w.srcW), float64(w.srcH)
	for y := w.y0; y <= w.y1; y++ {
		fy := float64(y - w.y0)
		sx := w.ox + fy*w.dyx
		sy := w.oy + fy*w.dyy
		row := y * w.dm.Width
		for x := w.x0; x <= w.x1; x++ {
			if sx >= 0 && sy >= 0 && sx < fw && sy < fh {
				if v := w.srcLogOdds[int(sy)*w.srcW+int(sx)]; v != 0 {
					f(row+x, v)
				}
			}
			sx += w.dxx
			sy += w.dxy
		}
	}
}

// window writes the source value under every destination cell of the
// bounding box into win, bw×bh cells row-major from (x0, y0), and leaves the
// cells no known source cell covers as they are: what each does, without a
// call and an index division per cell, for the one caller that wants the
// box.
func (w *warper) window(win []float32) {
	fw, fh := float64(w.srcW), float64(w.srcH)
	bw := w.x1 - w.x0 + 1
	for y := w.y0; y <= w.y1; y++ {
		fy := float64(y - w.y0)
		sx := w.ox + fy*w.dyx
		sy := w.oy + fy*w.dyy
		row := win[(y-w.y0)*bw : (y-w.y0+1)*bw]
		for x := range row {
			if sx >= 0 && sy >= 0 && sx < fw && sy < fh {
				if v := w.srcLogOdds[int(sy)*w.srcW+int(sx)]; v != 0 {
					row[x] = v
				}
			}
			sx += w.dxx
			sy += w.dxy
		}
	}
}

// add adds the source value under every covered destination cell into
// cells (the destination's log-odds), clamped: each with Warp's sum written
// out, since a call per cell cost as much as the walk itself.
func (w *warper) add(cells []float32) {
	fw, fh := float64(w.srcW), float64(w.srcH)
	for y := w.y0; y <= w.y1; y++ {
		fy := float64(y - w.y0)
		sx := w.ox + fy*w.dyx
		sy := w.oy + fy*w.dyy
		row := cells[y*w.dm.Width+w.x0 : y*w.dm.Width+w.x1+1]
		for x := range row {
			if sx >= 0 && sy >= 0 && sx < fw && sy < fh {
				if v := w.srcLogOdds[int(sy)*w.srcW+int(sx)]; v != 0 {
					row[x] = grid.ClampLogOdds(row[x] + v)
				}
			}
			sx += w.dxx
			sy += w.dxy
		}
	}
}

// Defaults of Options, calibrated on 300 seeded worlds of each kind and
// the real missions (docs/slam.md, "Thresholds", has both sides):
//   - MaxChangedShare 0.0095, the per-region gate: the real missions reach
//     0.0085 (Freiburg 079's people and glass), offices 0, the mildest of
//     299 changed worlds 0.0106 (median 0.056).
//   - MinConsistency 0.95, a floor under the global ratio: real ≥ 0.9806,
//     offices ≥ 0.997, changed worlds 0.884–0.986 (the region gate does
//     most of the separating).
const (
	DefaultMinConsistency  = 0.95
	DefaultMaxChangedShare = 0.0095
	DefaultConfidence      = 1.0
	DefaultMinOverlapCells = 200
	DefaultBand            = 3
)

// Options tune Merge; zero fields select the defaults.
type Options struct {
	// MinConsistency is the gate: an input whose consistency with the map
	// so far is below it fails the merge with slam.ErrInconsistent.
	MinConsistency float64
	// Confidence is the |log-odds| a cell needs in both grids to take part
	// in the consistency measure; 1.0 means roughly two agreeing
	// observations, which keeps single grazing rays out of the vote.
	Confidence float32
	// Band limits the vote to cells within Band cells of an occupied cell
	// of either grid. Open floor agrees with open floor under any pose and
	// any change, so counting it only dilutes the evidence: in a changed
	// world the contradictions (moved furniture, closed doors) are a few
	// hundred cells against ten thousand cells of free floor.
	Band int
	// MaxChangedShare is the per-region gate: an input whose
	// ChangedShare (disagreements inside contradicted regions over all
	// votes) exceeds it fails the merge with slam.ErrInconsistent.
	MaxChangedShare float64
	// MinOverlapCells is the number of shared confident cells below which
	// consistency is not judged: too little overlap says nothing.
	MinOverlapCells int
	// SeeThroughAngle (radians) is the largest angle from a pane's normal
	// at which glass returns a beam, for the see-through test that an input
	// failing a gate gets (see seethrough.go): 0 selects
	// DefaultSeeThroughAngle, a negative value turns the test off.
	SeeThroughAngle float64
}

func (o Options) withDefaults() Options {
	if o.MinConsistency == 0 {
		o.MinConsistency = DefaultMinConsistency
	}
	if o.MaxChangedShare == 0 {
		o.MaxChangedShare = DefaultMaxChangedShare
	}
	if o.Confidence == 0 {
		o.Confidence = DefaultConfidence
	}
	if o.Band == 0 {
		o.Band = DefaultBand
	}
	if o.MinOverlapCells == 0 {
		o.MinOverlapCells = DefaultMinOverlapCells
	}
	if o.SeeThroughAngle == 0 {
		o.SeeThroughAngle = DefaultSeeThroughAngle
	}
	return o
}

// refuses reports whether the gates of o (with its defaults) refuse an
// input judged as ar.
func (o Options) refuses(ar AgentReport) bool {
	return ar.Judged && (ar.Consistency < o.MinConsistency || ar.ChangedShare > o.MaxChangedShare)
}

// Input is one submap to merge and its pose in the target's frame.
type Input struct {
	Agent  int         // reported back in AgentReport and errors
	Submap *grid.Grid  // in the agent's frame
	Pose   slam.Pose2D // map_from_agent
	// Scans are the scans Submap was integrated from, each at the pose it
	// was inserted at (agent frame), with grid.DefaultUsableRange; nil for
	// a submap sent as cells. Only the see-through test reads them.
	Scans []slam.PosedScan
}

// AgentReport is the consistency of one input against the map it was merged
// into (the base plus every earlier input).
type AgentReport struct {
	Agent        int
	Agreement    int     // shared confident cells where both say occupied or both say free
	Disagreement int     // shared confident cells where one says occupied and the other free
	Consistency  float64 // Agreement / (Agreement + Disagreement); 1 when not judged
	Judged       bool    // false when the overlap was below MinOverlapCells
	// ContradictedCells counts the disagreeing cells whose surrounding
	// 1 m region disagrees at least contradictedRegion of the time,
	// ContradictedRegions the 1 m tiles they lie in, and ChangedShare is
	// ContradictedCells over all votes (0 when not judged): see
	// regionCells.
	ContradictedRegions int
	ContradictedCells   int
	ChangedShare        float64
	// SeeThroughCells counts the contradicted cells forgiven as glass seen
	// through at a slant (see seethrough.go), which every figure above then
	// leaves out; 0 unless the input failed a gate with them.
	SeeThroughCells int
}

// Report summarises a merge.
type Report struct {
	Agents         []AgentReport
	MinConsistency float64 // the lowest judged consistency (1 if none judged)
}

// InconsistencyError is the failure of the consistency gate; it wraps
// slam.ErrInconsistent and names the input that contradicted the map.
type InconsistencyError struct {
	Agent           int
	Consistency     float64
	Threshold       float64 // MinConsistency
	ChangedShare    float64
	MaxChangedShare float64
	Report          AgentReport
}

// Error names the agent and the numbers behind the verdict: which of the
// two gates failed, and both measures.
func (e *InconsistencyError) Error() string {
	var glass string
	if n := e.Report.SeeThroughCells; n > 0 {
		glass = fmt.Sprintf("; %d cells of glass not counted", n)
	}
	if e.Consistency < e.Threshold {
		return fmt.Sprintf("slam: agent %d inconsistent with the map: consistency %.3f < %.3f (%d agree, %d disagree; %.4f of the votes in %d contradicted regions%s)",
			e.Agent, e.Consistency, e.Threshold, e.Report.Agreement, e.Report.Disagreement, e.ChangedShare, e.Report.ContradictedRegions, glass)
	}
	return fmt.Sprintf("slam: agent %d inconsistent with the map: %.4f of the votes disagree in %d contradicted regions > %.4f (consistency %.3f, %d agree, %d disagree%s)",
		e.Agent, e.ChangedShare, e.Report.ContradictedRegions, e.MaxChangedShare, e.Consistency, e.Report.Agreement, e.Report.Disagreement, glass)
}

// Unwrap lets errors.Is(err, slam.ErrInconsistent) match.
func (e *InconsistencyError) Unwrap() error { return slam.ErrInconsistent }

// Merge warps every input into a copy of base, in order, and returns the
// fused grid. Each input is first compared with the map so far (incremental
// pairwise consistency, see Consistency); if any judged consistency is
// below opts.MinConsistency, or its ChangedShare above opts.MaxChangedShare,
// the merge fails with an *InconsistencyError for
// the first such input and returns no grid, but still returns the report.
// base is never modified; it may be an empty grid of the allocated map or the
// previous map version.
func Merge(base *grid.Grid, inputs []Input, opts Options) (*grid.Grid, Report, error) {
	m := NewMerger(base, opts)
	m.keep = 0 // no Contributors: one window buffer for every input
	rep := Report{MinConsistency: 1}
	var firstErr error
	for _, in := range inputs {
		ar, err := m.Add(in)
		var inconsistent *InconsistencyError
		switch {
		case errors.As(err, &inconsistent):
			if firstErr == nil {
				firstErr = err
			}
		case err != nil:
			return nil, rep, err
		}
		rep.Agents = append(rep.Agents, ar)
		if ar.Judged {
			rep.MinConsistency = math.Min(rep.MinConsistency, ar.Consistency)
		}
	}
	if firstErr != nil {
		return nil, rep, firstErr
	}
	return m.Grid(), rep, nil
}

// Consistency measures how well submap, placed at pose, agrees with g
// without changing g. It is the measure Merge gates on.
func Consistency(g *grid.Grid, submap *grid.Grid, pose slam.Pose2D, opts Options) (AgentReport, error) {
	if err := pose.Validate(); err != nil {
		return AgentReport{}, err
	}
	opts = opts.withDefaults()
	tmp := g.Clone()
	ar, _ := compareAndAdd(tmp, Input{Submap: submap, Pose: pose}, nil, newSeeThroughState(), opts, nil, new(buffers))
	return ar, nil
}
