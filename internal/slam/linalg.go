package slam

import "math"

// Solve3 solves the 3×3 linear system a·x = b by Cramer's rule: the
// normal equations of one Gauss–Newton or ICP step in (x, y, θ). ok is
// false when a is singular or its determinant is NaN or infinite (a
// degenerate step, which the caller ends its iteration on rather than
// move the pose by NaN).
func Solve3(a [3][3]float64, b [3]float64) (x [3]float64, ok bool) {
	det := func(m [3][3]float64) float64 {
		return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
			m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
			m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	}
	d := det(a)
	if d == 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return [3]float64{}, false
	}
	for k := range 3 {
		mk := a
		for r := range 3 {
			mk[r][k] = b[r]
		}
		x[k] = det(mk) / d
	}
	return x, true
}
