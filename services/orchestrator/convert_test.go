package orchestrator

import (
	"testing"

	"google.golang.org/protobuf/proto"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

func TestAgentCount(t *testing.T) {
	t.Parallel()
	submap := &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 2, Height: 2},
		Data: []byte{0, 100, 0xff, 0},
	}
	tests := []struct {
		name string
		req  *orchestratorv1.StartMissionRequest
		want uint32
	}{
		{
			name: "scenario",
			req:  &orchestratorv1.StartMissionRequest{MissionId: "m", Scenario: &typesv1.Scenario{Seed: 7, Agents: 5}, Map: &typesv1.MapSpec{WidthM: 1}},
			want: 5,
		},
		{
			name: "agents",
			req: &orchestratorv1.StartMissionRequest{MissionId: "m", Agents: []*typesv1.Agent{
				{AgentId: "a", Submap: submap, Anchor: true}, {AgentId: "b", Submap: submap}, {AgentId: "c", Submap: submap},
			}, Faults: &typesv1.FaultPlan{Faults: []*typesv1.Fault{{Step: "merge_maps"}}}},
			want: 3,
		},
		{name: "empty", req: &orchestratorv1.StartMissionRequest{}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := proto.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := agentCount(b); got != tt.want {
				t.Errorf("agentCount() = %d, want %d", got, tt.want)
			}
		})
	}
	if got := agentCount([]byte{0x1a, 0x05, 0x00}); got != 0 {
		t.Errorf("agentCount(truncated) = %d, want 0", got)
	}
}

func TestTraceID(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"w3c", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"empty", "", ""},
		{"garbage", "garbage", ""},
		{"short trace id", "00-abc-def-01", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := traceID(tt.in); got != tt.want {
				t.Errorf("traceID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
