package localization

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// TestStatusMessagesCarryNoSentinelText: what a caller reads (slamctl get,
// the console) says what is wrong, not the name of a Go error value; the
// category is the status's reason.
func TestStatusMessagesCarryNoSentinelText(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	agents := []slamproto.Agent{{ID: "robot-0", Anchor: true}, {ID: "robot-1"}}
	for _, c := range []struct {
		err  error
		code codes.Code
		want string
	}{
		{
			&localizeError{err: fmt.Errorf("%w: the anchor placed at its guess leaves no wall inside the mission map", slam.ErrInsufficientData), agents: agents},
			codes.FailedPrecondition,
			"the anchor robot-0 gives no reference to localize against: the anchor placed at its guess leaves no wall inside the mission map",
		},
		{
			fmt.Errorf("%w: agent 1: scan 3 has 5 beams and angle_increment 0", slam.ErrInvalidArgument),
			codes.InvalidArgument,
			"agent 1: scan 3 has 5 beams and angle_increment 0",
		},
		{
			&slamproto.FieldError{Field: "agents[1].submap", Err: fmt.Errorf("%w: resolution -1 m", slam.ErrInvalidArgument)},
			codes.InvalidArgument,
			"resolution -1 m",
		},
	} {
		st := status.Convert(s.toStatus(context.Background(), c.err))
		if st.Code() != c.code || !strings.Contains(st.Message(), c.want) || strings.Contains(st.Message(), "slam: ") {
			t.Errorf("toStatus(%v) = %v %q, want %v with %q and no \"slam: \"", c.err, st.Code(), st.Message(), c.code, c.want)
		}
	}
}

// TestFailureDetailCrowd: a wide search refused because its best pose does
// not stand clear of the others says so with the margin and its threshold,
// not "score 0.300 < 0.070" (the score passed MinScore).
func TestFailureDetailCrowd(t *testing.T) {
	err := &match.LocalizationError{
		Reason: slam.ErrInsufficientOverlap, Crowd: true, Threshold: 0.07,
		Result: match.Result{Agent: 1, Score: 0.3, Margin: 0.04, Search: match.Window{Global: true}},
	}
	got := failureDetail(err)
	for _, want := range []string{"does not stand clear", "margin 0.0400 < 0.0700", "whole map (no initial guess)", "an initial guess near the agent's pose"} {
		if !strings.Contains(got, want) {
			t.Errorf("detail %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "too little overlap") {
		t.Errorf("detail %q reports the score against the margin's threshold", got)
	}
}

// A refusal whose best pose lies on the window's edge adds that the guess
// may be farther off and how to widen the window, with slamctl's flags
// (found by a review: a weak score beside a best pose past the window
// said nothing of the window).
func TestFailureDetailOnTheEdge(t *testing.T) {
	err := &match.LocalizationError{
		Reason: slam.ErrInsufficientOverlap, Threshold: 0.25, OnEdge: true,
		Result: match.Result{Agent: 2, Score: 0.178, Pose: slam.Pose2D{X: 7.68}, Search: match.Window{MinX: 5.55, MaxX: 7.55, MinY: -1, MaxY: 1, HalfTheta: 0.349}},
	}
	got := failureDetail(err)
	for _, want := range []string{"score 0.178 < 0.250", "on the edge of the search window", "--search-window-m"} {
		if !strings.Contains(got, want) {
			t.Errorf("detail %q lacks %q", got, want)
		}
	}
}
