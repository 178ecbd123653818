package eval

import (
	"errors"
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

func TestPoseError(t *testing.T) {
	t.Parallel()
	tr, rot := PoseError(slam.Pose2D{X: 3, Y: 4, Theta: math.Pi - 0.01}, slam.Pose2D{Theta: -math.Pi + 0.01})
	if math.Abs(tr-5) > 1e-12 || math.Abs(rot-0.02) > 1e-12 {
		t.Fatalf("PoseError = %g, %g; want 5, 0.02 (across ±π)", tr, rot)
	}
}

// box builds a 20×20 grid with a wall ring at distance 2 from the border.
func box(t *testing.T) *grid.Grid {
	g, err := grid.New(grid.Meta{Resolution: 0.1, Width: 20, Height: 20})
	if err != nil {
		t.Fatal(err)
	}
	c := g.LogOdds()
	for y := range 20 {
		for x := range 20 {
			switch {
			case x == 2 || x == 17 || y == 2 || y == 17:
				if x >= 2 && x <= 17 && y >= 2 && y <= 17 {
					c[y*20+x] = grid.Clamp
					continue
				}
				c[y*20+x] = -grid.Clamp
			default:
				c[y*20+x] = -grid.Clamp
			}
		}
	}
	return g
}

func TestCompareMaps(t *testing.T) {
	t.Parallel()
	truth := box(t)
	s, err := CompareMaps(truth, truth)
	if err != nil || s.Accuracy != 1 || s.OccupiedIoU != 1 || s.Coverage != 1 || s.Observed != 400 {
		t.Fatalf("truth vs itself: %+v, %v", s, err)
	}
	// Shifting every wall by one cell stays within the tolerance.
	shifted, _ := grid.New(truth.Meta())
	for y := range 20 {
		for x := 1; x < 20; x++ {
			shifted.LogOdds()[y*20+x] = truth.LogOdds()[y*20+x-1]
		}
	}
	s, _ = CompareMaps(shifted, truth)
	if s.OccupiedIoU < 0.99 {
		t.Errorf("1-cell shift: IoU %.3f, want ~1", s.OccupiedIoU)
	}
	// A spurious wall in the open and half the map unknown.
	est := truth.Clone()
	for x := 5; x < 15; x++ {
		est.LogOdds()[10*20+x] = grid.Clamp
	}
	for i := 0; i < 200; i++ {
		est.LogOdds()[i] = 0
	}
	s, _ = CompareMaps(est, truth)
	if s.Observed != 200 || s.Accuracy >= 1 || s.OccupiedIoU >= 1 || s.Coverage >= 0.6 {
		t.Errorf("damaged map scored %+v", s)
	}
	other, _ := grid.New(grid.Meta{Resolution: 0.05, Width: 20, Height: 20})
	if _, err := CompareMaps(other, truth); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("different metadata: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	s := Summarize([]float64{5, 1, 3, 2})
	if s.N != 4 || s.Min != 1 || s.Max != 5 || s.Median != 2.5 || s.Mean != 2.75 {
		t.Fatalf("Summarize = %+v", s)
	}
	if (Summarize(nil) != Stats{}) {
		t.Fatal("Summarize(nil) is not zero")
	}
}
