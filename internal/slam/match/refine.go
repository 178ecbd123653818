package match

// Polishing a pose: the fine correlative search around a peak of the
// coarse search, the score of a pose on the fine likelihood field, and the
// point-to-line ICP that ends every match.

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/correlate"
)

// fineN is the fine search's reach in cells, and fineSide its box's side;
// fineRounds is how many times it re-centres its box at most.
const (
	fineN      = 3
	fineSide   = 2*fineN + 1
	fineRounds = 4
)

// fineSearch refines a coarse peak on the fine field: ±3 cells in x and y
// and ±3 fine rotation steps (a quarter of the coarse step) about pivot (in
// the agent frame), re-centred when the maximum sits on the border of that
// box.
func (r *Reference) fineSearch(pts []point, start slam.Pose2D, coarseStep float64, pivot point) peak {
	const n, nRot, side = fineN, 3, fineSide
	dTheta := coarseStep / 4
	field := correlate.Field{Cells: r.fine, W: r.meta.Width, H: r.meta.Height, Res: r.meta.Resolution, OX: r.meta.Origin.X, OY: r.meta.Origin.Y}
	scores := make([]float32, side*side)
	best := peak{pose: start, score: -1}
	center := start
	for range fineRounds {
		moved := false
		px, py := center.Apply(pivot.X, pivot.Y)
		for k := -nRot; k <= nRot; k++ {
			clear(scores)
			th := center.Theta + float64(k)*dTheta
			// The origin that keeps the pivot where center puts it.
			turned := slam.Pose2D{Theta: th}
			turned.X, turned.Y = turned.Apply(-pivot.X, -pivot.Y)
			turned.X += px
			turned.Y += py
			correlate.Accumulate(field, pts, turned, n, scores)
			for j := range side {
				for i := range side {
					if s := float64(scores[j*side+i]); s > best.score {
						best = peak{pose: slam.Pose2D{
							X:     turned.X + float64(i-n)*r.meta.Resolution,
							Y:     turned.Y + float64(j-n)*r.meta.Resolution,
							Theta: slam.NormalizeAngle(th),
						}, score: s}
						moved = i == 0 || j == 0 || i == side-1 || j == side-1 || k == -nRot || k == nRot
					}
				}
			}
		}
		if !moved {
			break
		}
		center = best.pose
	}
	best.score /= float64(max(len(pts), 1))
	return best
}

// evaluate returns the mean fine likelihood of pts at pose and the fraction
// of them within two cells of an occupied reference cell.
func (r *Reference) evaluate(pts []point, pose slam.Pose2D) (score, inliers float64) {
	m := r.meta
	s, c := math.Sincos(pose.Theta)
	var sum float64
	in := 0
	for _, p := range pts {
		x := pose.X + c*p.X - s*p.Y
		y := pose.Y + s*p.X + c*p.Y
		cx, cy, ok := m.CellOf(x, y)
		if !ok {
			continue
		}
		i := cy*m.Width + cx
		sum += float64(r.fine[i])
		if r.dist2[i] <= 4 {
			in++
		}
	}
	n := float64(max(len(pts), 1))
	return sum / n, float64(in) / n
}

// icpGate is the distance in metres beyond which iteration it of ICP drops
// a pair, on a reference of resolution res: 30 cm shrinking by 0.7 per
// iteration, down to two cells.
func icpGate(res float64, it int) float64 {
	return math.Max(2*res, 0.3*math.Pow(0.7, float64(it)))
}

// icpGate2 is icpGate in squared cells, as ICP compares it with the
// distance transform.
func icpGate2(res float64, it int) float32 {
	gate := icpGate(res, it)
	return float32(gate * gate / (res * res))
}

// icp refines pose with point-to-line ICP: each submap point is paired with
// the nearest occupied reference cell (a table lookup, thanks to the distance
// transform), pairs farther than a shrinking gate are dropped, and the pose
// increment minimising the squared distances to the walls through the paired
// cells (point-to-point where the cell is a corner) is solved from the 3×3
// normal equations of the linearised problem. Point-to-line lets a scan
// slide along a wall, which is what converges in a few iterations to
// sub-cell accuracy on grids quantised to whole cells.
func (r *Reference) icp(pts []point, pose slam.Pose2D, maxIter int) (slam.Pose2D, int) {
	m := r.meta
	res := m.Resolution
	iters := 0
	for it := range maxIter {
		iters = it + 1
		gate := icpGate(res, it)
		gate2 := icpGate2(res, it)
		s, c := math.Sincos(pose.Theta)
		// Centroid of the transformed points keeps the rotation column of
		// the Jacobian well conditioned.
		var cx0, cy0 float64
		for _, p := range pts {
			cx0 += pose.X + c*p.X - s*p.Y
			cy0 += pose.Y + s*p.X + c*p.Y
		}
		cx0 /= float64(len(pts))
		cy0 /= float64(len(pts))
		var a [3][3]float64
		var b [3]float64
		pairs := 0
		// Cauchy weights (scale: one cell) make the solution robust to the
		// pairs that are wrong, such as a wall seen from its far side.
		k2 := res * res
		add := func(nx, ny, px, py, e float64) {
			wt := 1 / (1 + e*e/k2)
			j := [3]float64{nx, ny, nx*(-py) + ny*px}
			for u := range 3 {
				for v := range 3 {
					a[u][v] += wt * j[u] * j[v]
				}
				b[u] -= wt * j[u] * e
			}
		}
		for _, p := range pts {
			x := pose.X + c*p.X - s*p.Y
			y := pose.Y + s*p.X + c*p.Y
			cx, cy, ok := m.CellOf(x, y)
			if !ok {
				continue
			}
			i := cy*m.Width + cx
			if r.dist2[i] > gate2 {
				continue
			}
			q := int(r.nearest[i])
			qx, qy := m.Center(q%m.Width, q/m.Width)
			dx, dy := x-qx, y-qy
			px, py := x-cx0, y-cy0
			pairs++
			if nx, ny := float64(r.normals[2*q]), float64(r.normals[2*q+1]); nx != 0 || ny != 0 {
				add(nx, ny, px, py, nx*dx+ny*dy)
			} else {
				add(1, 0, px, py, dx)
				add(0, 1, px, py, dy)
			}
		}
		if pairs < 10 {
			break
		}
		// A little damping keeps directions no wall constrains (along a
		// corridor) where they are instead of letting noise move them.
		damp := 1e-6 * (a[0][0] + a[1][1] + a[2][2])
		for u := range 3 {
			a[u][u] += damp
		}
		d, ok := slam.Solve3(a, b)
		if !ok {
			break
		}
		ds, dc := math.Sincos(d[2])
		// x' = R(dθ)(x - c0) + c0 + dt
		inc := slam.Pose2D{X: cx0 - (dc*cx0 - ds*cy0) + d[0], Y: cy0 - (ds*cx0 + dc*cy0) + d[1], Theta: d[2]}
		pose = inc.Compose(pose)
		if math.Hypot(d[0], d[1]) < 1e-4 && math.Abs(d[2]) < 1e-5 && gate <= 2*res {
			break
		}
	}
	return pose, iters
}
