package slam

import (
	"errors"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestPoseComposeInverse(t *testing.T) {
	t.Parallel()
	poses := []Pose2D{{}, {X: 1, Y: 2, Theta: 0.3}, {X: -4, Y: 0.5, Theta: -3}, {X: 10, Y: -7, Theta: math.Pi}}
	for _, p := range poses {
		for _, q := range poses {
			id := p.Compose(p.Inverse())
			if !near(id.X, 0) || !near(id.Y, 0) || !near(id.Theta, 0) {
				t.Errorf("%v ∘ inverse = %v, want identity", p, id)
			}
			// Composition must agree with applying the transforms in turn.
			x, y := q.Apply(0.7, -1.3)
			x, y = p.Apply(x, y)
			cx, cy := p.Compose(q).Apply(0.7, -1.3)
			if !near(x, cx) || !near(y, cy) {
				t.Errorf("(%v ∘ %v) applied = (%g, %g), want (%g, %g)", p, q, cx, cy, x, y)
			}
			ix, iy := p.Inverse().Apply(p.Apply(3, 4))
			if !near(ix, 3) || !near(iy, 4) {
				t.Errorf("inverse of %v does not undo it: (%g, %g)", p, ix, iy)
			}
		}
	}
}

func TestPoseValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    Pose2D
		ok   bool
	}{
		{"zero", Pose2D{}, true},
		{"normal", Pose2D{1, 2, 3}, true},
		{"nan x", Pose2D{X: math.NaN()}, false},
		{"inf y", Pose2D{Y: math.Inf(1)}, false},
		{"nan theta", Pose2D{Theta: math.NaN()}, false},
		{"-inf theta", Pose2D{Theta: math.Inf(-1)}, false},
		{"far away", Pose2D{X: 2 * MaxCoordinate}, false},
		{"many turns", Pose2D{Theta: -MaxHeading}, true},
		{"a corrupted heading", Pose2D{Theta: 1e300}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%v) = %v, want ok=%v", tc.p, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
		})
	}
}

func TestPoseStringOfWildValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p    Pose2D
		want string
	}{
		{Pose2D{X: 1.23456, Y: -2, Theta: math.Pi / 2}, "(1.235 m, -2.000 m, 90.00°)"},
		{Pose2D{X: 1e300, Y: math.Inf(-1), Theta: math.NaN()}, "(1e+300 m, -Inf m, NaN°)"},
		{Pose2D{X: -2.5e7, Theta: 1e9}, "(-2.5e+07 m, 0.000 m, 5.73e+10°)"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestNormalizeAngle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want float64 }{
		{0, 0}, {math.Pi, math.Pi}, {-math.Pi, math.Pi}, {3 * math.Pi, math.Pi},
		{2*math.Pi + 0.1, 0.1}, {-2*math.Pi - 0.1, -0.1}, {1e6, math.Remainder(1e6, 2*math.Pi)},
	} {
		if got := NormalizeAngle(tc.in); !near(got, tc.want) {
			t.Errorf("NormalizeAngle(%g) = %g, want %g", tc.in, got, tc.want)
		}
	}
	if d := AngleDiff(math.Pi-0.1, -math.Pi+0.1); !near(d, -0.2) {
		t.Errorf("AngleDiff across ±π = %g, want -0.2", d)
	}
}

func TestLaserScanValidate(t *testing.T) {
	t.Parallel()
	good := LaserScan{AngleMin: -math.Pi, AngleIncrement: 0.01, RangeMin: 0.1, RangeMax: 8, Ranges: []float32{1, float32(math.NaN())}}
	mut := func(f func(*LaserScan)) LaserScan { s := good; f(&s); return s }
	for _, tc := range []struct {
		name string
		s    LaserScan
		ok   bool
	}{
		{"good, garbage beams allowed", good, true},
		{"empty", mut(func(s *LaserScan) { s.Ranges = nil }), false},
		{"too many beams", mut(func(s *LaserScan) { s.Ranges = make([]float32, MaxBeams+1) }), false},
		{"nan angle", mut(func(s *LaserScan) { s.AngleMin = math.NaN() }), false},
		{"inf increment", mut(func(s *LaserScan) { s.AngleIncrement = math.Inf(1) }), false},
		{"negative range min", mut(func(s *LaserScan) { s.RangeMin = -1 }), false},
		{"max below min", mut(func(s *LaserScan) { s.RangeMax = 0.05 }), false},
		{"inf range max", mut(func(s *LaserScan) { s.RangeMax = math.Inf(1) }), false},
		{"absurd range max", mut(func(s *LaserScan) { s.RangeMax = 1e9 }), false},
		{"beams without increment", mut(func(s *LaserScan) { s.AngleIncrement = 0 }), false},
		{"one beam without increment", mut(func(s *LaserScan) { s.AngleIncrement, s.Ranges = 0, []float32{1} }), true},
		{"reverse sweep", mut(func(s *LaserScan) { s.AngleMin, s.AngleIncrement = math.Pi, -0.01 }), true},
		{"a full turn", mut(func(s *LaserScan) { s.AngleIncrement, s.Ranges = 2*math.Pi/360, make([]float32, 360) }), true},
		{"a full turn, its first direction repeated", mut(func(s *LaserScan) { s.AngleIncrement, s.Ranges = 2*math.Pi/360, make([]float32, 361) }), true},
		{"degrees sent as radians", mut(func(s *LaserScan) { s.AngleIncrement, s.Ranges = 0.5, make([]float32, 361) }), false},
		{"more than a turn", mut(func(s *LaserScan) { s.AngleIncrement, s.Ranges = 0.1, make([]float32, 180) }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
		})
	}
}
