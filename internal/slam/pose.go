package slam

import (
	"fmt"
	"math"
	"strconv"
)

// MaxCoordinate bounds pose coordinates in metres. It keeps every later
// conversion to cell indices far away from integer overflow; no robot map is a
// thousand kilometres wide.
const MaxCoordinate = 1e6

// MaxHeading bounds a pose's heading in radians, turns beyond ±π included:
// a heading of 10⁶ rad still reduces to ±π exactly in float64, and one of
// 10³⁰⁰ is a corrupted field, not an orientation.
const MaxHeading = 1e6

// Pose2D is a rigid 2D transform: a rotation by Theta (radians,
// counter-clockwise) followed by a translation (X, Y) in metres. Read a pose
// named a_from_b as "takes coordinates in frame b to frame a".
type Pose2D struct {
	X, Y, Theta float64
}

// Validate rejects poses that would silently poison every computation after
// them: NaN and infinite components, coordinates beyond MaxCoordinate and
// headings beyond MaxHeading.
func (p Pose2D) Validate() error {
	for _, v := range [...]float64{p.X, p.Y, p.Theta} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: pose %v is not finite", ErrInvalidArgument, p)
		}
	}
	if math.Abs(p.X) > MaxCoordinate || math.Abs(p.Y) > MaxCoordinate {
		return fmt.Errorf("%w: pose %v beyond ±%g m", ErrInvalidArgument, p, MaxCoordinate)
	}
	if math.Abs(p.Theta) > MaxHeading {
		return fmt.Errorf("%w: heading %.4g rad beyond ±%g rad", ErrInvalidArgument, p.Theta, MaxHeading)
	}
	return nil
}

// Compose returns p ∘ q, the transform that applies q first and then p; with
// p = a_from_b and q = b_from_c the result is a_from_c.
func (p Pose2D) Compose(q Pose2D) Pose2D {
	s, c := math.Sincos(p.Theta)
	return Pose2D{
		X:     p.X + c*q.X - s*q.Y,
		Y:     p.Y + s*q.X + c*q.Y,
		Theta: NormalizeAngle(p.Theta + q.Theta),
	}
}

// Inverse returns the transform that undoes p, so p.Compose(p.Inverse()) is
// the identity (up to rounding).
func (p Pose2D) Inverse() Pose2D {
	s, c := math.Sincos(p.Theta)
	return Pose2D{
		X:     -c*p.X - s*p.Y,
		Y:     s*p.X - c*p.Y,
		Theta: NormalizeAngle(-p.Theta),
	}
}

// Apply transforms the point (x, y) from p's source frame to its target frame.
func (p Pose2D) Apply(x, y float64) (float64, float64) {
	s, c := math.Sincos(p.Theta)
	return p.X + c*x - s*y, p.Y + s*x + c*y
}

// String prints a pose compactly for logs and error messages.
func (p Pose2D) String() string {
	return "(" + fixed(p.X, 3) + " m, " + fixed(p.Y, 3) + " m, " + fixed(p.Theta*180/math.Pi, 2) + "°)"
}

// fixed formats v with prec decimals, or in exponent form past a million,
// so that a wild value in an error (a pose of 1e300 m) stays readable.
func fixed(v float64, prec int) string {
	if math.Abs(v) < 1e6 || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// NormalizeAngle wraps an angle into (-π, π], so angle differences and
// comparisons never see a spurious 2π.
func NormalizeAngle(a float64) float64 {
	if math.IsNaN(a) || math.IsInf(a, 0) {
		return a
	}
	if a > -math.Pi && a <= math.Pi {
		return a
	}
	a = math.Mod(a, 2*math.Pi)
	if a <= -math.Pi {
		a += 2 * math.Pi
	} else if a > math.Pi {
		a -= 2 * math.Pi
	}
	return a
}

// AngleDiff returns the signed smallest difference a-b in (-π, π].
func AngleDiff(a, b float64) float64 {
	return NormalizeAngle(a - b)
}
