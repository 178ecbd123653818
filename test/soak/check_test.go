//go:build soak

package soak

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// TestVerifyMissions pins what counts against a mission: each case is one
// mission and the violation kinds it must raise (none for a good one).
func TestVerifyMissions(t *testing.T) {
	office, sealed := kinds[0], kinds[1]
	done := func(s orchestratorv1.MissionState) *orchestratorv1.Mission {
		return &orchestratorv1.Mission{State: s, Error: &orchestratorv1.MissionError{Code: "UNAVAILABLE", Reason: "X"}}
	}
	const (
		completed   = orchestratorv1.MissionState_MISSION_STATE_COMPLETED
		compensated = orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
		failed      = orchestratorv1.MissionState_MISSION_STATE_FAILED
		running     = orchestratorv1.MissionState_MISSION_STATE_RUNNING
	)
	all := map[string]string{
		"allocate_map:action": "1", "localize_agents:action": "1", "merge_maps:action": "1",
	}
	undone := map[string]string{
		"allocate_map:action": "1", "allocate_map:compensation": "1",
		"localize_agents:action": "1", "localize_agents:compensation": "1",
	}
	twice := map[string]string{
		"allocate_map:action": "2", "localize_agents:action": "1", "merge_maps:action": "1",
	}
	for _, tt := range []struct {
		name string
		ms   *mission
		want map[string]int
	}{
		{"office completed", &mission{kind: office, mode: modePoll, final: done(completed), effects: all}, nil},
		{"sealed compensated", &mission{kind: sealed, mode: modeWait, final: done(compensated), effects: undone}, nil},
		{"cancelled office compensated", &mission{kind: office, mode: modeCancel, cancelled: true, final: done(compensated), effects: undone}, nil},
		{"watched, terminal event seen", &mission{kind: office, mode: modeWatch, final: done(completed), effects: all,
			watchTerminal: "EVENT_TYPE_MISSION_COMPLETED"}, nil},
		{"failed", &mission{kind: office, mode: modePoll, final: done(failed), effects: undone}, map[string]int{"failed": 1}},
		{"office compensated", &mission{kind: office, mode: modePoll, final: done(compensated), effects: undone}, map[string]int{"outcome": 1}},
		{"still running", &mission{kind: office, mode: modePoll, final: done(running), effects: all}, map[string]int{"stuck": 1}},
		{"cancelled but completed", &mission{kind: office, mode: modeCancel, cancelled: true, final: done(completed), effects: all}, map[string]int{"stuck": 1}},
		{"never read", &mission{kind: office, mode: modePoll}, map[string]int{"stuck": 1}},
		{"start failed", &mission{kind: office, mode: modePoll, startErr: status.Error(codes.Unavailable, "x")}, map[string]int{"start": 1}},
		{"effect twice", &mission{kind: office, mode: modePoll, final: done(completed), effects: twice}, map[string]int{"double-effect": 1, "effects": 1}},
		{"completed without merge", &mission{kind: office, mode: modePoll, final: done(completed), effects: undone}, map[string]int{"effects": 3}},
		{"effects unread", &mission{kind: office, mode: modePoll, final: done(completed), effectsErr: errors.New("down")}, map[string]int{"effects": 1}},
		{"watcher saw nothing", &mission{kind: office, mode: modeWatch, final: done(completed), effects: all}, map[string]int{"watch": 1}},
		{"watcher saw another end", &mission{kind: sealed, mode: modeWatch, final: done(compensated), effects: undone,
			watchTerminal: "EVENT_TYPE_MISSION_COMPLETED"}, map[string]int{"watch": 1}},
		{"cancel never answered", &mission{kind: sealed, mode: modeCancel, final: done(compensated), effects: undone,
			cancelErr: status.Error(codes.Unavailable, "x")}, map[string]int{"cancel": 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.ms.id = "soak-00001"
			tt.ms.startedAt = time.Now()
			if tt.ms.final != nil {
				tt.ms.endedAt = tt.ms.startedAt.Add(time.Second)
			}
			var v violations
			verifyMissions([]*mission{tt.ms}, nil, &v)
			if len(v.byKind) != len(tt.want) {
				t.Fatalf("violations %v, want %v: %v", v.byKind, tt.want, v.missions)
			}
			for k, n := range tt.want {
				if v.byKind[k] != n {
					t.Fatalf("violations %v, want %v: %v", v.byKind, tt.want, v.missions)
				}
			}
		})
	}
}
