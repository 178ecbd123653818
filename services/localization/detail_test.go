package localization

import (
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/match"
)

// TestFailureDetailCrowd: a wide search refused because its best pose does
// not stand clear of the others says so with the margin and its threshold,
// not "score 0.300 < 0.070" (the score passed MinScore).
func TestFailureDetailCrowd(t *testing.T) {
	err := &match.LocalizationError{
		Reason: slam.ErrInsufficientOverlap, Crowd: true, Threshold: 0.07,
		Result: match.Result{Agent: 1, Score: 0.3, Margin: 0.04, Search: match.Window{Global: true}},
	}
	got := failureDetail(err)
	for _, want := range []string{"does not stand clear", "margin 0.040 < 0.070", "whole map (no initial guess)"} {
		if !strings.Contains(got, want) {
			t.Errorf("detail %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "too little overlap") {
		t.Errorf("detail %q reports the score against the margin's threshold", got)
	}
}
