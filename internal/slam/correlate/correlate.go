// Package correlate is the inner loop of correlative scan matching (Olson,
// "Real-Time Correlative Scan Matching", ICRA 2009, §III): the sum of a
// likelihood field under a set of points, for every whole-cell translation
// of a small search window at once. Both the localization of submaps
// (internal/slam/match) and scan-to-map tracking (internal/slam/localslam)
// spend most of their search time here.
package correlate

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// Point is a point of a scan or submap in its own frame, in metres.
type Point struct{ X, Y float64 }

// Field is a likelihood field: W×H cells, row-major, Res metres per cell,
// the corner of cell (0, 0) at (OX, OY) in the frame poses are given in.
type Field struct {
	Cells  []float32
	W, H   int
	Res    float64
	OX, OY float64
}

// Accumulate adds to out, for every translation offset (i, j) in [-n, n]²
// cells, the field values under pts transformed by pose shifted by (i, j)
// cells: out[(j+n)·(2n+1) + i+n], (2n+1)² sums, row-major. A point's cell
// outside the field adds nothing. A shift by whole cells shifts every
// point's cell by the same amount, so each point costs one transform and a
// (2n+1)² block read of contiguous rows; the windows of the searches that
// use it (n = 2 and 3) have unrolled block reads. Each sum gets its terms
// in the order of pts, so results are the same bit for bit as a sum taken
// cell by cell.
func Accumulate(f Field, pts []Point, pose slam.Pose2D, n int, out []float32) {
	w, h := f.W, f.H
	field := f.Cells
	side := 2*n + 1
	s, c := math.Sincos(pose.Theta)
	inv := 1 / f.Res
	for _, p := range pts {
		x := pose.X + c*p.X - s*p.Y
		y := pose.Y + s*p.X + c*p.Y
		fx := (x - f.OX) * inv
		fy := (y - f.OY) * inv
		if fx < -float64(n+1) || fy < -float64(n+1) || fx > float64(w+n+1) || fy > float64(h+n+1) {
			continue
		}
		bx, by := int(math.Floor(fx)), int(math.Floor(fy))
		i0, i1 := max(-n, -bx), min(n, w-1-bx)
		j0, j1 := max(-n, -by), min(n, h-1-by)
		if i0 > i1 || j0 > j1 {
			continue
		}
		if i0 == -n && i1 == n && j0 == -n && j1 == n {
			switch n {
			case 2:
				addBlock5(field[(by-n)*w+bx-n:], w, (*[5 * 5]float32)(out))
				continue
			case 3:
				addBlock7(field[(by-n)*w+bx-n:], w, (*[7 * 7]float32)(out))
				continue
			}
		}
		for j := j0; j <= j1; j++ {
			row := field[(by+j)*w+bx+i0 : (by+j)*w+bx+i1+1]
			acc := out[(j+n)*side+n+i0 : (j+n)*side+n+i1+1]
			acc = acc[:len(row)]
			for t, v := range row {
				acc[t] += v
			}
		}
	}
}

// addBlock5 adds the 5×5 block of field whose first row starts at
// field[0], rows w apart, to out, row by row. Fixed sizes let the compiler
// drop the bounds checks and unroll the rows; nearly every point's block
// lies inside the field.
func addBlock5(field []float32, w int, out *[5 * 5]float32) {
	for j := range 5 {
		row := (*[5]float32)(field[j*w : j*w+5])
		acc := (*[5]float32)(out[j*5 : j*5+5])
		acc[0] += row[0]
		acc[1] += row[1]
		acc[2] += row[2]
		acc[3] += row[3]
		acc[4] += row[4]
	}
}

// addBlock7 is addBlock5 for the 7×7 block.
func addBlock7(field []float32, w int, out *[7 * 7]float32) {
	for j := range 7 {
		row := (*[7]float32)(field[j*w : j*w+7])
		acc := (*[7]float32)(out[j*7 : j*7+7])
		acc[0] += row[0]
		acc[1] += row[1]
		acc[2] += row[2]
		acc[3] += row[3]
		acc[4] += row[4]
		acc[5] += row[5]
		acc[6] += row[6]
	}
}
