package localslam

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// sample returns the fine field at (x, y), bilinearly interpolated between
// cell centres, and its gradient per metre (Kohlbrecher et al. 2011, eq. 4–6);
// ok is false outside the field.
func (m *localMap) sample(x, y float64) (v, gx, gy float64, ok bool) {
	fx := (x-m.ox)/m.res - 0.5
	fy := (y-m.oy)/m.res - 0.5
	if !(fx >= 0 && fy >= 0 && fx < float64(m.w-1) && fy < float64(m.h-1)) {
		return 0, 0, 0, false
	}
	x0, y0 := int(fx), int(fy)
	ax, ay := fx-float64(x0), fy-float64(y0)
	i := y0*m.w + x0
	v00, v10 := float64(m.fine[i]), float64(m.fine[i+1])
	v01, v11 := float64(m.fine[i+m.w]), float64(m.fine[i+m.w+1])
	v = (v00*(1-ax)+v10*ax)*(1-ay) + (v01*(1-ax)+v11*ax)*ay
	gx = ((v10-v00)*(1-ay) + (v11-v01)*ay) / m.res
	gy = ((v01-v00)*(1-ax) + (v11-v10)*ax) / m.res
	return v, gx, gy, true
}

// meanBilinear is the mean interpolated likelihood of pts at pose.
func (m *localMap) meanBilinear(pts []point, pose slam.Pose2D) float64 {
	s, c := math.Sincos(pose.Theta)
	var sum float64
	for _, p := range pts {
		if v, _, _, ok := m.sample(pose.X+c*p.X-s*p.Y, pose.Y+s*p.X+c*p.Y); ok {
			sum += v
		}
	}
	return sum / float64(max(len(pts), 1))
}

// information returns the Gauss-Newton normal equations of Σ(1 − M(T(p)))²
// at pose: H = ΣJᵀJ and b = ΣJᵀ(1 − M), with J = ∇M · ∂T(p)/∂(x, y, θ);
// ok is false when no point lies on the field.
func (m *localMap) information(pts []point, pose slam.Pose2D) (b [3]float64, h [3][3]float64, ok bool) {
	s, c := math.Sincos(pose.Theta)
	n := 0
	for _, p := range pts {
		v, gx, gy, in := m.sample(pose.X+c*p.X-s*p.Y, pose.Y+s*p.X+c*p.Y)
		if !in {
			continue
		}
		n++
		j := [3]float64{gx, gy, gx*(-s*p.X-c*p.Y) + gy*(c*p.X-s*p.Y)}
		r := 1 - v
		for u := range 3 {
			b[u] += j[u] * r
			for w := range 3 {
				h[u][w] += j[u] * j[w]
			}
		}
	}
	return b, h, n > 0
}

// gaussNewton minimises Σ(1 − M(T(p)))² over the pose from start, as Hector
// SLAM does, with a little damping so that a direction no point constrains
// stays where it is.
func (m *localMap) gaussNewton(pts []point, start slam.Pose2D) (slam.Pose2D, bool) {
	pose := start
	for range gnIters {
		b, h, ok := m.information(pts, pose)
		if !ok {
			return start, false
		}
		damp := 1e-4 * (h[0][0] + h[1][1] + h[2][2])
		for u := range 3 {
			h[u][u] += damp
		}
		d, ok := slam.Solve3(h, b)
		if !ok {
			return start, false
		}
		pose = slam.Pose2D{X: pose.X + d[0], Y: pose.Y + d[1], Theta: slam.NormalizeAngle(pose.Theta + d[2])}
		if math.Hypot(d[0], d[1]) < 1e-4 && math.Abs(d[2]) < 1e-5 {
			break
		}
	}
	return pose, true
}

// normalWindow is how far (metres) neighbouring scan points may lie from a
// point to take part in estimating its surface normal.
const normalWindow = 0.25

// weakDirection tells whether the scan constrains its translation in every
// direction, from the scan alone: the surface normal at every point (the
// principal axes of it and its neighbours along the scan) adds n·nᵀ to a
// 2×2 matrix, whose eigenvalues say how much the scan's geometry pins x and
// y (the translational part of the ICP information matrix; Censi 2007, "An
// accurate closed-form estimate of ICP's covariance"; Zhang et al. 2016,
// "On degeneracy of optimization-based state estimation problems"). When the
// smaller eigenvalue is below ratio times the larger (a corridor: every
// normal points across it), it returns the unit eigenvector of the smaller
// one in the sensor frame, and true; a scan without any line-like piece
// reports false. The map is not consulted on purpose:
// its edge (the end of the walls mapped so far) looks like structure along a
// corridor and pulls a new scan back into the mapped part.
func weakDirection(pts []point, ratio float64) ([2]float64, bool) {
	var a, b, d float64 // Σ n nᵀ = [[a, b], [b, d]]
	for i, p := range pts {
		var n, sx, sy, sxx, sxy, syy float64
		for j := max(i-2, 0); j <= min(i+2, len(pts)-1); j++ {
			q := pts[j]
			if dx, dy := q.X-p.X, q.Y-p.Y; dx*dx+dy*dy > normalWindow*normalWindow {
				continue
			}
			n++
			sx += q.X
			sy += q.Y
			sxx += q.X * q.X
			sxy += q.X * q.Y
			syy += q.Y * q.Y
		}
		if n < 3 {
			continue
		}
		mx, my := sx/n, sy/n
		cxx, cxy, cyy := sxx/n-mx*mx, sxy/n-mx*my, syy/n-my*my
		l1, l2, _ := eigen2(cxx, cxy, cyy)
		if l1 <= 0 || l2 > 0.1*l1 {
			continue // not a piece of line
		}
		_, _, nv := eigen2(cxx, cxy, cyy)
		a += nv[0] * nv[0]
		b += nv[0] * nv[1]
		d += nv[1] * nv[1]
	}
	l1, l2, weak := eigen2(a, b, d)
	if !(l1 > 0) {
		// No piece of line at all (clutter, a few scattered returns): the
		// normals cannot judge, and the score guards decide alone.
		return [2]float64{}, false
	}
	return weak, l2 < ratio*l1
}

// eigen2 returns the eigenvalues l1 ≥ l2 of the symmetric matrix
// [[a, b], [b, d]] and the unit eigenvector of l2.
func eigen2(a, b, d float64) (l1, l2 float64, v [2]float64) {
	tr := a + d
	disc := math.Sqrt(math.Max((a-d)*(a-d)/4+b*b, 0))
	l1, l2 = tr/2+disc, tr/2-disc
	vx, vy := b, l2-a
	if ux, uy := l2-d, b; math.Hypot(ux, uy) > math.Hypot(vx, vy) {
		vx, vy = ux, uy
	}
	if nrm := math.Hypot(vx, vy); nrm > 0 {
		return l1, l2, [2]float64{vx / nrm, vy / nrm}
	}
	// Isotropic: every direction is an eigenvector.
	return l1, l2, [2]float64{1, 0}
}
