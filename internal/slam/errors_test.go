package slam

import (
	"errors"
	"fmt"
	"testing"
)

func TestDetailTakesTheSentinelsOut(t *testing.T) {
	inner := fmt.Errorf("%w: the anchor placed at its guess leaves no wall inside the mission map", ErrInsufficientData)
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("plain"), "plain"},
		{fmt.Errorf("%w: resolution 0 m must be positive", ErrInvalidArgument), "resolution 0 m must be positive"},
		{inner, "the anchor placed at its guess leaves no wall inside the mission map"},
		{fmt.Errorf("agent #2: %w", inner), "agent #2: the anchor placed at its guess leaves no wall inside the mission map"},
		{fmt.Errorf("submap: %w", ErrTooLarge), "submap: grid too large"},
		{fmt.Errorf("map: %w: 1e+06x32.85 m at 0.05 m is 1.314e+10 cells", ErrTooLarge), "map: grid too large: 1e+06x32.85 m at 0.05 m is 1.314e+10 cells"},
		{fmt.Errorf("%w: 70000 cells left", ErrCapacity), "capacity budget exceeded: 70000 cells left"},
		{ErrAmbiguousMatch, "ambiguous match"},
		{fmt.Errorf("%w: %w: both", ErrInvalidArgument, ErrCapacity), "capacity budget exceeded: both"},
	} {
		if got := Detail(c.err); got != c.want {
			t.Errorf("Detail(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
