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
		{ErrAmbiguousMatch, "ambiguous match"},
		{fmt.Errorf("%w: %w: both", ErrInvalidArgument, ErrCapacity), "both"},
	} {
		if got := Detail(c.err); got != c.want {
			t.Errorf("Detail(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
