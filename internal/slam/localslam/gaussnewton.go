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
		if v, _, _, ok := m.sample(pose.X+c*p.x-s*p.y, pose.Y+s*p.x+c*p.y); ok {
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
		v, gx, gy, in := m.sample(pose.X+c*p.x-s*p.y, pose.Y+s*p.x+c*p.y)
		if !in {
			continue
		}
		n++
		j := [3]float64{gx, gy, gx*(-s*p.x-c*p.y) + gy*(c*p.x-s*p.y)}
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
// stays where it is. It returns the pose and the information matrix there.
func (m *localMap) gaussNewton(pts []point, start slam.Pose2D) (slam.Pose2D, [3][3]float64, bool) {
	pose := start
	var h [3][3]float64
	for range gnIters {
		b, hh, ok := m.information(pts, pose)
		if !ok {
			return start, h, false
		}
		h = hh
		damp := 1e-4 * (hh[0][0] + hh[1][1] + hh[2][2])
		for u := range 3 {
			hh[u][u] += damp
		}
		d, ok := solve3(hh, b)
		if !ok {
			return start, h, false
		}
		pose = slam.Pose2D{X: pose.X + d[0], Y: pose.Y + d[1], Theta: slam.NormalizeAngle(pose.Theta + d[2])}
		if math.Hypot(d[0], d[1]) < 1e-4 && math.Abs(d[2]) < 1e-5 {
			break
		}
	}
	_, h, _ = m.information(pts, pose)
	return pose, h, true
}

// weakDirection inspects the translation block of the information matrix:
// when its smaller eigenvalue is below ratio times the larger, it returns
// the unit eigenvector of the smaller one (the direction the scan does not
// constrain, e.g. along a corridor) and true. A matrix without information
// at all is degenerate in every direction; it reports the x axis, and the
// caller's second look (the score) decides.
func weakDirection(h [3][3]float64, ratio float64) ([2]float64, bool) {
	a, b, d := h[0][0], h[0][1], h[1][1]
	tr := a + d
	disc := math.Sqrt(math.Max((a-d)*(a-d)/4+b*b, 0))
	l1, l2 := tr/2+disc, tr/2-disc
	if !(l1 > 0) {
		return [2]float64{1, 0}, true
	}
	if l2 >= ratio*l1 {
		return [2]float64{}, false
	}
	// Eigenvector of l2: (b, l2 − a) or (l2 − d, b), whichever is larger.
	vx, vy := b, l2-a
	if ux, uy := l2-d, b; math.Hypot(ux, uy) > math.Hypot(vx, vy) {
		vx, vy = ux, uy
	}
	nrm := math.Hypot(vx, vy)
	if nrm == 0 {
		return [2]float64{1, 0}, true
	}
	return [2]float64{vx / nrm, vy / nrm}, true
}

// solve3 solves a 3×3 linear system by Cramer's rule.
func solve3(a [3][3]float64, b [3]float64) ([3]float64, bool) {
	det := func(m [3][3]float64) float64 {
		return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
			m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
			m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	}
	d := det(a)
	if d == 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return [3]float64{}, false
	}
	var x [3]float64
	for k := range 3 {
		mk := a
		for r := range 3 {
			mk[r][k] = b[r]
		}
		x[k] = det(mk) / d
	}
	return x, true
}
