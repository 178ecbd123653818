package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Map quality a completed office mission must reach against ground truth
// (the domain's thresholds).
const (
	minOccupiedIoU = 0.85
	minAccuracy    = 0.95
)

// small is the cheapest scenario: one agent in the smallest world, for tests
// about the API rather than the map.
func small(seed uint64) *typesv1.Scenario {
	return &typesv1.Scenario{Seed: seed, Agents: 1, WidthM: 10, HeightM: 8}
}

func TestOfficeMissionCompletes(t *testing.T) {
	st := startStack(t, stackConfig{})
	resp := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 7, Agents: 3}, Wait: true})
	m := resp.GetMission()
	if !resp.GetCreated() {
		t.Error("created = false for a new mission")
	}
	if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("state = %v, error %v; want COMPLETED", m.GetState(), m.GetError())
	}
	id := m.GetMissionId()
	switch {
	case id == "" || m.GetSagaId() == "":
		t.Errorf("mission id %q, saga id %q: want both generated", id, m.GetSagaId())
	case m.GetProgressStream() != progress.MissionStream(id):
		t.Errorf("progress_stream = %q, want %q", m.GetProgressStream(), progress.MissionStream(id))
	case m.GetMapId() == "":
		t.Error("map_id is empty")
	case m.GetAgents() != 3 || len(m.GetPoses()) != 3:
		t.Errorf("agents = %d with %d poses, want 3 and 3", m.GetAgents(), len(m.GetPoses()))
	case m.GetMapVersion() != 2:
		t.Errorf("map_version = %d, want 2 (1 is the empty allocated grid)", m.GetMapVersion())
	case !(m.GetConsistency() > 0 && m.GetConsistency() <= 1):
		t.Errorf("consistency = %g, want in (0, 1]", m.GetConsistency())
	case m.GetError() != nil || m.GetCancelled():
		t.Errorf("error = %v, cancelled = %v on a completed mission", m.GetError(), m.GetCancelled())
	case m.GetCreatedAt() == nil || m.GetEndedAt() == nil || m.GetEndedAt().AsTime().Before(m.GetCreatedAt().AsTime()):
		t.Errorf("created_at %v, ended_at %v", m.GetCreatedAt(), m.GetEndedAt())
	}
	for i, s := range m.GetSteps() {
		if s.GetName() != stepNames[i] || s.GetState() != orchestratorv1.StepState_STEP_STATE_SUCCEEDED || s.GetAttempts() != 1 {
			t.Errorf("step %d = %v, want %s SUCCEEDED after 1 attempt", i, s, stepNames[i])
		}
	}

	// The merged map, fetched as a client would, against the world's truth.
	got, err := st.mapping.GetMap(ctxT(t), &mappingv1.GetMapRequest{MissionId: id})
	if err != nil {
		t.Fatalf("GetMap: %v", err)
	}
	if got.GetVersion() != m.GetMapVersion() || got.GetMapId() != m.GetMapId() {
		t.Errorf("GetMap returned %s version %d, mission says %s version %d", got.GetMapId(), got.GetVersion(), m.GetMapId(), m.GetMapVersion())
	}
	merged, err := slamproto.GridFromProto(got.GetGrid())
	if err != nil {
		t.Fatal(err)
	}
	w, err := world.Generate(world.Config{Seed: 7, Agents: 3})
	if err != nil {
		t.Fatal(err)
	}
	score, err := eval.CompareMaps(merged, w.Truth)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("merged map: %+v", score)
	if score.OccupiedIoU < minOccupiedIoU || score.Accuracy < minAccuracy {
		t.Errorf("occupied IoU %.3f, accuracy %.3f; want >= %.2f and >= %.2f", score.OccupiedIoU, score.Accuracy, minOccupiedIoU, minAccuracy)
	}

	// The progress stream tells the mission in order, all in one trace.
	events := st.events(t, id)
	checkTraceIDs(t, events, m.GetTraceId())
	want := []string{"mission.started"}
	for _, s := range stepNames {
		want = append(want, "step.started "+s, "step.completed "+s)
	}
	want = append(want, "mission.completed")
	var lines []string
	progressOf := map[string]int{}
	for _, e := range events {
		if e.Type == progress.StepProgress {
			// Progress must come between its step's start and completion.
			if n := len(lines); n == 0 || lines[n-1] != "step.started "+e.Step {
				t.Errorf("step.progress of %s outside its step: after %v", e.Step, lines)
			}
			progressOf[e.Step]++
			continue
		}
		lines = append(lines, eventLine(e))
	}
	if !slices.Equal(lines, want) {
		t.Errorf("events (without step.progress) =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if progressOf["localize_agents"] == 0 {
		t.Errorf("no step.progress event of localize_agents; events: %v", eventLines(events))
	}
	for _, e := range events {
		wantService := map[string]string{"allocate_map": "mapping", "localize_agents": "localization", "merge_maps": "merge", "": "orchestrator"}[e.Step]
		if e.MissionID != id || e.SagaID != m.GetSagaId() || e.Service != wantService {
			t.Errorf("event %s: mission %q saga %q service %q; want %q %q %q", eventLine(e), e.MissionID, e.SagaID, e.Service, id, m.GetSagaId(), wantService)
		}
	}

	// GetMission and WatchMission tell the same story.
	gm, err := st.client.GetMission(ctxT(t), &orchestratorv1.GetMissionRequest{MissionId: id})
	if err != nil {
		t.Fatal(err)
	}
	if gm.GetMission().GetState() != m.GetState() || gm.GetMission().GetTraceId() != m.GetTraceId() || len(gm.GetMission().GetPoses()) != 3 {
		t.Errorf("GetMission = %v, StartMission said %v", gm.GetMission(), m)
	}
	watched := watch(t, st, id, "")
	if !slices.Equal(eventLines(watched), eventLines(events)) {
		t.Errorf("WatchMission sent %v, stream holds %v", eventLines(watched), eventLines(events))
	}
	resumed := watch(t, st, id, watched[len(watched)-3].ID)
	if !slices.Equal(eventLines(resumed), eventLines(events[len(events)-2:])) {
		t.Errorf("WatchMission from %s sent %v, want the last two events", watched[len(watched)-3].ID, eventLines(resumed))
	}
	if after := watch(t, st, id, watched[len(watched)-1].ID); len(after) != 0 {
		t.Errorf("WatchMission after the terminal event sent %v, want nothing", eventLines(after))
	}
	// The run ended, so its world is no longer held in the cache (the hold
	// is dropped just after the run's end is announced).
	for deadline := time.Now().Add(5 * time.Second); st.orch.HeldScenarios() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d scenario worlds still held after the mission ended", st.orch.HeldScenarios())
		}
	}
}

// watch collects what WatchMission sends until it ends.
func watch(t *testing.T, st *stack, id, from string) []progress.Event {
	t.Helper()
	stream, err := st.client.WatchMission(ctxT(t), &orchestratorv1.WatchMissionRequest{MissionId: id, FromStreamId: from})
	if err != nil {
		t.Fatal(err)
	}
	var out []progress.Event
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("WatchMission: %v", err)
		}
		out = append(out, progressgrpc.FromProto(resp.GetEvent()))
	}
}

func TestFailedMissionsCompensate(t *testing.T) {
	// The budget fits one office map (400x300 cells) with room to spare,
	// but not a 40x30 m map.
	st := startStack(t, stackConfig{capacityCells: 300_000})
	tests := []struct {
		name       string
		req        *orchestratorv1.StartMissionRequest
		failedStep int
		code       string
		reason     string
	}{
		{
			name:       "allocation beyond the capacity budget",
			req:        &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 7, Agents: 3}, Map: &typesv1.MapSpec{WidthM: 40, HeightM: 30}},
			failedStep: 0,
			code:       "RESOURCE_EXHAUSTED",
			reason:     rpcerr.ReasonCapacityExhausted,
		},
		{
			name:       "localization of a sealed agent",
			req:        &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 7, Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_SEALED_AGENT}},
			failedStep: 1,
			code:       "FAILED_PRECONDITION",
			reason:     rpcerr.ReasonInsufficientOverlap,
		},
		{
			name:       "merge of a changed world",
			req:        &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 7, Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD}},
			failedStep: 2,
			code:       "FAILED_PRECONDITION",
			reason:     rpcerr.ReasonInconsistentMaps,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Wait = true
			m := st.start(t, tt.req).GetMission()
			if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
				t.Fatalf("state = %v, want COMPENSATED; mission %v", m.GetState(), m)
			}
			if e := m.GetError(); e.GetCode() != tt.code || e.GetReason() != tt.reason || e.GetMessage() == "" {
				t.Errorf("mission error = %v, want %s %s with a message", e, tt.code, tt.reason)
			}
			for i, s := range m.GetSteps() {
				wantState := orchestratorv1.StepState_STEP_STATE_COMPENSATED
				if i > tt.failedStep {
					wantState = orchestratorv1.StepState_STEP_STATE_PENDING
				}
				if s.GetState() != wantState {
					t.Errorf("step %s state = %v, want %v", s.GetName(), s.GetState(), wantState)
				}
				if i <= tt.failedStep && s.GetCompensationAttempts() != 1 {
					t.Errorf("step %s compensation attempts = %d, want 1", s.GetName(), s.GetCompensationAttempts())
				}
			}
			if e := m.GetSteps()[tt.failedStep].GetError(); e.GetCode() != tt.code || e.GetReason() != tt.reason {
				t.Errorf("failed step error = %v, want %s %s", e, tt.code, tt.reason)
			}
			// The compensations took the step results with them.
			if m.GetMapId() != "" || len(m.GetPoses()) != 0 || m.GetMapVersion() != 0 {
				t.Errorf("compensated mission shows map_id %q, %d poses, map_version %d; want none",
					m.GetMapId(), len(m.GetPoses()), m.GetMapVersion())
			}

			events := st.events(t, m.GetMissionId())
			checkTraceIDs(t, events, m.GetTraceId())
			// After the failed step's step.failed event come the
			// compensations of every attempted step, in reverse order, and
			// the end of the mission.
			lines := eventLines(events)
			failedAt := slices.Index(lines, "step.failed "+stepNames[tt.failedStep])
			if failedAt < 0 {
				t.Fatalf("no step.failed event of %s: %v", stepNames[tt.failedStep], lines)
			}
			if f := events[failedAt]; f.ErrorCode != tt.code || f.ErrorReason != tt.reason {
				t.Errorf("step.failed carries %s %s, want %s %s", f.ErrorCode, f.ErrorReason, tt.code, tt.reason)
			}
			var want []string
			for i := tt.failedStep; i >= 0; i-- {
				want = append(want, "compensation.started "+stepNames[i], "compensation.completed "+stepNames[i])
			}
			want = append(want, "mission.compensated")
			if got := lines[failedAt+1:]; !slices.Equal(got, want) {
				t.Errorf("events after step.failed =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if last := events[len(events)-1]; last.ErrorReason != tt.reason {
				t.Errorf("mission.compensated carries reason %q, want %q", last.ErrorReason, tt.reason)
			}

			if left := st.leftovers(t, m.GetMissionId()); len(left) > 0 {
				t.Errorf("mission state left in Redis: %v", left)
			}
			if used := st.capacityUsed(t); used != 0 {
				t.Errorf("capacity in use = %d cells, want 0", used)
			}
		})
	}
}

func TestStartMissionRejectsBadInput(t *testing.T) {
	st := startStack(t, stackConfig{})
	submap := func() *typesv1.OccupancyGrid {
		return &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 2, Height: 2}, Data: []byte{0, 100, 0xff, 0}}
	}
	agents := func(mod func([]*typesv1.Agent) []*typesv1.Agent) *orchestratorv1.StartMissionRequest {
		as := []*typesv1.Agent{
			{AgentId: "a", Submap: submap(), InitialGuess: &typesv1.Pose2D{}, Anchor: true},
			{AgentId: "b", Submap: submap(), InitialGuess: &typesv1.Pose2D{X: 1}},
		}
		return &orchestratorv1.StartMissionRequest{Agents: mod(as), Map: &typesv1.MapSpec{WidthM: 10, HeightM: 10}}
	}
	scenario := func(s *typesv1.Scenario) *orchestratorv1.StartMissionRequest {
		return &orchestratorv1.StartMissionRequest{Scenario: s}
	}
	tests := []struct {
		name  string
		req   *orchestratorv1.StartMissionRequest
		field string
	}{
		{"empty request", &orchestratorv1.StartMissionRequest{}, "scenario"},
		{"scenario and agents", &orchestratorv1.StartMissionRequest{Scenario: small(1), Agents: agents(func(a []*typesv1.Agent) []*typesv1.Agent { return a }).Agents}, "scenario"},
		{"oversized mission id", &orchestratorv1.StartMissionRequest{MissionId: strings.Repeat("m", 65), Scenario: small(1)}, "mission_id"},
		{"mission id with a brace", &orchestratorv1.StartMissionRequest{MissionId: "m{1}", Scenario: small(1)}, "mission_id"},
		{"mission id of dots alone", &orchestratorv1.StartMissionRequest{MissionId: "..", Scenario: small(1)}, "mission_id"},
		{"too many scenario agents", scenario(&typesv1.Scenario{Agents: 17}), "scenario.agents"},
		{"negative width", scenario(&typesv1.Scenario{WidthM: -1}), "scenario.width_m"},
		{"NaN width", scenario(&typesv1.Scenario{WidthM: math.NaN()}), "scenario.width_m"},
		{"infinite height", scenario(&typesv1.Scenario{HeightM: math.Inf(1)}), "scenario.height_m"},
		{"oversized width", scenario(&typesv1.Scenario{WidthM: 201}), "scenario.width_m"},
		{"unknown scenario kind", scenario(&typesv1.Scenario{Kind: 99}), "scenario.kind"},
		{"world too narrow", scenario(&typesv1.Scenario{WidthM: 2, HeightM: 20}), "scenario.width_m"},
		{"world too low", scenario(&typesv1.Scenario{HeightM: 0.0001}), "scenario.height_m"},
		{"kind that needs more agents", scenario(&typesv1.Scenario{Agents: 1, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD}), "scenario"},
		{"negative resolution", &orchestratorv1.StartMissionRequest{Scenario: small(1), Map: &typesv1.MapSpec{WidthM: 10, HeightM: 8, Resolution: -0.05}}, "map.resolution"},
		{"NaN resolution", &orchestratorv1.StartMissionRequest{Scenario: small(1), Map: &typesv1.MapSpec{WidthM: 10, HeightM: 8, Resolution: math.NaN()}}, "map.resolution"},
		{"map of no width", &orchestratorv1.StartMissionRequest{Scenario: small(1), Map: &typesv1.MapSpec{HeightM: 8}}, "map.width_m"},
		{"map beyond any grid", &orchestratorv1.StartMissionRequest{Scenario: small(1), Map: &typesv1.MapSpec{WidthM: 1e5, HeightM: 1e5}}, "map"},
		{"agents without a map", func() *orchestratorv1.StartMissionRequest {
			r := agents(func(a []*typesv1.Agent) []*typesv1.Agent { return a })
			r.Map = nil
			return r
		}(), "map"},
		{"NaN initial guess", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].InitialGuess.X = math.NaN()
			return a
		}), "agents[1].initial_guess"},
		{"anchor without a guess", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[0].InitialGuess = nil
			return a
		}), "agents[0].initial_guess"},
		{"NaN search window", &orchestratorv1.StartMissionRequest{Scenario: small(1), SearchWindowM: math.NaN()}, "search_window_m"},
		{"negative search window", &orchestratorv1.StartMissionRequest{Scenario: small(1), SearchWindowM: -1}, "search_window_m"},
		{"absurd search window", &orchestratorv1.StartMissionRequest{Scenario: small(1), SearchWindowM: 1e6}, "search_window_m"},
		{"changed share over 1", &orchestratorv1.StartMissionRequest{Scenario: small(1), MaxChangedShare: 1.01}, "max_changed_share"},
		{"free conflict over 1", &orchestratorv1.StartMissionRequest{Scenario: small(1), MaxFreeConflict: 1.5}, "max_free_conflict"},
		{"NaN free conflict", &orchestratorv1.StartMissionRequest{Scenario: small(1), MaxFreeConflict: math.NaN()}, "max_free_conflict"},
		{"NaN consistency floor", &orchestratorv1.StartMissionRequest{Scenario: small(1), MinConsistency: math.NaN()}, "min_consistency"},
		{"negative consistency floor", &orchestratorv1.StartMissionRequest{Scenario: small(1), MinConsistency: -0.5}, "min_consistency"},
		{"infinite rotation window", &orchestratorv1.StartMissionRequest{Scenario: small(1), SearchWindowRad: math.Inf(1)}, "search_window_rad"},
		{"rotation window beyond pi", &orchestratorv1.StartMissionRequest{Scenario: small(1), SearchWindowRad: 4}, "search_window_rad"},
		{"empty agent id", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[0].AgentId = ""
			return a
		}), "agents[0].agent_id"},
		{"duplicate agent id", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].AgentId = "a"
			return a
		}), "agents[1].agent_id"},
		{"two anchors", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].Anchor = true
			return a
		}), "agents"},
		{"too many agents", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			for i := range 16 {
				a = append(a, &typesv1.Agent{AgentId: fmt.Sprint("x", i), Submap: submap(), InitialGuess: &typesv1.Pose2D{}})
			}
			return a
		}), "agents"},
		{"submap cells missing", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].Submap.Data = a[1].Submap.Data[:3]
			return a
		}), "agents[1].submap.data"},
		{"submap cell out of range", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[0].Submap.Data[1] = 101
			return a
		}), "agents[0].submap.data"},
		{"agent without data", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].Submap = nil
			return a
		}), "agents[1].submap"},
		{"agent with a submap and scans", agents(func(a []*typesv1.Agent) []*typesv1.Agent {
			a[1].Scans = []*typesv1.ScanFrame{{OdomPose: &typesv1.Pose2D{}, Scan: &typesv1.LaserScan{AngleIncrement: 0.01, RangeMax: 8, Ranges: []float32{1, 2}}}}
			return a
		}), "agents[1].submap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := st.client.StartMission(ctxT(t), tt.req)
			wantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
			if got := rpcerr.Field(err); got != tt.field {
				t.Errorf("field = %q, want %q (%v)", got, tt.field, err)
			}
			if !strings.Contains(status.Convert(err).Message(), tt.field) {
				t.Errorf("message %q does not name %s", status.Convert(err).Message(), tt.field)
			}
			// The message is for the user: no Go package prefixes.
			if msg := status.Convert(err).Message(); strings.Contains(msg, "slam: ") || strings.Contains(msg, "world: ") {
				t.Errorf("message %q carries a Go package prefix", msg)
			}
			// A map of too many cells says what needs fewer.
			if msg := status.Convert(err).Message(); tt.name == "map beyond any grid" && !strings.Contains(msg, "coarser resolution") {
				t.Errorf("message %q does not say what needs fewer cells", msg)
			}
		})
	}
	t.Run("fault plan without fault injection", func(t *testing.T) {
		t.Parallel()
		_, err := st.client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{Scenario: small(1), Faults: &typesv1.FaultPlan{
			Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR}},
		}})
		if status.Code(err) != codes.FailedPrecondition || rpcerr.Field(err) != "faults" {
			t.Errorf("err = %v, want FAILED_PRECONDITION naming faults", err)
		}
	})
	t.Run("nothing was started", func(t *testing.T) {
		t.Parallel()
		n, err := st.rdb.ZCard(ctxT(t), "slammesh:missions").Result()
		if err != nil || n != 0 {
			t.Errorf("%d missions indexed (err %v) after bad requests only", n, err)
		}
	})
}

func TestReadRPCsValidate(t *testing.T) {
	st := startStack(t, stackConfig{})
	ctx := ctxT(t)
	_, err := st.client.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: "nope"})
	wantStatus(t, err, codes.NotFound, rpcerr.ReasonMissionNotFound)
	_, err = st.client.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{MissionId: "nope"})
	wantStatus(t, err, codes.NotFound, rpcerr.ReasonMissionNotFound)
	stream, err := st.client.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: "nope"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantStatus(t, err, codes.NotFound, rpcerr.ReasonMissionNotFound)

	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"get without id", func() error {
			_, err := st.client.GetMission(ctx, &orchestratorv1.GetMissionRequest{})
			return err
		}, "mission_id"},
		{"cancel with oversized reason", func() error {
			_, err := st.client.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{MissionId: "m", Reason: strings.Repeat("r", 1025)})
			return err
		}, "reason"},
		{"watch from a bad stream id", func() error {
			s, err := st.client.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: "m", FromStreamId: "yesterday"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "from_stream_id"},
		{"oversized page", func() error {
			_, err := st.client.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: 1001})
			return err
		}, "page_size"},
		{"unknown state", func() error {
			_, err := st.client.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{State: 99})
			return err
		}, "state"},
		{"forged page token", func() error {
			_, err := st.client.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageToken: "abc"})
			return err
		}, "page_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
			if got := rpcerr.Field(err); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
		})
	}
}

// A Redis out of memory refuses StartMission as RESOURCE_EXHAUSTED
// (STORE_FULL) saying so, not as an outage a client would wait out (found
// by a review: slamctl retried "mission store unavailable" for its whole
// --reconnect); with memory back, the same request starts.
func TestStartMissionOnAFullRedis(t *testing.T) {
	st := startStack(t, stackConfig{})
	ctx := ctxT(t)
	if err := st.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := st.rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	req := &orchestratorv1.StartMissionRequest{MissionId: "full-redis", Scenario: small(3), Wait: true}
	_, err := st.client.StartMission(ctx, req)
	if status.Code(err) != codes.ResourceExhausted || rpcerr.Reason(err) != rpcerr.ReasonStoreFull || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("StartMission on a full Redis: %v, want RESOURCE_EXHAUSTED STORE_FULL saying out of memory", err)
	}
	restore()
	if m := st.start(t, req).GetMission(); m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("with memory back: state %v, want COMPLETED", m.GetState())
	}
	// Deleting frees memory, so it works on a full Redis; its tombstone
	// and index write are then refused, which must not turn the deletion
	// into an error an operator would retry (found by a review).
	if err := st.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	restored = false
	if _, err := st.client.DeleteMission(ctx, &orchestratorv1.DeleteMissionRequest{MissionId: req.GetMissionId()}); err != nil {
		t.Fatalf("DeleteMission on a full Redis: %v, want the deletion it did", err)
	}
	restore()
	if _, err := st.client.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: req.GetMissionId()}); status.Code(err) != codes.NotFound {
		t.Errorf("GetMission after the deletion: %v, want NOT_FOUND", err)
	}
}

// A watch begun between a reopen and the new chapter's first event (a
// cancel of a completed mission sets the record COMPENSATING, and its driver
// writes compensation.started a moment later, or a lease TTL later if it
// dies) does not end at the old mission.completed: it follows the new
// chapter to its end (found by a review; the reopen is simulated on the
// record, the chapter written by hand).
func TestWatchFollowsAReopenToItsEnd(t *testing.T) {
	st := startStack(t, stackConfig{})
	m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: small(12), Wait: true}).GetMission()
	id := m.GetMissionId()
	rec := saga.RecordKey(id)
	if err := st.rdb.HSet(ctxT(t), rec, "state", "compensating").Err(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		events []progress.Event
		err    error
	}
	done := make(chan result, 1)
	stream, err := st.client.WatchMission(ctxT(t), &orchestratorv1.WatchMissionRequest{MissionId: id})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var r result
		for {
			resp, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					r.err = err
				}
				done <- r
				return
			}
			r.events = append(r.events, progressgrpc.FromProto(resp.GetEvent()))
		}
	}()
	select {
	case r := <-done:
		t.Fatalf("WatchMission of a reopened mission ended (%v) after %v", r.err, eventLines(r.events))
	case <-time.After(300 * time.Millisecond):
	}
	pub := progress.NewPublisher(st.rdb, progress.Options{})
	if err := pub.Publish(ctxT(t),
		progress.Event{MissionID: id, Type: progress.CompensationStarted, Step: stepNames[0]},
		progress.Event{MissionID: id, Type: progress.CompensationCompleted, Step: stepNames[0]},
	); err != nil {
		t.Fatal(err)
	}
	// The end: the record first, as the saga's own script writes both.
	if err := st.rdb.HSet(ctxT(t), rec, "state", "compensated").Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctxT(t), progress.Event{MissionID: id, Type: progress.MissionCompensated}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.events) == 0 || r.events[len(r.events)-1].Type != progress.MissionCompensated {
			t.Errorf("the watch ended (%v) after %v, want mission.compensated last", r.err, eventLines(r.events))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with the new chapter")
	}
}

func TestStartMissionIsIdempotent(t *testing.T) {
	st := startStack(t, stackConfig{})
	t.Run("repeat", func(t *testing.T) {
		req := &orchestratorv1.StartMissionRequest{MissionId: "repeat-1", Scenario: small(3)}
		first := st.start(t, req)
		if !first.GetCreated() || first.GetMission().GetMissionId() != "repeat-1" {
			t.Fatalf("first start: created %v, mission %q", first.GetCreated(), first.GetMission().GetMissionId())
		}
		req.Wait = true
		again := st.start(t, req)
		if again.GetCreated() || again.GetMission().GetSagaId() != first.GetMission().GetSagaId() {
			t.Errorf("repeat: created %v, saga %q; want false and %q", again.GetCreated(), again.GetMission().GetSagaId(), first.GetMission().GetSagaId())
		}
		if !isTerminal(again.GetMission().GetState()) {
			t.Errorf("repeat with wait returned state %v", again.GetMission().GetState())
		}
		if n := countType(st.events(t, "repeat-1"), progress.MissionStarted); n != 1 {
			t.Errorf("%d mission.started events, want 1", n)
		}
	})
	t.Run("20 racing repeats", func(t *testing.T) {
		st.raceStarts(t, 20, func(i int) *orchestratorv1.StartMissionRequest {
			return &orchestratorv1.StartMissionRequest{MissionId: "race-1", Scenario: small(4), Wait: i%2 == 0}
		})
		m, err := st.client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{MissionId: "race-1", Scenario: small(4), Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		if !isTerminal(m.GetMission().GetState()) {
			t.Fatalf("state %v after a start with wait", m.GetMission().GetState())
		}
		events := st.events(t, "race-1")
		if n := countType(events, progress.MissionStarted); n != 1 {
			t.Errorf("%d mission.started events, want 1: %v", n, eventLines(events))
		}
	})
}

func TestListMissions(t *testing.T) {
	st := startStack(t, stackConfig{})
	var ids []string
	for i := range 3 {
		m := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: fmt.Sprint("list-", i), Scenario: small(uint64(i)), Wait: true}).GetMission()
		ids = append(ids, m.GetMissionId())
	}
	slices.Reverse(ids) // newest first
	var got []string
	token := ""
	for page := 0; ; page++ {
		resp, err := st.client.ListMissions(ctxT(t), &orchestratorv1.ListMissionsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetMissions()) > 2 {
			t.Fatalf("page %d holds %d missions, page size 2", page, len(resp.GetMissions()))
		}
		for _, m := range resp.GetMissions() {
			got = append(got, m.GetMissionId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("listed %v, want %v", got, ids)
	}
	for _, tc := range []struct {
		state orchestratorv1.MissionState
		want  int
	}{
		{orchestratorv1.MissionState_MISSION_STATE_COMPLETED, 3},
		{orchestratorv1.MissionState_MISSION_STATE_COMPENSATED, 0},
	} {
		resp, err := st.client.ListMissions(ctxT(t), &orchestratorv1.ListMissionsRequest{State: tc.state})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetMissions()) != tc.want {
			t.Errorf("%v: %d missions, want %d", tc.state, len(resp.GetMissions()), tc.want)
		}
	}
}

func TestCancelMission(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true})
	t.Run("running mission compensates", func(t *testing.T) {
		// The localization stalls until its caller gives up, which holds
		// the mission in its second step.
		m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: small(5), Faults: &typesv1.FaultPlan{
			Faults: []*typesv1.Fault{{Step: "localize_agents", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
		}}).GetMission()
		st.awaitEvent(t, m.GetMissionId(), func(e progress.Event) bool {
			return e.Type == progress.StepStarted && e.Step == "localize_agents"
		})
		resp, err := st.client.CancelMission(ctxT(t), &orchestratorv1.CancelMissionRequest{MissionId: m.GetMissionId(), Reason: "operator abort", Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.GetMission()
		if c.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED || !c.GetCancelled() {
			t.Fatalf("state %v, cancelled %v; want COMPENSATED and cancelled", c.GetState(), c.GetCancelled())
		}
		if e := c.GetError(); e.GetCode() != "CANCELLED" || !strings.Contains(e.GetMessage(), "operator abort") {
			t.Errorf("error = %v, want CANCELLED with the reason", e)
		}
		// The cancelled localization call ends on the service after the
		// orchestrator moved on, so its step.failed may come at any point:
		// the order to check is that of the orchestrator's own events.
		var ours []progress.Event
		for _, e := range st.events(t, m.GetMissionId()) {
			if e.Service == "orchestrator" {
				ours = append(ours, e)
			}
		}
		want := []string{"mission.started", "compensation.started localize_agents", "compensation.completed localize_agents",
			"compensation.started allocate_map", "compensation.completed allocate_map", "mission.compensated"}
		if got := eventLines(ours); !slices.Equal(got, want) {
			t.Errorf("orchestrator events = %v, want %v", got, want)
		}
		lines := eventLines(st.events(t, m.GetMissionId()))
		if slices.Contains(lines, "step.started merge_maps") {
			t.Errorf("merge ran after the cancel: %v", lines)
		}
		if left := st.leftovers(t, m.GetMissionId()); len(left) > 0 {
			t.Errorf("mission state left in Redis: %v", left)
		}
	})
	t.Run("completed mission is torn down", func(t *testing.T) {
		m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: small(6), Wait: true}).GetMission()
		if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
			t.Fatalf("state %v, want COMPLETED", m.GetState())
		}
		if st.capacityUsed(t) == 0 {
			t.Fatal("a completed mission holds no capacity")
		}
		resp, err := st.client.CancelMission(ctxT(t), &orchestratorv1.CancelMissionRequest{MissionId: m.GetMissionId()})
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.GetMission(); c.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED || !c.GetCancelled() {
			t.Fatalf("state %v, cancelled %v; want COMPENSATED and cancelled", c.GetState(), c.GetCancelled())
		}
		_, err = st.mapping.GetMap(ctxT(t), &mappingv1.GetMapRequest{MissionId: m.GetMissionId()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("GetMap after teardown: %v, want NOT_FOUND", err)
		}
		if left := st.leftovers(t, m.GetMissionId()); len(left) > 0 {
			t.Errorf("mission state left in Redis: %v", left)
		}
		if used := st.capacityUsed(t); used != 0 {
			t.Errorf("capacity in use = %d cells after teardown, want 0", used)
		}
		events := st.events(t, m.GetMissionId())
		checkTraceIDs(t, events, m.GetTraceId())
		lines := eventLines(events)
		done := slices.Index(lines, "mission.completed")
		want := []string{"mission.started"}
		for i := len(stepNames) - 1; i >= 0; i-- {
			want = append(want, "compensation.started "+stepNames[i], "compensation.completed "+stepNames[i])
		}
		want = append(want, "mission.compensated")
		if done < 0 || !slices.Equal(lines[done+1:], want) {
			t.Errorf("events = %v, want %v after mission.completed", lines, want)
		}
		// A watch tells the outcome GetMission does: it replays past
		// mission.completed to the teardown's end.
		if watched := watch(t, st, m.GetMissionId(), ""); !slices.Equal(eventLines(watched), lines) {
			t.Errorf("WatchMission of the torn-down mission sent %v, stream holds %v", eventLines(watched), lines)
		}

		// Cancelling an ended mission changes nothing.
		again, err := st.client.CancelMission(ctxT(t), &orchestratorv1.CancelMissionRequest{MissionId: m.GetMissionId(), Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		if again.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
			t.Errorf("state %v after a second cancel", again.GetMission().GetState())
		}
		if n := len(st.events(t, m.GetMissionId())); n != len(events) {
			t.Errorf("a second cancel wrote %d events", n-len(events))
		}
		// A step service's late event after the end reopens nothing: the
		// watch ends, where waiting for another terminal event would hang.
		late := progress.Event{MissionID: m.GetMissionId(), Type: progress.StepFailed, Step: stepNames[1], Message: "a call the compensation overtook"}
		if err := progress.NewPublisher(st.rdb, progress.Options{}).Publish(ctxT(t), late); err != nil {
			t.Fatal(err)
		}
		if watched := watch(t, st, m.GetMissionId(), ""); len(watched) != len(events)+1 {
			t.Errorf("WatchMission after a late step event sent %v, want the %d events and the late one", eventLines(watched), len(events))
		}
	})
	t.Run("fault plan is validated", func(t *testing.T) {
		_, err := st.client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{Scenario: small(1), Faults: &typesv1.FaultPlan{
			Faults: []*typesv1.Fault{{Step: "warp_drive", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
		}})
		wantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
		if got := rpcerr.Field(err); got != "faults.faults[0].step" {
			t.Errorf("field = %q", got)
		}
	})
}

func TestShutdownDrainsRunningMissions(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, policy: saga.Policy{AttemptTimeout: time.Second}})
	// The merge service holds the first merge attempt until its deadline, so
	// the mission is mid-flight for that long once the attempt has started;
	// the second attempt succeeds.
	m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: small(8), Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
	}}).GetMission()
	st.awaitEvent(t, m.GetMissionId(), func(e progress.Event) bool {
		return e.Type == progress.StepStarted && e.Step == "merge_maps"
	})
	before, err := st.client.GetMission(ctxT(t), &orchestratorv1.GetMissionRequest{MissionId: m.GetMissionId()})
	if err != nil {
		t.Fatal(err)
	}
	if g := before.GetMission(); g.GetState() != orchestratorv1.MissionState_MISSION_STATE_RUNNING || g.GetSteps()[2].GetAttempts() != 1 {
		t.Fatalf("before Shutdown: state %v, merge attempts %d; want RUNNING in the first (held) merge attempt",
			g.GetState(), g.GetSteps()[2].GetAttempts())
	}
	if err := st.orch.Shutdown(ctxT(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got, err := st.client.GetMission(ctxT(t), &orchestratorv1.GetMissionRequest{MissionId: m.GetMissionId()})
	if err != nil {
		t.Fatal(err)
	}
	g := got.GetMission()
	if g.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED || g.GetSteps()[2].GetAttempts() != 2 {
		t.Errorf("after Shutdown: state %v, merge attempts %d; want COMPLETED after 2", g.GetState(), g.GetSteps()[2].GetAttempts())
	}
	_, err = st.client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{Scenario: small(9)})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("StartMission while draining: %v, want UNAVAILABLE", err)
	}
}

func TestClientLeavingDoesNotStopMission(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, policy: saga.Policy{AttemptTimeout: 300 * time.Millisecond}})
	// The first merge attempt stalls past its deadline, so the mission is
	// still running when its client gives up.
	req := &orchestratorv1.StartMissionRequest{MissionId: "leaver", Scenario: small(10), Wait: true, Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
	}}
	ctx, cancel := context.WithCancel(ctxT(t))
	left := make(chan error, 1)
	go func() {
		defer cancel()
		_, err := st.nextEvent(ctx, "leaver", func(e progress.Event) bool { return e.Type == progress.StepStarted && e.Step == "merge_maps" })
		left <- err
	}()
	_, err := st.client.StartMission(ctx, req)
	if awaitErr := <-left; awaitErr != nil {
		t.Fatalf("awaiting the merge: %v", awaitErr)
	}
	if status.Code(err) != codes.Canceled {
		t.Fatalf("StartMission after the client left: %v, want CANCELLED", err)
	}
	m := st.start(t, req).GetMission()
	if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED || m.GetSteps()[2].GetAttempts() != 2 {
		t.Errorf("state %v, merge attempts %d, error %v; want COMPLETED after 2 attempts", m.GetState(), m.GetSteps()[2].GetAttempts(), m.GetError())
	}
}

func isTerminal(s orchestratorv1.MissionState) bool {
	switch s {
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return true
	}
	return false
}

func countType(events []progress.Event, typ progress.Type) int {
	n := 0
	for _, e := range events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestMissionTimesAreTheSameInEveryReply: the reply of the StartMission
// that ran a mission gives its times as every later read does (the
// precision they are stored with), not finer.
func TestMissionTimesAreTheSameInEveryReply(t *testing.T) {
	t.Parallel()
	st := startStack(t, stackConfig{})
	first := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: "times", Scenario: &typesv1.Scenario{Seed: 7, Agents: 2}, Wait: true}).GetMission()
	again := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: "times", Scenario: &typesv1.Scenario{Seed: 7, Agents: 2}, Wait: true}).GetMission()
	got, err := st.client.GetMission(t.Context(), &orchestratorv1.GetMissionRequest{MissionId: "times"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*orchestratorv1.Mission{again, got.GetMission()} {
		for _, ts := range [][2]interface{ AsTime() time.Time }{
			{first.GetCreatedAt(), m.GetCreatedAt()},
			{first.GetUpdatedAt(), m.GetUpdatedAt()},
			{first.GetEndedAt(), m.GetEndedAt()},
		} {
			if a, b := ts[0].AsTime(), ts[1].AsTime(); !a.Equal(b) {
				t.Errorf("first reply says %s, a later one %s", a.Format(time.RFC3339Nano), b.Format(time.RFC3339Nano))
			}
		}
	}
}
