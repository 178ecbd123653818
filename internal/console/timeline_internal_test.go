package console

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/progress"
)

func TestBuildTimelineOfACompensatedMission(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := []progress.Event{
		{Type: progress.MissionStarted, Time: at(0)},
		{Type: progress.StepStarted, Step: "allocate_map", Attempt: 1, Time: at(1)},
		{Type: progress.StepCompleted, Step: "allocate_map", Attempt: 1, Time: at(11)},
		{Type: progress.StepStarted, Step: "localize_agents", Attempt: 1, Time: at(12)},
		// The first attempt stalled past its deadline: its service never said so.
		{Type: progress.StepRetrying, Step: "localize_agents", Attempt: 2, ErrorCode: "DEADLINE_EXCEEDED", Time: at(50)},
		{Type: progress.StepStarted, Step: "localize_agents", Attempt: 2, Time: at(60)},
		{Type: progress.StepFailed, Step: "localize_agents", Attempt: 2, ErrorCode: "FAILED_PRECONDITION", ErrorReason: "INSUFFICIENT_OVERLAP", Time: at(70)},
		{Type: progress.CompensationStarted, Step: "localize_agents", Attempt: 1, Time: at(71)},
		{Type: progress.CompensationCompleted, Step: "localize_agents", Attempt: 1, Time: at(75)},
		{Type: progress.CompensationStarted, Step: "allocate_map", Attempt: 1, Time: at(76)},
		{Type: progress.CompensationFailed, Step: "allocate_map", Attempt: 1, ErrorCode: "UNAVAILABLE", Time: at(80)},
		{Type: progress.CompensationStarted, Step: "allocate_map", Attempt: 2, Time: at(90)},
		{Type: progress.CompensationCompleted, Step: "allocate_map", Attempt: 2, Time: at(100)},
		{Type: progress.MissionCompensated, Time: at(100)},
	}
	tl := buildTimeline(events, at(5000))
	if tl.Total != "100ms" {
		t.Errorf("total %s, want 100ms (to the terminal event, not now)", tl.Total)
	}
	type got struct {
		phase, step string
		attempt     int
		outcome     string
	}
	var spans []got
	for _, s := range tl.Spans {
		spans = append(spans, got{s.Phase, s.Step, s.Attempt, s.Outcome})
	}
	want := []got{
		{"action", "allocate_map", 1, "ok"},
		{"action", "localize_agents", 1, "failed"},
		{"action", "localize_agents", 2, "failed"},
		{"compensation", "localize_agents", 1, "ok"},
		{"compensation", "allocate_map", 1, "failed"},
		{"compensation", "allocate_map", 2, "ok"},
	}
	if !slices.Equal(spans, want) {
		t.Errorf("spans\n%v\nwant\n%v", spans, want)
	}
	if s := tl.Spans[1]; s.Code != "DEADLINE_EXCEEDED" || s.Duration != "38ms" {
		t.Errorf("stalled attempt: code %q, duration %s; want DEADLINE_EXCEEDED, 38ms", s.Code, s.Duration)
	}
	if s := tl.Spans[0]; math.Abs(s.LeftPct-1) > 1e-9 || math.Abs(s.WidthPct-10) > 1e-9 {
		t.Errorf("first bar at %.2f%% width %.2f%%, want 1%% and 10%%", s.LeftPct, s.WidthPct)
	}
	if len(tl.Retries) != 1 || tl.Retries[0].Code != "DEADLINE_EXCEEDED" {
		t.Errorf("retries %+v", tl.Retries)
	}
	var comps []string
	for _, c := range tl.Compensations {
		comps = append(comps, c.Step+":"+c.Outcome)
	}
	if !slices.Equal(comps, []string{"localize_agents:completed", "allocate_map:failed", "allocate_map:completed"}) {
		t.Errorf("compensations %v", comps)
	}
}

func TestBuildTimelineOfARunningMission(t *testing.T) {
	t0 := time.Now()
	tl := buildTimeline([]progress.Event{
		{Type: progress.MissionStarted, Time: t0},
		{Type: progress.StepStarted, Step: "allocate_map", Attempt: 1, Time: t0},
	}, t0.Add(2*time.Second))
	if len(tl.Spans) != 1 || tl.Spans[0].Outcome != "running" || tl.Spans[0].Duration != "2.0s" {
		t.Errorf("spans %+v: want one running for 2s", tl.Spans)
	}
	if got := buildTimeline(nil, t0); len(got.Spans) != 0 || got.Total != "" {
		t.Errorf("empty stream: %+v", got)
	}
}

func TestQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4, math.Inf(1)}
	cum := []uint64{10, 20, 20, 20}
	for _, tt := range []struct{ p, want float64 }{{0.5, 1}, {0.75, 1.5}, {0.99, 1.98}, {0.25, 0.5}} {
		if got := quantile(tt.p, bounds, cum, 20); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	// Past the last finite bound: the largest finite bound, as Prometheus.
	if got := quantile(0.99, []float64{1, math.Inf(1)}, []uint64{1, 10}, 10); got != 1 {
		t.Errorf("quantile in +Inf = %v, want 1", got)
	}
}
