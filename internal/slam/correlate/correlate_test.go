package correlate

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
)

// accumulateByCell is Accumulate written the plain way, offset by offset
// and point by point, in the order Accumulate adds each sum's terms.
func accumulateByCell(f Field, pts []Point, pose slam.Pose2D, n int, out []float32) {
	side := 2*n + 1
	s, c := math.Sincos(pose.Theta)
	for _, p := range pts {
		fx := (pose.X + c*p.X - s*p.Y - f.OX) * (1 / f.Res)
		fy := (pose.Y + s*p.X + c*p.Y - f.OY) * (1 / f.Res)
		if fx < -float64(n+1) || fy < -float64(n+1) || fx > float64(f.W+n+1) || fy > float64(f.H+n+1) {
			continue
		}
		bx, by := int(math.Floor(fx)), int(math.Floor(fy))
		for j := -n; j <= n; j++ {
			for i := -n; i <= n; i++ {
				if x, y := bx+i, by+j; x >= 0 && y >= 0 && x < f.W && y < f.H {
					out[(j+n)*side+i+n] += f.Cells[y*f.W+x]
				}
			}
		}
	}
}

// TestAccumulateIsEachCellsSum: Accumulate's block reads give, bit for
// bit, the sums taken cell by cell, on random fields and points that fall
// inside, across the borders of and outside the field, for the unrolled
// windows (n = 2, 3) and others.
func TestAccumulateIsEachCellsSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 11))
	for c := range 700 {
		f := Field{W: 1 + rng.IntN(30), H: 1 + rng.IntN(30), Res: 0.05, OX: rng.Float64()*2 - 1, OY: rng.Float64()*2 - 1}
		f.Cells = make([]float32, f.W*f.H)
		for i := range f.Cells {
			f.Cells[i] = rng.Float32()
		}
		pts := make([]Point, rng.IntN(60))
		for i := range pts {
			pts[i] = Point{X: (rng.Float64()*1.6 - 0.3) * float64(f.W) * f.Res, Y: (rng.Float64()*1.6 - 0.3) * float64(f.H) * f.Res}
		}
		pose := slam.Pose2D{X: f.OX + rng.Float64()*0.2, Y: f.OY + rng.Float64()*0.2, Theta: rng.Float64()*0.4 - 0.2}
		n := []int{2, 3, 2, 3, 0, 1, 4}[c%7]
		got := make([]float32, (2*n+1)*(2*n+1))
		want := make([]float32, len(got))
		Accumulate(f, pts, pose, n, got)
		accumulateByCell(f, pts, pose, n, want)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("case %d (%d×%d, n %d, %d points): offset %d sums %v, cell by cell %v", c, f.W, f.H, n, len(pts), i, got[i], want[i])
			}
		}
	}
}
