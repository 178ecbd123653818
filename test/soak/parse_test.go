//go:build soak

package soak

import (
	"strings"
	"testing"
	"time"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// TestServingAddrs pins how the harness finds a child's addresses in its
// log: the first complete "serving" line naming both.
func TestServingAddrs(t *testing.T) {
	for _, tt := range []struct {
		name, log string
		want      addrs
		ok        bool
	}{
		{"serving line", "==== soak: slammesh mapping --grpc-addr 127.0.0.1:0\n" +
			`{"time":"2026-11-27T01:00:00Z","level":"INFO","msg":"serving","service":"mapping","grpc_addr":"127.0.0.1:40123","http_addr":"127.0.0.1:40124"}` + "\n",
			addrs{grpc: "127.0.0.1:40123", http: "127.0.0.1:40124"}, true},
		{"first of two", `{"msg":"serving","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}` + "\n" +
			`{"msg":"serving","grpc_addr":"127.0.0.1:3","http_addr":"127.0.0.1:4"}` + "\n", addrs{grpc: "127.0.0.1:1", http: "127.0.0.1:2"}, true},
		{"line not complete yet", `{"msg":"serving","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, addrs{}, false},
		{"no http address", `{"msg":"serving","grpc_addr":"127.0.0.1:1"}` + "\n", addrs{}, false},
		{"other message", `{"msg":"dialing","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}` + "\n", addrs{}, false},
		{"not JSON", "listen tcp 127.0.0.1:40123: bind: address already in use\n", addrs{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := servingAddrs([]byte(tt.log))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("servingAddrs = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

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
