package grid

import (
	"encoding/binary"
	"errors"
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

// FuzzInserterObserved throws arbitrary poses, headers, usable ranges and
// ranges at an Inserter: it must never panic, must refuse only with
// slam.ErrInvalidArgument, and every cell Integrate changes must lie within
// the bounds Observed reports (give or take one cell), which is what lets
// submaps be sized by Observed.
//
//	go test -run '^$' -fuzz '^FuzzInserterObserved$' -fuzztime 10s ./internal/slam/grid
func FuzzInserterObserved(f *testing.F) {
	f.Add(0.0, 0.0, 0.0, -math.Pi, 0.0175, 0.05, 8.0, 1.5, []byte{0, 0, 128, 63, 0, 0, 192, 127, 0, 0, 128, 127})
	f.Add(0.3, -0.2, 1.0, 0.0, 0.01, 0.1, 81.83, 0.0, []byte{0x71, 0xa8, 0xa3, 0x42, 0, 0, 0xc0, 0x7f, 0, 0, 0x20, 0x40})
	f.Add(math.NaN(), 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, -3.0, []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, x, y, th, amin, ainc, rmin, rmax, usable float64, raw []byte) {
		g, err := New(testMeta())
		if err != nil {
			t.Fatal(err)
		}
		s := slam.LaserScan{AngleMin: amin, AngleIncrement: ainc, RangeMin: rmin, RangeMax: rmax}
		for i := 0; i+4 <= len(raw) && len(s.Ranges) < 512; i += 4 {
			s.Ranges = append(s.Ranges, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		}
		in := Inserter{UsableRange: usable}
		p := slam.Pose2D{X: x, Y: y, Theta: th}
		b, errB := in.Observed(p, s)
		_, err = in.Integrate(g, p, s)
		if (err == nil) != (errB == nil) {
			t.Fatalf("Integrate: %v, Observed: %v", err, errB)
		}
		if err != nil {
			if !errors.Is(err, slam.ErrInvalidArgument) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		m := g.Meta()
		for i, l := range g.LogOdds() {
			if l == 0 {
				continue
			}
			cx, cy := m.Center(i%m.Width, i/m.Width)
			if r := m.Resolution; cx < b.MinX-r || cx > b.MaxX+r || cy < b.MinY-r || cy > b.MaxY+r {
				t.Fatalf("cell (%g, %g) changed outside the observed bounds %+v", cx, cy, b)
			}
		}
	})
}
