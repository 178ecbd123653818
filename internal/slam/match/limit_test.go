package match

import (
	"math"
	"testing"
)

// TestFreeConflictLimitScalesWithSearchVolume: the wideness of a search is 0
// for a default window and 1 for a wide one; the verification limit is
// MaxFreeConflict for the default window (also when the searched window is
// rounded out to whole search cells), MaxWideFreeConflict for a search
// without a guess and for windows of wideSearchRatio default windows or more
// (a window the map clips counts by what was searched), and falls
// log-linearly in between.
func TestFreeConflictLimitScalesWithSearchVolume(t *testing.T) {
	def, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	window := func(xy, th float64) Window {
		return Window{MinX: -xy, MaxX: xy, MinY: -xy, MaxY: xy, HalfTheta: th}
	}
	wide := func(xy, th float64) Options {
		o := def
		o.WindowXY, o.WindowTheta = xy, th
		return o
	}
	const eps = 1e-9
	for _, tc := range []struct {
		name string
		opts Options
		w    Window
		want float64
	}{
		{"default window", def, window(DefaultWindowXY, DefaultWindowTheta), DefaultMaxFreeConflict},
		{"default window rounded out by a search cell", def, window(DefaultWindowXY+0.2, DefaultWindowTheta), DefaultMaxFreeConflict},
		{"smaller window", wide(0.5, 0.1), window(0.5, 0.1), DefaultMaxFreeConflict},
		{"no guess", def, Window{Global: true, MaxX: 1, MaxY: 1, HalfTheta: math.Pi}, DefaultMaxWideFreeConflict},
		{"64 default windows", wide(4*DefaultWindowXY, 4*DefaultWindowTheta), window(4*DefaultWindowXY, 4*DefaultWindowTheta), DefaultMaxWideFreeConflict},
		{"8 default windows: halfway in the logarithm", wide(2*DefaultWindowXY, 2*DefaultWindowTheta), window(2*DefaultWindowXY, 2*DefaultWindowTheta),
			(DefaultMaxFreeConflict + DefaultMaxWideFreeConflict) / 2},
		{"a huge request the map clips to the default volume", wide(MaxWindowXY, math.Pi), window(DefaultWindowXY, DefaultWindowTheta), DefaultMaxFreeConflict},
	} {
		if got := tc.opts.freeConflictLimit(tc.w); math.Abs(got-tc.want) > eps {
			t.Errorf("%s: limit %.4f, want %.4f", tc.name, got, tc.want)
		}
		// The margin a wide search needs scales by the same wideness.
		wantWide := (DefaultMaxFreeConflict - tc.want) / (DefaultMaxFreeConflict - DefaultMaxWideFreeConflict)
		if got := tc.opts.wideness(tc.w); math.Abs(got-wantWide) > eps {
			t.Errorf("%s: wideness %.4f, want %.4f", tc.name, got, wantWide)
		}
	}
	loose := def
	loose.MaxWideFreeConflict = 0.9
	if got := loose.freeConflictLimit(Window{Global: true}); got != DefaultMaxFreeConflict {
		t.Errorf("a wide limit above MaxFreeConflict: %.3f, want MaxFreeConflict %.3f", got, DefaultMaxFreeConflict)
	}
}
