package grid

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
)

func testMeta() Meta {
	return Meta{Resolution: 0.1, Width: 40, Height: 30, Origin: slam.Pose2D{X: -2, Y: -1.5}}
}

func TestMetaValidation(t *testing.T) {
	t.Parallel()
	ok := testMeta()
	mut := func(f func(*Meta)) Meta { m := ok; f(&m); return m }
	for _, tc := range []struct {
		name string
		m    Meta
		want error
	}{
		{"ok", ok, nil},
		{"zero resolution", mut(func(m *Meta) { m.Resolution = 0 }), slam.ErrInvalidArgument},
		{"negative resolution", mut(func(m *Meta) { m.Resolution = -0.05 }), slam.ErrInvalidArgument},
		{"nan resolution", mut(func(m *Meta) { m.Resolution = math.NaN() }), slam.ErrInvalidArgument},
		{"zero width", mut(func(m *Meta) { m.Width = 0 }), slam.ErrInvalidArgument},
		{"negative height", mut(func(m *Meta) { m.Height = -3 }), slam.ErrInvalidArgument},
		{"rotated origin", mut(func(m *Meta) { m.Origin.Theta = 0.1 }), slam.ErrInvalidArgument},
		{"inf origin", mut(func(m *Meta) { m.Origin.X = math.Inf(1) }), slam.ErrInvalidArgument},
		{"huge", mut(func(m *Meta) { m.Width, m.Height = 1<<20, 1<<20 }), slam.ErrTooLarge},
		{"overflowing", mut(func(m *Meta) { m.Width, m.Height = math.MaxInt, math.MaxInt }), slam.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.m)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("New(%+v) = %v, want %v", tc.m, err, tc.want)
			}
			// A count past int64 is not printed as one.
			if err != nil && strings.Contains(err.Error(), "= 9223372036854775807 cells") {
				t.Errorf("New(%+v): %v prints the saturated count", tc.m, err)
			}
		})
	}
}

func TestMetaForBounds(t *testing.T) {
	t.Parallel()
	m, err := MetaForBounds(0, 0, 20, 15, 0.05)
	if err != nil || m.Width != 400 || m.Height != 300 || m.Cells() != 120000 {
		t.Fatalf("MetaForBounds(20x15 @5cm) = %+v, %v; want 400x300", m, err)
	}
	// Sizes past any grid read as numbers, not as 300 digits or +Inf.
	for _, huge := range [][3]float64{{1e300, 1, 0.05}, {1, 1, 1e-300}} {
		_, err := MetaForBounds(0, 0, huge[0], huge[1], huge[2])
		if !errors.Is(err, slam.ErrTooLarge) || len(err.Error()) > 120 {
			t.Errorf("MetaForBounds(%g x %g m at %g m) = %v; want a short ErrTooLarge", huge[0], huge[1], huge[2], err)
		}
	}
	for _, tc := range []struct {
		w, h, res float64
		want      error
	}{
		{20, 15, 0, slam.ErrInvalidArgument},
		{20, 15, -1, slam.ErrInvalidArgument},
		{-20, 15, 0.05, slam.ErrInvalidArgument},
		{math.NaN(), 15, 0.05, slam.ErrInvalidArgument},
		{1e6, 1e6, 0.05, slam.ErrTooLarge},
		{1e300, 1e300, 1e-300, slam.ErrTooLarge},
	} {
		if _, err := MetaForBounds(0, 0, tc.w, tc.h, tc.res); !errors.Is(err, tc.want) {
			t.Errorf("MetaForBounds(%g, %g, %g) = %v, want %v", tc.w, tc.h, tc.res, err, tc.want)
		}
	}
}

func TestCheckCapacity(t *testing.T) {
	t.Parallel()
	m, _ := MetaForBounds(0, 0, 20, 15, 0.05)
	if err := CheckCapacity(m, 120000); err != nil {
		t.Fatalf("exact fit refused: %v", err)
	}
	err := CheckCapacity(m, 100000)
	var ce *CapacityError
	if !errors.Is(err, slam.ErrCapacity) || !errors.As(err, &ce) || ce.Requested != 120000 || ce.Available != 100000 {
		t.Fatalf("CheckCapacity over budget = %v, want *CapacityError{120000, 100000}", err)
	}
}

func TestInt8RoundTripEveryValue(t *testing.T) {
	t.Parallel()
	m := Meta{Resolution: 0.05, Width: 102, Height: 1}
	in := make([]int8, 102)
	for i := range in {
		in[i] = int8(i - 1) // -1..100
	}
	g, err := FromInt8(m, in)
	if err != nil {
		t.Fatal(err)
	}
	out := g.ToInt8()
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("round trip of %d gave %d", in[i], out[i])
		}
	}
}

func TestToInt8Semantics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		l    float32
		want int8
	}{{0, -1}, {Clamp, 100}, {-Clamp, 0}, {LogOddsHit, 70}, {LogOddsMiss, 40}, {1e-6, 50}} {
		if got := LogOddsToInt8(tc.l); got != tc.want {
			t.Errorf("LogOddsToInt8(%g) = %d, want %d", tc.l, got, tc.want)
		}
	}
}

func TestFromInt8Rejects(t *testing.T) {
	t.Parallel()
	m := testMeta()
	if _, err := FromInt8(m, make([]int8, 5)); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("wrong length: %v", err)
	}
	bad := make([]int8, m.Cells())
	bad[7] = 101
	if _, err := FromInt8(m, bad); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("value 101: %v", err)
	}
	bad[7] = -2
	if _, err := FromInt8(m, bad); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("value -2: %v", err)
	}
	if _, err := FromInt8(Meta{Resolution: 0}, nil); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("zero resolution: %v", err)
	}
}

func scan(ranges ...float32) slam.LaserScan {
	return slam.LaserScan{AngleMin: 0, AngleIncrement: 0.01, RangeMin: 0.05, RangeMax: 2, Ranges: ranges}
}

func TestIntegrateScanHitAndMiss(t *testing.T) {
	t.Parallel()
	g, _ := New(testMeta())
	// One beam along +x from (0.05, 0.05), the centre of a cell, ending 1 m away.
	st, err := g.IntegrateScan(slam.Pose2D{X: 0.05, Y: 0.05}, scan(1))
	if err != nil || st.Hits != 1 {
		t.Fatalf("IntegrateScan = %+v, %v", st, err)
	}
	cx, cy, _ := g.Meta().CellOf(0.05, 0.05)
	if v := g.At(cx, cy); v != LogOddsMiss {
		t.Errorf("sensor cell = %g, want a miss", v)
	}
	ex, ey, _ := g.Meta().CellOf(1.05, 0.05)
	if v := g.At(ex, ey); v != LogOddsHit {
		t.Errorf("end cell = %g, want a hit", v)
	}
	if v := g.At(ex+1, ey); v != 0 {
		t.Errorf("cell behind the hit = %g, want unknown", v)
	}
	for x := cx; x < ex; x++ {
		if v := g.At(x, cy); v != LogOddsMiss {
			t.Errorf("cell %d on the ray = %g, want a miss", x, v)
		}
	}
	// Clamping.
	for range 100 {
		g.IntegrateScan(slam.Pose2D{X: 0.05, Y: 0.05}, scan(1))
	}
	if g.At(ex, ey) != Clamp || g.At(cx, cy) != -Clamp {
		t.Errorf("after 100 scans: hit %g, miss %g; want ±%g", g.At(ex, ey), g.At(cx, cy), Clamp)
	}
}

func TestIntegrateScanSpecialBeams(t *testing.T) {
	t.Parallel()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name             string
		r                float32
		hits, maxr, skip int
		endCell          float32 // value of the cell at 1.95 m along the beam
		clearsNearSensor bool
	}{
		{"no return clears to range max", inf, 0, 1, 0, LogOddsMiss, true},
		{"beyond range max clears, no hit", 5, 0, 1, 0, LogOddsMiss, true},
		{"nan skipped", nan, 0, 0, 1, 0, false},
		{"-inf skipped", float32(math.Inf(-1)), 0, 0, 1, 0, false},
		{"negative skipped", -1, 0, 0, 1, 0, false},
		{"below range min skipped", 0.01, 0, 0, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := New(testMeta())
			st, err := g.IntegrateScan(slam.Pose2D{X: 0.05, Y: 0.05}, scan(tc.r))
			if err != nil {
				t.Fatal(err)
			}
			if st.Hits != tc.hits || st.MaxRange != tc.maxr || st.Skipped != tc.skip {
				t.Fatalf("stats %+v, want hits %d maxrange %d skipped %d", st, tc.hits, tc.maxr, tc.skip)
			}
			occ, _, _ := g.Counts()
			if occ != 0 {
				t.Errorf("%d occupied cells, want none", occ)
			}
			x, y, _ := g.Meta().CellOf(1.95, 0.05)
			if v := g.At(x, y); v != tc.endCell {
				t.Errorf("cell at 1.95 m = %g, want %g", v, tc.endCell)
			}
		})
	}
}

func TestIntegrateScanOutsideAndBadInput(t *testing.T) {
	t.Parallel()
	g, _ := New(testMeta())
	// A sensor far outside the grid whose beams cross it.
	st, err := g.IntegrateScan(slam.Pose2D{X: -100, Y: 0.05}, slam.LaserScan{AngleIncrement: 0.001, RangeMax: 200, Ranges: []float32{101}})
	if err != nil || st.Hits != 1 {
		t.Fatalf("far sensor: %+v, %v", st, err)
	}
	// It enters at x = -2 m (cell 0) and ends at x = 1 m (cell 30).
	occ, free, _ := g.Counts()
	if cy := 15; free != 30 || occ != 1 || g.At(30, cy) != LogOddsHit || g.At(0, cy) != LogOddsMiss {
		t.Fatalf("crossing ray: %d free, %d occupied (want 30, 1)", free, occ)
	}
	for _, p := range []slam.Pose2D{{X: math.NaN()}, {Y: math.Inf(-1)}, {Theta: math.Inf(1)}, {X: 1e300}} {
		if _, err := g.IntegrateScan(p, scan(1)); !errors.Is(err, slam.ErrInvalidArgument) {
			t.Errorf("pose %v: %v, want ErrInvalidArgument", p, err)
		}
	}
	if _, err := g.IntegrateScan(slam.Pose2D{}, scan()); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("empty scan: %v", err)
	}
}

func TestDistanceTransformMatchesBruteForce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		w, h := 1+r.IntN(30), 1+r.IntN(30)
		mask := make([]bool, w*h)
		for i := range mask {
			mask[i] = r.Float64() < 0.05*float64(trial%4)
		}
		d2, nearest := DistanceTransform(w, h, mask, nil, nil)
		for y := range h {
			for x := range w {
				best := math.Inf(1)
				for yy := range h {
					for xx := range w {
						if mask[yy*w+xx] {
							best = math.Min(best, float64((x-xx)*(x-xx)+(y-yy)*(y-yy)))
						}
					}
				}
				i := y*w + x
				if float64(d2[i]) != best && !(math.IsInf(best, 1) && math.IsInf(float64(d2[i]), 1)) {
					t.Fatalf("trial %d (%dx%d) cell (%d,%d): dist² %g, want %g", trial, w, h, x, y, d2[i], best)
				}
				if n := nearest[i]; n >= 0 {
					nx, ny := int(n)%w, int(n)/w
					if !mask[n] || float64((x-nx)*(x-nx)+(y-ny)*(y-ny)) != best {
						t.Fatalf("trial %d cell (%d,%d): nearest (%d,%d) is not a nearest set cell", trial, x, y, nx, ny)
					}
				} else if !math.IsInf(best, 1) {
					t.Fatalf("trial %d cell (%d,%d): no nearest reported", trial, x, y)
				}
			}
		}
	}
}

// TestDistanceTransformWithinIsExactWithinReach: within reach,
// DistanceTransformWithin gives DistanceTransform's squared distance and
// its very nearest cell (ties broken alike); beyond it, a squared distance
// above reach, to the set cell it names (or +Inf and -1). Masks of random
// walls (horizontal and vertical runs) and scattered cells, reaches from 0
// to past the grid.
func TestDistanceTransformWithinIsExactWithinReach(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		w, h := 1+r.IntN(60), 1+r.IntN(60)
		mask := make([]bool, w*h)
		for range r.IntN(6) { // walls
			x, y, n := r.IntN(w), r.IntN(h), 1+r.IntN(max(w, h))
			dx, dy := 1, 0
			if r.IntN(2) == 0 {
				dx, dy = 0, 1
			}
			for ; n > 0 && x < w && y < h; n-- {
				mask[y*w+x] = true
				x, y = x+dx, y+dy
			}
		}
		for i := range mask {
			mask[i] = mask[i] || r.Float64() < 0.003*float64(trial%3)
		}
		reach2 := []float64{0, 1, 4, 21, 36, 225, 1e9}[trial%7]
		want, wantNearest := DistanceTransform(w, h, mask, nil, nil)
		got, nearest := DistanceTransformWithin(w, h, mask, reach2, nil, nil)
		for i := range mask {
			x, y := i%w, i/w
			if float64(want[i]) <= reach2 {
				if got[i] != want[i] || nearest[i] != wantNearest[i] {
					t.Fatalf("trial %d (%dx%d, reach² %g) cell (%d,%d): dist² %g nearest %d, want %g nearest %d",
						trial, w, h, reach2, x, y, got[i], nearest[i], want[i], wantNearest[i])
				}
				continue
			}
			if float64(got[i]) <= reach2 {
				t.Fatalf("trial %d (reach² %g) cell (%d,%d): dist² %g within reach, the exact one is %g", trial, reach2, x, y, got[i], want[i])
			}
			if n := nearest[i]; n >= 0 {
				nx, ny := int(n)%w, int(n)/w
				if !mask[n] || float32((x-nx)*(x-nx)+(y-ny)*(y-ny)) != got[i] {
					t.Fatalf("trial %d cell (%d,%d): nearest (%d,%d) is not a set cell at dist² %g", trial, x, y, nx, ny, got[i])
				}
			} else if !math.IsInf(float64(got[i]), 1) {
				t.Fatalf("trial %d cell (%d,%d): dist² %g with no nearest cell", trial, x, y, got[i])
			}
		}
	}
}

// FuzzFromInt8 feeds arbitrary metadata and cells to FromInt8: it must never
// panic, must refuse what is invalid with a typed error, and whatever it
// accepts must export back to exactly the same cells.
//
//	go test -run '^$' -fuzz '^FuzzFromInt8$' -fuzztime 10s ./internal/slam/grid
func FuzzFromInt8(f *testing.F) {
	f.Add(uint32(4), uint32(3), 0.05, 0.0, 0.0, []byte{0xff, 0, 50, 100, 7, 0xff, 1, 99, 2, 3, 4, 5})
	f.Add(uint32(0), uint32(0), 0.0, math.NaN(), 1.0, []byte{})
	f.Add(uint32(1<<31), uint32(1<<31), 1e-9, 1e300, -1e300, []byte{101})
	f.Fuzz(func(t *testing.T, w, h uint32, res, ox, oy float64, data []byte) {
		m := Meta{Resolution: res, Width: int(w), Height: int(h), Origin: slam.Pose2D{X: ox, Y: oy}}
		cells := make([]int8, len(data))
		for i, b := range data {
			cells[i] = int8(b)
		}
		g, err := FromInt8(m, cells)
		if err != nil {
			if !errors.Is(err, slam.ErrInvalidArgument) && !errors.Is(err, slam.ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out := g.ToInt8()
		for i := range cells {
			if out[i] != cells[i] {
				t.Fatalf("cell %d: %d came back as %d", i, cells[i], out[i])
			}
		}
	})
}

// FuzzIntegrateScan throws arbitrary poses, scan headers and ranges at
// IntegrateScan: it must never panic, must refuse only with
// slam.ErrInvalidArgument, and must keep every cell within ±Clamp.
//
//	go test -run '^$' -fuzz '^FuzzIntegrateScan$' -fuzztime 10s ./internal/slam/grid
func FuzzIntegrateScan(f *testing.F) {
	f.Add(0.0, 0.0, 0.0, -math.Pi, 0.0175, 0.05, 8.0, []byte{0, 0, 128, 63, 0, 0, 192, 127})
	f.Add(1e9, -1e9, 1e9, 0.0, 0.0, 0.0, 1.0, []byte{0, 0, 128, 255})
	f.Add(math.NaN(), 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, []byte{1, 2, 3, 4})
	f.Add(-2.0, -1.5, 0.3, 0.0, 0.001, 0.0, 1000.0, []byte{0, 0, 122, 68})
	f.Fuzz(func(t *testing.T, x, y, th, amin, ainc, rmin, rmax float64, raw []byte) {
		g, err := New(testMeta())
		if err != nil {
			t.Fatal(err)
		}
		s := slam.LaserScan{AngleMin: amin, AngleIncrement: ainc, RangeMin: rmin, RangeMax: rmax}
		for i := 0; i+4 <= len(raw) && len(s.Ranges) < 512; i += 4 {
			s.Ranges = append(s.Ranges, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		}
		st, err := g.IntegrateScan(slam.Pose2D{X: x, Y: y, Theta: th}, s)
		if err != nil {
			if !errors.Is(err, slam.ErrInvalidArgument) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if st.Hits+st.MaxRange+st.Skipped > len(s.Ranges) {
			t.Fatalf("stats %+v exceed %d beams", st, len(s.Ranges))
		}
		for i, l := range g.LogOdds() {
			if !(l >= -Clamp && l <= Clamp) {
				t.Fatalf("cell %d = %g outside ±%g", i, l, Clamp)
			}
		}
	})
}
