package fuse

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// TestWarperWindowMatchesPerCellReference compares the warper's window (the
// merge's warp into its bounding box) with a per-cell reference over the
// whole destination map: each destination cell's centre, mapped into the
// source by the inverse pose, takes the value of the source cell it falls
// in. Cells whose centre falls within 1e-6 of a source cell edge are not
// compared (the incremental walk and the direct product may round to either
// side). The cases include 1x1 grids, odd resolutions, rotations at and
// near 90 and 180 degrees, and submaps partly and wholly outside the map.
func TestWarperWindowMatchesPerCellReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 11))
	thetas := []float64{0, math.Pi / 2, math.Pi, -math.Pi / 2, math.Pi/2 + 1e-9, math.Pi - 1e-9, 0.3, -2.1}
	for c := range 400 {
		dm, src := randomWarpCase(t, r, func() float32 { return float32(r.IntN(9) - 4) })
		sm := src.Meta()
		pose := slam.Pose2D{X: r.Float64()*8 - 4, Y: r.Float64()*8 - 4, Theta: thetas[r.IntN(len(thetas))]}
		if r.IntN(4) == 0 {
			pose.Theta = r.Float64()*2*math.Pi - math.Pi
		}
		var w warper
		w.init(dm, src, pose)
		bw, bh := w.x1-w.x0+1, w.y1-w.y0+1
		const unset = float32(99)
		var win []float32
		if !w.empty {
			win = make([]float32, bw*bh)
			for i := range win {
				win[i] = unset
			}
			w.window(win)
		}
		inv := pose.Inverse()
		for y := range dm.Height {
			for x := range dm.Width {
				px, py := dm.Center(x, y)
				qx, qy := inv.Apply(px, py)
				fx, fy := (qx-sm.Origin.X)/sm.Resolution, (qy-sm.Origin.Y)/sm.Resolution
				if nearEdge(fx) || nearEdge(fy) {
					continue
				}
				want := unset
				if fx >= 0 && fy >= 0 && fx < float64(sm.Width) && fy < float64(sm.Height) {
					if v := src.LogOdds()[int(fy)*sm.Width+int(fx)]; v != 0 {
						want = v
					}
				}
				got := unset
				inBox := !w.empty && x >= w.x0 && x <= w.x1 && y >= w.y0 && y <= w.y1
				if inBox {
					got = win[(y-w.y0)*bw+x-w.x0]
				}
				if got != want {
					t.Fatalf("case %d (dst %+v, src %+v, pose %v): cell (%d,%d) in box %v = %g, want %g",
						c, dm, sm, pose, x, y, inBox, got, want)
				}
			}
		}
	}
}

// TestWarperAddIsEachWithTheSum checks the warper's add (Warp's walk)
// against its each with the clamped sum, bit for bit, on destinations
// holding values near the clamps so that clamping is exercised; the cases
// are TestWarperWindowMatchesPerCellReference's kind.
func TestWarperAddIsEachWithTheSum(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(14, 15))
	for c := range 400 {
		dm, src := randomWarpCase(t, r, func() float32 { return (r.Float32()*2 - 1) * grid.Clamp })
		sm := src.Meta()
		pose := slam.Pose2D{X: r.Float64()*6 - 3, Y: r.Float64()*6 - 3, Theta: r.Float64()*2*math.Pi - math.Pi}
		var w warper
		w.init(dm, src, pose)
		if w.empty {
			continue
		}
		got := make([]float32, dm.Cells())
		for i := range got {
			got[i] = (r.Float32()*2 - 1) * grid.Clamp
		}
		want := slices.Clone(got)
		w.add(got)
		w.each(func(i int, v float32) { want[i] = grid.ClampLogOdds(want[i] + v) })
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("case %d (dst %+v, src %+v, pose %v): cell %d = %g, want %g", c, dm, sm, pose, i, got[i], want[i])
			}
		}
	}
}

// randomWarpCase draws a destination geometry and a source grid of up to
// 40×40 and 30×30 cells at assorted resolutions and origins, two thirds of
// the source cells set by value.
func randomWarpCase(t *testing.T, r *rand.Rand, value func() float32) (grid.Meta, *grid.Grid) {
	t.Helper()
	dm := grid.Meta{
		Resolution: []float64{0.05, 0.1, 0.07, 0.13}[r.IntN(4)],
		Width:      1 + r.IntN(40), Height: 1 + r.IntN(40),
		Origin: slam.Pose2D{X: r.Float64()*2 - 1, Y: r.Float64()*2 - 1},
	}
	sm := grid.Meta{
		Resolution: []float64{0.05, 0.1, 0.03, 0.11}[r.IntN(4)],
		Width:      1 + r.IntN(30), Height: 1 + r.IntN(30),
		Origin: slam.Pose2D{X: r.Float64()*2 - 1, Y: r.Float64()*2 - 1},
	}
	src, err := grid.New(sm)
	if err != nil {
		t.Fatal(err)
	}
	for i := range src.LogOdds() {
		if r.IntN(3) > 0 {
			src.LogOdds()[i] = value()
		}
	}
	return dm, src
}

// nearEdge reports whether the source cell coordinate f is within 1e-6 of
// a cell edge.
func nearEdge(f float64) bool {
	return math.Abs(f-math.Round(f)) < 1e-6
}

// TestStructureBandMatchesDefinition compares the structure band read off
// structureTable (a box sum above zero) with its definition, cell by cell:
// a window cell is in the band when a confidently occupied cell of the map
// or of the warped input lies within band cells of it in both x and y
// (Chebyshev). Windows from 1×1, placed anywhere in the map, bands from 0
// to wider than the window.
func TestStructureBandMatchesDefinition(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(12, 13))
	const conf = 1
	var table []int32 // reused, as bufferPool's are
	for c := range 300 {
		mw, mh := 1+r.IntN(30), 1+r.IntN(30)
		bw, bh := 1+r.IntN(mw), 1+r.IntN(mh)
		x0, y0 := r.IntN(mw-bw+1), r.IntN(mh-bh+1)
		band := r.IntN(6)
		density := []float64{0, 0.02, 0.1, 0.5}[c%4]
		cells := make([]float32, mw*mh)
		win := make([]float32, bw*bh)
		for _, g := range [][]float32{cells, win} {
			for i := range g {
				if r.Float64() < density {
					g[i] = conf + r.Float32()
				} else {
					g[i] = r.Float32()*2*conf - conf // below conf: not structure
				}
			}
		}
		table = resize(table, (bw+1)*(bh+1))
		structureTable(table, cells, mw, win, x0, y0, bw, bh, conf)
		occupied := func(x, y int) bool {
			return cells[(y+y0)*mw+x+x0] >= conf || win[y*bw+x] >= conf
		}
		for y := range bh {
			for x := range bw {
				want := false
				for v := max(y-band, 0); v <= min(y+band, bh-1) && !want; v++ {
					for u := max(x-band, 0); u <= min(x+band, bw-1) && !want; u++ {
						want = occupied(u, v)
					}
				}
				if got := boxSum(table, bw, bh, x-band, y-band, x+band+1, y+band+1) > 0; got != want {
					t.Fatalf("case %d (%d×%d window at %d,%d of a %d×%d map, band %d): cell (%d,%d) in band %v, want %v",
						c, bw, bh, x0, y0, mw, mh, band, x, y, got, want)
				}
			}
		}
	}
}

// TestCompareOddBands: a negative band holds no cell, so nothing votes and
// the input is not judged; a band as wide as an int holds the whole window
// (its box's edges must not overflow). Both on an identical 3×3 map and
// submap, where a band of 1 judges every cell in agreement.
func TestCompareOddBands(t *testing.T) {
	t.Parallel()
	meta := grid.Meta{Resolution: 1, Width: 3, Height: 3}
	g, err := grid.New(meta)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.LogOdds() {
		g.LogOdds()[i] = 5
	}
	for _, tt := range []struct {
		band   int
		judged bool
		agree  int
	}{{-1, false, 0}, {-2, false, 0}, {math.MinInt, false, 0}, {1, true, 9}, {math.MaxInt - 1, true, 9}, {math.MaxInt, true, 9}} {
		r, err := Consistency(g, g, slam.Pose2D{}, Options{Band: tt.band, MinOverlapCells: 1})
		if err != nil {
			t.Fatalf("band %d: %v", tt.band, err)
		}
		if r.Judged != tt.judged || r.Agreement != tt.agree || r.Disagreement != 0 {
			t.Errorf("band %d: judged %v, %d agree, %d disagree; want judged %v, %d agree", tt.band, r.Judged, r.Agreement, r.Disagreement, tt.judged, tt.agree)
		}
	}
}
