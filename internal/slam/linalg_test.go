package slam

import (
	"math"
	"testing"
)

func TestSolve3(t *testing.T) {
	a := [3][3]float64{{4, 1, 0}, {1, 3, 1}, {0, 1, 2}}
	want := [3]float64{1, -2, 3}
	var b [3]float64
	for r := range 3 {
		for c := range 3 {
			b[r] += a[r][c] * want[c]
		}
	}
	x, ok := Solve3(a, b)
	if !ok {
		t.Fatal("Solve3 refused a regular system")
	}
	for k := range 3 {
		if math.Abs(x[k]-want[k]) > 1e-12 {
			t.Fatalf("x = %v, want %v", x, want)
		}
	}

	for name, a := range map[string][3][3]float64{
		"singular": {{1, 2, 3}, {2, 4, 6}, {0, 1, 1}},
		"NaN":      {{math.NaN(), 0, 0}, {0, 1, 0}, {0, 0, 1}},
		"infinite": {{math.Inf(1), 0, 0}, {0, 1, 0}, {0, 0, 1}},
	} {
		if x, ok := Solve3(a, [3]float64{1, 1, 1}); ok {
			t.Errorf("%s: Solve3 = %v, ok; want refused", name, x)
		}
	}
}
