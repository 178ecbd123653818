package fuse

import (
	"math"
	"math/rand/v2"
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
				src.LogOdds()[i] = float32(r.IntN(9) - 4)
			}
		}
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

// nearEdge reports whether the source cell coordinate f is within 1e-6 of
// a cell edge.
func nearEdge(f float64) bool {
	return math.Abs(f-math.Round(f)) < 1e-6
}
