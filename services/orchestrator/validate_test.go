package orchestrator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/world"
)

func TestNormalizeStartFillsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *orchestratorv1.StartMissionRequest
		want *orchestratorv1.StartMissionRequest
	}{
		{
			name: "empty scenario",
			req:  &orchestratorv1.StartMissionRequest{MissionId: "m1", Scenario: &typesv1.Scenario{Seed: 7}, Wait: true, Faults: &typesv1.FaultPlan{}},
			want: &orchestratorv1.StartMissionRequest{
				MissionId: "m1",
				Scenario:  &typesv1.Scenario{Seed: 7, Agents: 3, WidthM: 20, HeightM: 15, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE},
				Map:       &typesv1.MapSpec{WidthM: 20, HeightM: 15, Resolution: 0.05},
			},
		},
		{
			name: "a non-anchor agent may come without a guess; the window is kept",
			req: &orchestratorv1.StartMissionRequest{
				Agents: []*typesv1.Agent{
					{AgentId: "a", Submap: tinySubmap(), InitialGuess: &typesv1.Pose2D{}, Anchor: true},
					{AgentId: "b", Submap: tinySubmap()},
				},
				Map:             &typesv1.MapSpec{WidthM: 10, HeightM: 10},
				SearchWindowM:   3,
				SearchWindowRad: 3.14,
			},
			want: &orchestratorv1.StartMissionRequest{
				Agents: []*typesv1.Agent{
					{AgentId: "a", Submap: tinySubmap(), InitialGuess: &typesv1.Pose2D{}, Anchor: true},
					{AgentId: "b", Submap: tinySubmap()},
				},
				Map:             &typesv1.MapSpec{WidthM: 10, HeightM: 10, Resolution: 0.05},
				SearchWindowM:   3,
				SearchWindowRad: 3.14,
			},
		},
		{
			name: "explicit map keeps its bounds",
			req: &orchestratorv1.StartMissionRequest{
				Scenario: &typesv1.Scenario{Agents: 2, WidthM: 30, HeightM: 12, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD},
				Map:      &typesv1.MapSpec{OriginX: -1, WidthM: 32, HeightM: 14},
			},
			want: &orchestratorv1.StartMissionRequest{
				Scenario: &typesv1.Scenario{Agents: 2, WidthM: 30, HeightM: 12, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD},
				Map:      &typesv1.MapSpec{OriginX: -1, WidthM: 32, HeightM: 14, Resolution: 0.05},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := proto.CloneOf(tt.req)
			got, err := normalizeStart(tt.req, false)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("normalizeStart() = %v, want %v", got, tt.want)
			}
			if !proto.Equal(tt.req, orig) {
				t.Errorf("normalizeStart modified its request: %v, was %v", tt.req, orig)
			}
		})
	}
}

// The default map of a scenario must be the world's own grid, or the merged
// map could not be compared cell by cell with the ground truth.
func TestScenarioMapIsTheWorldGrid(t *testing.T) {
	t.Parallel()
	in, err := normalizeStart(&orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 1, WidthM: 25}}, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := world.MapMeta(worldConfig(in.GetScenario()))
	if err != nil {
		t.Fatal(err)
	}
	m := in.GetMap()
	if m.GetOriginX() != want.Origin.X || m.GetOriginY() != want.Origin.Y || m.GetResolution() != want.Resolution {
		t.Errorf("map spec %v, world grid %+v", m, want)
	}
	if w, h := want.SizeM(); m.GetWidthM() != w || m.GetHeightM() != h {
		t.Errorf("map spec %gx%g m, world grid %gx%g m", m.GetWidthM(), m.GetHeightM(), w, h)
	}
}

func TestCheckMissionID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"letters digits and _.-", "Mission_7.a-b", true},
		{"64 characters", strings.Repeat("m", 64), true},
		{"empty", "", false},
		// rpcerr.CheckID, the step services' rule, allows these two; the
		// orchestrator's API does not.
		{"65 characters", strings.Repeat("m", 65), false},
		{"colon", "m:1", false},
		{"brace", "m{1}", false},
		{"space", "m 1", false},
		{"letter beyond ASCII", "mü", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkMissionID("mission_id", tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("checkMissionID(%q) = %v, want ok %v", tt.id, err, tt.ok)
			}
			if err != nil && (status.Code(err) != codes.InvalidArgument || rpcerr.Field(err) != "mission_id") {
				t.Errorf("checkMissionID(%q) = %v, want INVALID_ARGUMENT on mission_id", tt.id, err)
			}
			// The message states the orchestrator's rule, never the
			// services' wider one (which names ':').
			if err != nil && tt.id != "" && !strings.Contains(err.Error(), "allowed: A-Z a-z 0-9 _ . -") && len(tt.id) <= 64 {
				t.Errorf("checkMissionID(%q) = %v, want the allowed characters A-Z a-z 0-9 _ . -", tt.id, err)
			}
			if tt.ok && rpcerr.CheckID("saga.mission_id", tt.id) != nil {
				t.Errorf("%q passes the orchestrator but not the step services", tt.id)
			}
		})
	}
}

// A new mission's id may not be dots alone (the console's /missions/<id>
// would read it as another page), while a mission an earlier release
// created under such an id can still be named by every other call.
func TestNewMissionIDIsNotDotsAlone(t *testing.T) {
	t.Parallel()
	for _, id := range []string{".", "..", "..."} {
		if err := checkNewMissionID("mission_id", id); status.Code(err) != codes.InvalidArgument || rpcerr.Field(err) != "mission_id" {
			t.Errorf("checkNewMissionID(%q) = %v, want INVALID_ARGUMENT on mission_id", id, err)
		}
		if err := checkMissionID("mission_id", id); err != nil {
			t.Errorf("checkMissionID(%q) = %v: an existing mission could not be named", id, err)
		}
	}
	for _, id := range []string{"m..1", ".a", "a.", "-"} {
		if err := checkNewMissionID("mission_id", id); err != nil {
			t.Errorf("checkNewMissionID(%q) = %v", id, err)
		}
	}
}

// tinySubmap is a valid 2×2 submap.
func tinySubmap() *typesv1.OccupancyGrid {
	return &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 2, Height: 2}, Data: []byte{0, 100, 0xff, 0}}
}

// A fault plan sent to an orchestrator that does not allow fault injection
// is FAILED_PRECONDITION FAULT_INJECTION_DISABLED, naming the flag that
// allows it (found by a review: the README's example was refused without
// saying how to turn it on); allowed, it is accepted.
func TestFaultPlanNeedsFaultInjectionAllowed(t *testing.T) {
	t.Parallel()
	req := &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 7}, Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: stepMergeMaps, Kind: typesv1.FaultKind_FAULT_KIND_DROP_REPLY}},
	}}
	_, err := normalizeStart(req, false)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || rpcerr.Reason(err) != reasonFaultInjectionDisabled ||
		!strings.Contains(st.Message(), "--allow-fault-injection") || !strings.Contains(st.Message(), "SLAMMESH_ALLOW_FAULT_INJECTION") {
		t.Errorf("fault plan, injection disabled: %v", err)
	}
	if _, err := normalizeStart(req, true); err != nil {
		t.Errorf("fault plan, injection allowed: %v", err)
	}
}
