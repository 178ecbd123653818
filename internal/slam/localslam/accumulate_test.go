package localslam

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
)

// accumulateByCell is accumulate written the plain way, offset by offset and
// point by point, in the order accumulate adds each sum's terms.
func accumulateByCell(field []float32, w, h int, res, ox, oy float64, pts []point, pose slam.Pose2D, n int, out []float32) {
	side := 2*n + 1
	s, c := math.Sincos(pose.Theta)
	for _, p := range pts {
		fx := (pose.X + c*p.x - s*p.y - ox) * (1 / res)
		fy := (pose.Y + s*p.x + c*p.y - oy) * (1 / res)
		if fx < -float64(n+1) || fy < -float64(n+1) || fx > float64(w+n+1) || fy > float64(h+n+1) {
			continue
		}
		bx, by := int(math.Floor(fx)), int(math.Floor(fy))
		for j := -n; j <= n; j++ {
			for i := -n; i <= n; i++ {
				if x, y := bx+i, by+j; x >= 0 && y >= 0 && x < w && y < h {
					out[(j+n)*side+i+n] += field[y*w+x]
				}
			}
		}
	}
}

// TestAccumulateIsEachCellsSum: accumulate's block reads give, bit for bit,
// the sums taken cell by cell, on random fields and points that fall inside,
// across the borders of and outside the field, for the searches' n = 2 and
// others.
func TestAccumulateIsEachCellsSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 2))
	for c := range 400 {
		w, h := 1+rng.IntN(30), 1+rng.IntN(30)
		field := make([]float32, w*h)
		for i := range field {
			field[i] = rng.Float32()
		}
		res := 0.05
		ox, oy := rng.Float64()*2-1, rng.Float64()*2-1
		pts := make([]point, rng.IntN(60))
		for i := range pts {
			pts[i] = point{x: (rng.Float64()*1.6 - 0.3) * float64(w) * res, y: (rng.Float64()*1.6 - 0.3) * float64(h) * res}
		}
		pose := slam.Pose2D{X: ox + rng.Float64()*0.2, Y: oy + rng.Float64()*0.2, Theta: rng.Float64()*0.4 - 0.2}
		n := []int{2, 2, 0, 1, 4}[c%5]
		got := make([]float32, (2*n+1)*(2*n+1))
		want := make([]float32, len(got))
		accumulate(field, w, h, res, ox, oy, pts, pose, n, got)
		accumulateByCell(field, w, h, res, ox, oy, pts, pose, n, want)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("case %d (%d×%d, n %d, %d points): offset %d sums %v, cell by cell %v", c, w, h, n, len(pts), i, got[i], want[i])
			}
		}
	}
}
