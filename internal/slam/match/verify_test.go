package match

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// TestExtractFreeMatchesDistanceTransform: the clearance test of the free
// lattice, done on each lattice cell's neighbourhood, picks exactly the
// cells the distance transform of the whole submap picks (squared distance
// to the nearest occupied cell at least freeClearance²), on random grids of
// walls, free and unknown cells, from 1×1 up, with and without walls.
func TestExtractFreeMatchesDistanceTransform(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for c := range 300 {
		w, h := 1+rng.IntN(40), 1+rng.IntN(40)
		g, err := grid.New(grid.Meta{Resolution: 0.05, Width: w, Height: h, Origin: slam.Pose2D{X: -1, Y: 2}})
		if err != nil {
			t.Fatal(err)
		}
		pOcc := []float64{0, 0.01, 0.05, 0.3}[c%4]
		for y := range h {
			for x := range w {
				switch u := rng.Float64(); {
				case u < pOcc:
					g.Add(x, y, 2)
				case u < 0.8:
					g.Add(x, y, -1.5)
				}
			}
		}
		got, want := extractFree(g), extractFreeByTransform(g)
		if !slices.Equal(got, want) {
			t.Fatalf("case %d (%d×%d, %.0f%% walls): %d free lattice cells, the distance transform keeps %d", c, w, h, 100*pOcc, len(got), len(want))
		}
	}
}

// extractFreeByTransform is extractFree as the definition reads: the
// exact distance transform of the submap's occupied cells, read on the
// lattice.
func extractFreeByTransform(submap *grid.Grid) []point {
	m := submap.Meta()
	cells := submap.LogOdds()
	mask := make([]bool, len(cells))
	for i, l := range cells {
		mask[i] = l > occupiedLogOdds
	}
	d2, _ := grid.DistanceTransform(m.Width, m.Height, mask, nil, nil)
	var out []point
	for y := 0; y < m.Height; y += freeStride {
		for x := 0; x < m.Width; x += freeStride {
			i := y*m.Width + x
			if cells[i] > freeLogOdds || d2[i] < freeClearance*freeClearance {
				continue
			}
			px, py := m.Center(x, y)
			out = append(out, point{X: px, Y: py})
		}
	}
	return out
}

// TestVerificationMessageSaysWhatToDo: a pose refused by verification
// names both causes, and after a wide search (whose limit is below the
// default window's) says that a guess accepts more change (found by a
// review: a correct pose of a changed building refused with no remedy).
func TestVerificationMessageSaysWhatToDo(t *testing.T) {
	t.Parallel()
	res := Result{Agent: 1, Score: 0.7, FreeConflict: 0.369, Pose: slam.Pose2D{X: -15.39, Y: 0.04, Theta: -1.15}}
	global := res
	global.Search.Global = true
	whole := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: global, Threshold: DefaultMaxWideFreeConflict, Verification: true}).Error()
	widened := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: 0.3, Verification: true}).Error()
	window := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: DefaultMaxFreeConflict, Verification: true}).Error()
	for _, msg := range []string{whole, widened, window} {
		if !strings.Contains(msg, "free conflict 0.369") || !strings.Contains(msg, "a world that changed between the passes") {
			t.Errorf("message %q does not give the conflict and both causes", msg)
		}
	}
	if !strings.Contains(whole, "an initial guess near the pose accepts more change") {
		t.Errorf("whole map: %q does not say a guess accepts more change", whole)
	}
	if !strings.Contains(widened, "a narrower window") {
		t.Errorf("widened window around a guess: %q does not say to narrow it", widened)
	}
	if strings.Contains(window, "accepts more change") || !strings.Contains(window, "slamctl --max-free-conflict) above 0.369") {
		t.Errorf("default window: %q does not point to the mission's limit, above the conflict measured", window)
	}
	// A conflict past 1 is past any limit the mission may set (found by a
	// helper: "above 1.288", which slamctl and the service refuse).
	past := res
	past.FreeConflict = 1.288
	beyond := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: past, Threshold: DefaultMaxFreeConflict, Verification: true}).Error()
	if strings.Contains(beyond, "above 1.288") || !strings.Contains(beyond, "past anything max_free_conflict (at most 1) accepts") || !strings.Contains(beyond, "initial guess") {
		t.Errorf("conflict past 1: %q advises a limit no one may set, or not the guess", beyond)
	}
	// A conflict of exactly 1 is accepted by a limit of 1: the gate refuses
	// only more (found by a helper: it was said to be past every limit).
	past.FreeConflict = 1
	one := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: past, Threshold: DefaultMaxFreeConflict, Verification: true}).Error()
	if strings.Contains(one, "past anything") || strings.Contains(one, "above 1.000") || !strings.Contains(one, "only max_free_conflict 1") {
		t.Errorf("conflict 1: %q does not say that the largest limit accepts it", one)
	}
}

// A refusal whose best pose lies on the window's edge says that the guess
// may be farther off, and how to widen the window in slamctl's terms too,
// whatever it was refused for (a review read "score 0.178 < 0.250" beside
// a best pose past the window, and nothing of the window).
func TestEdgeMessagesSayTheGuessMayBeOff(t *testing.T) {
	t.Parallel()
	res := Result{Agent: 2, Score: 0.178, FreeConflict: 0.6, Pose: slam.Pose2D{X: 7.68, Y: -0.18, Theta: 0.978}}
	weak := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: 0.25, OnEdge: true}).Error()
	conflict := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: 0.5, Verification: true, OnEdge: true}).Error()
	edge := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: 0.25, Edge: true, OnEdge: true}).Error()
	inside := (&LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: 0.25}).Error()
	for _, msg := range []string{weak, conflict, edge} {
		if !strings.Contains(msg, "edge of the search window") || !strings.Contains(msg, "--search-window-m") || strings.Count(msg, "edge of the search window") != 1 {
			t.Errorf("message %q does not say once that the pose is on the edge, and what to do", msg)
		}
	}
	if !strings.Contains(weak, "score 0.178 < 0.250") || !strings.Contains(conflict, "free conflict 0.600 > 0.50") {
		t.Errorf("weak %q / conflict %q: each keeps its own reason", weak, conflict)
	}
	if strings.Contains(inside, "edge") {
		t.Errorf("a pose inside the window: %q speaks of the edge", inside)
	}
}

// Too small a submap for a wide search is told what to do about it: give
// a guess after a whole-map search, narrow the window after a wide one
// around a guess (found by a review: a user who gave a guess was told to
// give one).
func TestWideDataAdviceFitsTheSearch(t *testing.T) {
	t.Parallel()
	global := Result{Agent: 1, Points: 110, Search: Window{Global: true, HalfTheta: math.Pi}}
	window := Result{Agent: 1, Points: 184, Search: Window{MinX: 11.39, MaxX: 14.59, MinY: 0, MaxY: 3.2, HalfTheta: 1.047}}
	g := (&LocalizationError{Reason: slam.ErrInsufficientData, Result: global, Threshold: 300, Wide: true}).Error()
	w := (&LocalizationError{Reason: slam.ErrInsufficientData, Result: window, Threshold: 192, Wide: true}).Error()
	if !strings.Contains(g, "the whole map (no initial guess) needs 300") || !strings.Contains(g, "give an initial guess") {
		t.Errorf("whole map: %q", g)
	}
	if !strings.Contains(w, "needs 192") || !strings.Contains(w, "narrow the window") || strings.Contains(w, "give an initial guess") {
		t.Errorf("wide window around a guess: %q", w)
	}
}
