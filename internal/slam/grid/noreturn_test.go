package grid

import (
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
)

// A sensor with the SICK LMS's own no-return value as range_max: readings of
// 81.83 m (and +Inf) are no-return beams, NaN carries no information.
func rangeMaxScan(ranges ...float32) slam.LaserScan {
	return slam.LaserScan{AngleMin: 0, AngleIncrement: 0.01, RangeMin: 0.1, RangeMax: 81.83, Ranges: ranges}
}

func TestNoReturnBeamsAddNoObstacleAndClearOnlyToUsableRange(t *testing.T) {
	t.Parallel()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name    string
		r       float32
		usable  float64
		clearTo float64 // metres along +x cleared; 0: nothing
		maxX    float64 // Observed bounds' MaxX
	}{
		{"at range_max", 81.83, 0, DefaultUsableRange, DefaultUsableRange},
		{"beyond range_max", 90, 0, DefaultUsableRange, DefaultUsableRange},
		{"+Inf", inf, 0, DefaultUsableRange, DefaultUsableRange},
		{"+Inf with usable range 4 m", inf, 4, 4, 4},
		{"NaN", nan, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// 100 m × 1 m along +x from the sensor at (0.025, 0.025).
			g, err := New(Meta{Resolution: 0.05, Width: 2000, Height: 20})
			if err != nil {
				t.Fatal(err)
			}
			in := Inserter{UsableRange: tc.usable}
			sensor := slam.Pose2D{X: 0.025, Y: 0.025}
			if _, err := in.Integrate(g, sensor, rangeMaxScan(tc.r)); err != nil {
				t.Fatal(err)
			}
			occ, free, _ := g.Counts()
			if occ != 0 {
				t.Errorf("%d occupied cells, want none", occ)
			}
			wantFree := int(math.Round(tc.clearTo / 0.05))
			if tc.clearTo > 0 {
				wantFree++ // the end cell is cleared too
			}
			if math.Abs(float64(free-wantFree)) > 1 {
				t.Errorf("%d free cells, want %d (cleared to %g m)", free, wantFree, tc.clearTo)
			}
			b, err := in.Observed(sensor, rangeMaxScan(tc.r))
			if err != nil {
				t.Fatal(err)
			}
			if got := b.MaxX - sensor.X; math.Abs(got-tc.maxX) > 1e-9 {
				t.Errorf("observed bounds reach %g m, want %g", got, tc.maxX)
			}
		})
	}
}

func TestObservedBoundsFollowReturnsNotRangeMax(t *testing.T) {
	t.Parallel()
	var in Inserter
	// Three beams: a return at 3 m ahead, a no-return to the left, NaN behind.
	s := slam.LaserScan{AngleMin: 0, AngleIncrement: math.Pi / 2, RangeMin: 0.1, RangeMax: 81.83,
		Ranges: []float32{3, 81.83, float32(math.NaN())}}
	b, err := in.Observed(slam.Pose2D{X: 1, Y: 2}, s)
	if err != nil {
		t.Fatal(err)
	}
	want := Bounds{MinX: 1, MinY: 2, MaxX: 4, MaxY: 2 + DefaultUsableRange, NonEmpty: true}
	const eps = 1e-9
	if !b.NonEmpty || math.Abs(b.MinX-want.MinX) > eps || math.Abs(b.MinY-want.MinY) > eps ||
		math.Abs(b.MaxX-want.MaxX) > eps || math.Abs(b.MaxY-want.MaxY) > eps {
		t.Fatalf("Observed = %+v, want %+v", b, want)
	}
	if _, err := in.Observed(slam.Pose2D{X: math.NaN()}, s); err == nil {
		t.Error("NaN pose accepted")
	}
}

func TestInserterReusesBeamsAcrossGeometries(t *testing.T) {
	t.Parallel()
	// One Inserter fed two geometries in turn must integrate each exactly
	// like a fresh one: the cache must follow the geometry.
	a := slam.LaserScan{AngleMin: -1, AngleIncrement: 0.01, RangeMin: 0.05, RangeMax: 8, Ranges: make([]float32, 200)}
	b := slam.LaserScan{AngleMin: 0.5, AngleIncrement: 0.02, RangeMin: 0.05, RangeMax: 8, Ranges: make([]float32, 150)}
	for i := range a.Ranges {
		a.Ranges[i] = 1 + float32(i%7)*0.3
	}
	for i := range b.Ranges {
		b.Ranges[i] = 2 + float32(i%5)*0.4
	}
	var shared Inserter
	g1, _ := New(testMeta())
	g2, _ := New(testMeta())
	for _, s := range []slam.LaserScan{a, b, a} {
		p := slam.Pose2D{X: 0.3, Y: -0.2, Theta: 0.7}
		if _, err := shared.Integrate(g1, p, s); err != nil {
			t.Fatal(err)
		}
		var fresh Inserter
		if _, err := fresh.Integrate(g2, p, s); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range g1.LogOdds() {
		if v != g2.LogOdds()[i] {
			t.Fatalf("cell %d: shared inserter %g, fresh %g", i, v, g2.LogOdds()[i])
		}
	}
}
