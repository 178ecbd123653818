package missionfmt

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

func TestBar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p    float64
		want string
	}{
		{0, "[....................]   0%"},
		{0.5, "[##########..........]  50%"},
		{1, "[####################] 100%"},
		{2, "[####################] 100%"},
		{-1, "[....................]   0%"},
	} {
		if got := Bar(tc.p); got != tc.want {
			t.Errorf("Bar(%v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestEventLine(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Event(&b, &eventsv1.MissionEvent{
		Type: eventsv1.EventType_EVENT_TYPE_STEP_FAILED, Step: "localize_agents", Attempt: 2,
		Message: "agent a2", ErrorCode: "FAILED_PRECONDITION", ErrorReason: "INSUFFICIENT_OVERLAP",
		Ts: timestamppb.Now(),
	})
	line := b.String()
	for _, want := range []string{"step.failed", "localize_agents", "attempt 2", "agent a2", "[FAILED_PRECONDITION INSUFFICIENT_OVERLAP]"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}

// TestRetryLineNamesItsAttemptOnce: the saga's step.retrying message
// starts with the attempt, which the line does not repeat.
func TestRetryLineNamesItsAttemptOnce(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Event(&b, &eventsv1.MissionEvent{
		Type: eventsv1.EventType_EVENT_TYPE_STEP_RETRYING, Step: "localize_agents", Attempt: 2,
		Message: "attempt 2 in 1.872ms after: injected", Ts: timestamppb.Now(),
	})
	if n := strings.Count(b.String(), "attempt 2"); n != 1 {
		t.Errorf("line %q names attempt 2 %d times, want once", b.String(), n)
	}
}

func TestMissionBlock(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Mission(&b, &orchestratorv1.Mission{
		MissionId: "m1", State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		Steps: []*orchestratorv1.Step{{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_COMPENSATED, Attempts: 1, CompensationAttempts: 1}},
		Error: &orchestratorv1.MissionError{Code: "FAILED_PRECONDITION", Reason: "AMBIGUOUS_MATCH", Message: "corridor"},
	})
	out := b.String()
	for _, want := range []string{"state     COMPENSATED", "allocate_map", "compensations 1", "FAILED_PRECONDITION AMBIGUOUS_MATCH: corridor"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestMissionStepRetrying: a step in flight after a failed attempt says
// what it retries after (found by a review: a step stuck on an unreachable
// service showed only its attempts); a compensation's first attempt, which
// carries the action's error, does not.
func TestMissionStepRetrying(t *testing.T) {
	t.Parallel()
	unreachable := &orchestratorv1.MissionError{Code: "UNAVAILABLE", Message: "connection refused"}
	for _, tc := range []struct {
		step *orchestratorv1.Step
		want bool
	}{
		{&orchestratorv1.Step{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_RUNNING, Attempts: 24, Error: unreachable}, true},
		{&orchestratorv1.Step{Name: "merge_maps", State: orchestratorv1.StepState_STEP_STATE_COMPENSATING, Attempts: 1, CompensationAttempts: 3, Error: unreachable}, true},
		{&orchestratorv1.Step{Name: "merge_maps", State: orchestratorv1.StepState_STEP_STATE_COMPENSATING, Attempts: 1, CompensationAttempts: 1, Error: unreachable}, false},
		{&orchestratorv1.Step{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_SUCCEEDED, Attempts: 3, Error: unreachable}, false},
	} {
		var b bytes.Buffer
		Mission(&b, &orchestratorv1.Mission{MissionId: "m1", State: orchestratorv1.MissionState_MISSION_STATE_RUNNING, Steps: []*orchestratorv1.Step{tc.step}})
		if got := strings.Contains(b.String(), "retrying after UNAVAILABLE: connection refused"); got != tc.want {
			t.Errorf("%s %v: says retrying %v, want %v:\n%s", tc.step.GetName(), tc.step.GetState(), got, tc.want, b.String())
		}
	}
}

func TestMissionErrorWithoutReason(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Mission(&b, &orchestratorv1.Mission{
		MissionId: "m1", State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		Error: &orchestratorv1.MissionError{Code: "UNAVAILABLE", Message: "connection refused"},
	})
	if out := b.String(); !strings.Contains(out, "error     UNAVAILABLE: connection refused\n") {
		t.Errorf("output:\n%s", out)
	}
}

// A map no merge wrote is "not merged", not "version 0, consistency
// 0.000", which read as a merge that measured 0 (found by a review).
func TestMissionMapBeforeAMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    *orchestratorv1.Mission
		want string
	}{
		{&orchestratorv1.Mission{MapId: "map-1"}, "map       map-1, not merged\n"},
		{&orchestratorv1.Mission{MapId: "map-1", MapVersion: 2, Consistency: 0.98765}, "map       map-1 version 2, consistency 0.988\n"},
	} {
		var b bytes.Buffer
		Mission(&b, tc.m)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("mission block:\n%s\nlacks %q", b.String(), tc.want)
		}
	}
}

// The agents' poses are what a mission found: a review had to ask for
// --json to see them.
func TestMissionPoses(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Mission(&b, &orchestratorv1.Mission{MapId: "map-1", Poses: []*typesv1.AgentPose{
		{AgentId: "robot-0", MapFromAgent: &typesv1.Pose2D{X: 10.5555, Y: -1.58837, Theta: -1.99055}, Anchor: true},
		{AgentId: "r1", MapFromAgent: &typesv1.Pose2D{X: -19.842, Y: 1.259, Theta: -0.0927}, Score: 0.4712, Ambiguity: 0.25},
	}})
	for _, want := range []string{
		"poses     robot-0 x   10.556 m  y   -1.588 m  θ -114.050°  anchor (given)\n",
		"          r1      x  -19.842 m  y    1.259 m  θ   -5.311°  score 0.471, ambiguity 0.250\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("mission block:\n%s\nlacks %q", b.String(), want)
		}
	}
}
