//go:build chaos

package chaos

import (
	"testing"

	"github.com/slammesh/slammesh/internal/progress"
)

func TestValidTraceID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"0af7651916cd43dd8448eb211c80319c", true},
		{"", false},
		{"00000000000000000000000000000000", false},
		{"0AF7651916CD43DD8448EB211C80319C", false},
		{"0af7651916cd43dd8448eb211c80319", false},
		{"0af7651916cd43dd8448eb211c80319c0", false},
		{"0af7651916cd43dd8448eb211c80319g", false},
	} {
		t.Run(tt.id, func(t *testing.T) {
			if got := validTraceID(tt.id); got != tt.want {
				t.Fatalf("validTraceID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestCheckTrace(t *testing.T) {
	const (
		id    = "0af7651916cd43dd8448eb211c80319c"
		other = "11111111111111111111111111111111"
	)
	ev := func(ids ...string) []progress.Event {
		out := make([]progress.Event, len(ids))
		for i, tid := range ids {
			out[i] = progress.Event{Type: progress.MissionStarted, Service: "orchestrator", TraceID: tid}
		}
		return out
	}
	api := func(start, get string) []apiTrace {
		return []apiTrace{{"StartMission", start}, {"GetMission", get}}
	}
	for _, tt := range []struct {
		name   string
		events []progress.Event
		api    []apiTrace
		want   bool
	}{
		{"one trace everywhere", ev(id, id, id), api(id, id), true},
		{"a run under another trace", ev(id, id, other), api(id, id), false},
		{"an event without a trace", ev(id, "", id), api(id, id), false},
		{"no trace at all", ev("", ""), api("", ""), false},
		{"not hex", ev("0af7651916cd43dd8448eb211c80319z"), api("0af7651916cd43dd8448eb211c80319z", "0af7651916cd43dd8448eb211c80319z"), false},
		{"StartMission differs", ev(id, id), api(other, id), false},
		{"GetMission differs", ev(id, id), api(id, ""), false},
		{"no events", nil, api(id, id), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v violations
			got := checkTrace(plan{id: "m", category: "clean"}, tt.events, tt.api, &v)
			if got != tt.want || (v.count() == 0) != tt.want {
				t.Fatalf("checkTrace = %v with violations %v, want %v", got, v.list, tt.want)
			}
		})
	}
}
