//go:build soak

package soak

import (
	"strings"
	"testing"
	"time"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

func TestMetricValue(t *testing.T) {
	page := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines_total_fake 9
go_goroutines 42
go_threads 8
`
	if got := metricValue(strings.NewReader(page), "go_goroutines"); got != 42 {
		t.Fatalf("go_goroutines = %d, want 42", got)
	}
	if got := metricValue(strings.NewReader(page), "go_absent"); got != unknown {
		t.Fatalf("absent metric = %d, want unknown", got)
	}
	if got := metricValue(strings.NewReader("go_goroutines x\n"), "go_goroutines"); got != unknown {
		t.Fatalf("unparsable value = %d, want unknown", got)
	}
}

func TestInfoField(t *testing.T) {
	info := "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_dataset:2048\r\n"
	for field, want := range map[string]string{"used_memory": "1048576", "used_memory_dataset": "2048", "used_memory_rss": ""} {
		if got := infoField(info, field); got != want {
			t.Errorf("infoField(%s) = %q, want %q", field, got, want)
		}
	}
}

// TestSchedule pins the fault plan: the CI window gets at least one step
// restart, Redis and the kill once each, inside the window.
func TestSchedule(t *testing.T) {
	for _, window := range []time.Duration{80 * time.Second, 30 * time.Minute} {
		plan := schedule(window, time.Minute)
		counts := map[string]int{}
		for i, f := range plan {
			counts[f.kind]++
			if f.at <= 0 || f.at >= window {
				t.Errorf("window %s: fault %d (%s) at %s, outside the window", window, i, f.kind, f.at)
			}
			if i > 0 && f.at < plan[i-1].at {
				t.Errorf("window %s: fault %d at %s before fault %d at %s", window, i, f.at, i-1, plan[i-1].at)
			}
		}
		wantSteps := int((window - 5*time.Second - 15*time.Second + time.Minute - 1) / time.Minute)
		if counts["redis"] != 1 || counts["kill"] != 1 || counts["step"] < 1 || counts["step"] != wantSteps {
			t.Errorf("window %s: faults %v, want redis 1, kill 1, step %d", window, counts, wantSteps)
		}
	}
}

func TestTerminal(t *testing.T) {
	for _, tt := range []struct {
		s         orchestratorv1.MissionState
		cancelled bool
		want      bool
	}{
		{orchestratorv1.MissionState_MISSION_STATE_COMPLETED, false, true},
		// A cancelled mission that completed first is torn down next.
		{orchestratorv1.MissionState_MISSION_STATE_COMPLETED, true, false},
		{orchestratorv1.MissionState_MISSION_STATE_COMPENSATED, true, true},
		{orchestratorv1.MissionState_MISSION_STATE_FAILED, false, true},
		{orchestratorv1.MissionState_MISSION_STATE_COMPENSATING, false, false},
		{orchestratorv1.MissionState_MISSION_STATE_RUNNING, false, false},
		{orchestratorv1.MissionState_MISSION_STATE_PENDING, true, false},
	} {
		if got := terminal(tt.s, tt.cancelled); got != tt.want {
			t.Errorf("terminal(%s, cancelled %v) = %v, want %v", tt.s, tt.cancelled, got, tt.want)
		}
	}
}
