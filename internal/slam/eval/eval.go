// Package eval measures SLAM output against ground truth: pose errors of
// localized agents and the quality of a merged map (accuracy over observed
// cells, occupied IoU with a one-cell tolerance, coverage). The tests use it
// to hold the domain to accuracy thresholds, and the demo prints it.
package eval

import (
	"fmt"
	"math"
	"slices"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// PoseError returns the translation error (metres) and the absolute rotation
// error (radians, in [0, π]) of est against truth.
func PoseError(est, truth slam.Pose2D) (trans, rot float64) {
	return math.Hypot(est.X-truth.X, est.Y-truth.Y), math.Abs(slam.AngleDiff(est.Theta, truth.Theta))
}

// MapScore is the quality of an estimated map against ground truth.
type MapScore struct {
	// Observed is the number of cells the estimate knows (log-odds ≠ 0).
	Observed int
	// Accuracy is the fraction of observed cells whose state is right: a
	// free cell must be free in truth; an occupied cell must have an occupied
	// truth cell within one cell (walls are surfaces, and a surface may fall
	// on either side of a cell boundary).
	Accuracy float64
	// OccupiedIoU is the intersection over union of occupied cells with a
	// one-cell tolerance, over the observed region: true positives are the
	// truth wall-surface cells next to observed space that have an estimated
	// occupied cell within one cell; false negatives are those that do not;
	// false positives are estimated occupied cells with no truth occupied cell
	// within one cell.
	OccupiedIoU float64
	// Coverage is the fraction of truth free cells the estimate observed.
	Coverage float64
}

// CompareMaps scores est against truth; both grids must share metadata (the
// merged map and the truth grid of a world do).
func CompareMaps(est, truth *grid.Grid) (MapScore, error) {
	m := est.Meta()
	if m != truth.Meta() {
		return MapScore{}, fmt.Errorf("%w: estimate and truth grids differ in metadata", slam.ErrInvalidArgument)
	}
	e, t := est.LogOdds(), truth.LogOdds()
	w, h := m.Width, m.Height
	near := func(g []float32, x, y int, pred func(float32) bool) bool {
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				xx, yy := x+dx, y+dy
				if xx >= 0 && yy >= 0 && xx < w && yy < h && pred(g[yy*w+xx]) {
					return true
				}
			}
		}
		return false
	}
	occ := func(l float32) bool { return l > 0 }
	free := func(l float32) bool { return l < 0 }
	known := func(l float32) bool { return l != 0 }
	var s MapScore
	correct, truthFree, covered := 0, 0, 0
	tp, fn, fp := 0, 0, 0
	for y := range h {
		for x := range w {
			i := y*w + x
			ev, tv := e[i], t[i]
			if tv < 0 {
				truthFree++
				if ev != 0 {
					covered++
				}
			}
			if ev != 0 {
				s.Observed++
				if (ev < 0 && tv < 0) || (ev > 0 && near(t, x, y, occ)) {
					correct++
				}
			}
			if ev > 0 && !near(t, x, y, occ) {
				fp++
			}
			// Truth surface cells bordering space the estimate observed.
			if tv > 0 && near(t, x, y, free) && near(e, x, y, known) {
				if near(e, x, y, occ) {
					tp++
				} else {
					fn++
				}
			}
		}
	}
	if s.Observed > 0 {
		s.Accuracy = float64(correct) / float64(s.Observed)
	}
	if tp+fn+fp > 0 {
		s.OccupiedIoU = float64(tp) / float64(tp+fn+fp)
	}
	if truthFree > 0 {
		s.Coverage = float64(covered) / float64(truthFree)
	}
	return s, nil
}

// Stats summarises a distribution for logs: the tests print min / median /
// max of every asserted quantity.
type Stats struct {
	N                      int
	Min, Median, Mean, Max float64
}

// Summarize computes Stats of values (zero Stats for none).
func Summarize(values []float64) Stats {
	if len(values) == 0 {
		return Stats{}
	}
	v := slices.Clone(values)
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Stats{N: len(v), Min: v[0], Median: med, Mean: sum / float64(len(v)), Max: v[len(v)-1]}
}

// String prints the distribution compactly.
func (s Stats) String() string {
	return fmt.Sprintf("n=%d min=%.4g median=%.4g mean=%.4g max=%.4g", s.N, s.Min, s.Median, s.Mean, s.Max)
}
