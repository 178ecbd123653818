package orchestrator_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

// inlineStart is a StartMission of mission id without a scenario: one
// anchor agent whose 2×2 m submap is sent inline (the create itself answers
// a repeat of such a start, with no read before it).
func inlineStart(id string, wait bool) *orchestratorv1.StartMissionRequest {
	const n = 40
	data := make([]byte, n*n)
	for i := range n {
		data[i], data[(n-1)*n+i], data[i*n], data[i*n+n-1] = 100, 100, 100, 100
	}
	submap := &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: n, Height: n, Origin: &typesv1.Pose2D{}}, Data: data}
	return &orchestratorv1.StartMissionRequest{
		MissionId: id, Wait: wait,
		Agents: []*typesv1.Agent{{AgentId: "anchor", Submap: submap, InitialGuess: &typesv1.Pose2D{}, Anchor: true}},
		Map:    &typesv1.MapSpec{WidthM: 2, HeightM: 2, Resolution: 0.05},
	}
}

// TestInlineStartRacingRepeats: 20 racing StartMissions of one id without
// a scenario create one mission, whose mission.started is in its stream
// once and reaches the firehose once; a repeat after its end answers the
// finished mission and writes no event.
func TestInlineStartRacingRepeats(t *testing.T) {
	st := startStack(t, stackConfig{})
	const id = "inline-race-1"
	st.raceStarts(t, 20, func(i int) *orchestratorv1.StartMissionRequest { return inlineStart(id, i%2 == 0) })
	end := st.start(t, inlineStart(id, true))
	if end.GetCreated() || end.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("repeat with wait: created %v, state %v; want false, completed", end.GetCreated(), end.GetMission().GetState())
	}
	before := st.events(t, id)
	if got := countType(before, progress.MissionStarted); got != 1 {
		t.Errorf("%d mission.started events in the mission stream, want 1: %v", got, eventLines(before))
	}
	if again := st.start(t, inlineStart(id, false)); again.GetCreated() || again.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Errorf("repeat after the end: created %v, state %v", again.GetCreated(), again.GetMission().GetState())
	}
	if after := st.events(t, id); len(after) != len(before) {
		t.Errorf("a repeat after the end appended %d events", len(after)-len(before))
	}

	// The firehose copies are group-committed after the mission's writes:
	// wait for the copy of its last event, then count.
	var started, completed int
	deadline := time.Now().Add(10 * time.Second)
	for completed == 0 && time.Now().Before(deadline) {
		msgs, err := st.rdb.XRange(ctxT(t), progress.GlobalStream, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		started, completed = 0, 0
		for _, m := range msgs {
			e, err := progress.Parse(m)
			if err != nil || e.MissionID != id {
				continue
			}
			switch e.Type {
			case progress.MissionStarted:
				started++
			case progress.MissionCompleted:
				completed++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if started != 1 || completed != 1 {
		t.Errorf("firehose: %d mission.started and %d mission.completed of %s, want 1 and 1", started, completed, id)
	}
}

// TestStartAgainOfAMissionNamedDots: a new mission may not be named with
// dots alone, but one an earlier release created under such an id (made
// here by moving a finished mission's keys) answers a repeated start as
// any mission does: the client's retry of its start is not refused.
func TestStartAgainOfAMissionNamedDots(t *testing.T) {
	st := startStack(t, stackConfig{})
	ctx := ctxT(t)
	st.start(t, inlineStart("dots-source", true))
	for _, k := range redistest.Keys(t, st.rdb, "slammesh:{dots-source}:*") {
		if err := st.rdb.Rename(ctx, k, strings.Replace(k, "{dots-source}", "{.}", 1)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.rdb.HSet(ctx, "slammesh:{.}:saga", "mission_id", ".").Err(); err != nil {
		t.Fatal(err)
	}
	again := st.start(t, inlineStart(".", true))
	if again.GetCreated() || again.GetMission().GetMissionId() != "." ||
		again.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Errorf("start again of mission '.': created %v, %q %v; want the existing mission, completed",
			again.GetCreated(), again.GetMission().GetMissionId(), again.GetMission().GetState())
	}
	_, err := st.client.StartMission(ctx, inlineStart("..", false))
	wantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
}

// TestStartAgainWithAnotherRequestIsRefused: a mission id is an
// idempotency key. A repeat of the request (with or without wait, with
// defaults written out) answers the mission; another request under the id
// — another scenario, a changed agent — is ALREADY_EXISTS naming
// mission_id, whichever path finds the mission (the scenario start's
// lookup, the inline start's create), and changes nothing.
func TestStartAgainWithAnotherRequestIsRefused(t *testing.T) {
	st := startStack(t, stackConfig{})
	ctx := ctxT(t)
	scenario := &orchestratorv1.StartMissionRequest{MissionId: "reused-scenario", Scenario: small(3), Wait: true}
	first := st.start(t, scenario)
	same := &orchestratorv1.StartMissionRequest{MissionId: "reused-scenario", Scenario: small(3)}
	same.Scenario.Agents = first.GetMission().GetAgents() // the default, written out
	if again := st.start(t, same); again.GetCreated() || again.GetMission().GetSagaId() != first.GetMission().GetSagaId() {
		t.Errorf("repeat of the scenario start: created %v, saga %s; want the first mission", again.GetCreated(), again.GetMission().GetSagaId())
	}
	st.start(t, inlineStart("reused-inline", true))
	moved := inlineStart("reused-inline", false)
	moved.Agents[0].InitialGuess.X = 0.5
	before := st.events(t, "reused-inline")
	for name, req := range map[string]*orchestratorv1.StartMissionRequest{
		"another seed":          {MissionId: "reused-scenario", Scenario: small(4)},
		"agents for a scenario": inlineStart("reused-scenario", false),
		"another guess":         moved,
	} {
		_, err := st.client.StartMission(ctx, req)
		wantStatus(t, err, codes.AlreadyExists, "MISSION_ID_REUSED")
		if rpcerr.Field(err) != "mission_id" || !strings.Contains(err.Error(), "idempotency key") {
			t.Errorf("%s: %v; want it to name mission_id and say why", name, err)
		}
	}
	if after := st.events(t, "reused-inline"); len(after) != len(before) {
		t.Errorf("refused starts appended %d events", len(after)-len(before))
	}
}

// TestStartAgainWithTheSameFaultPlanWrittenOtherwise: a fault plan is
// compared as the services read it — times 0 is 1, a business error's
// times is moot, the faults' order says nothing — so a repeat that writes
// the same plan otherwise is the same mission; another kind is not.
func TestStartAgainWithTheSameFaultPlanWrittenOtherwise(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true})
	ctx := ctxT(t)
	plan := func(transientTimes, businessTimes uint32, reversed bool) *typesv1.FaultPlan {
		faults := []*typesv1.Fault{
			{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT, Times: transientTimes},
			{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, Compensation: true, Times: businessTimes},
		}
		if reversed {
			faults[0], faults[1] = faults[1], faults[0]
		}
		return &typesv1.FaultPlan{Faults: faults}
	}
	first := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: "faulty", Scenario: small(5), Faults: plan(0, 0, false), Wait: true})
	again := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: "faulty", Scenario: small(5), Faults: plan(1, 7, true)})
	if again.GetCreated() || again.GetMission().GetSagaId() != first.GetMission().GetSagaId() {
		t.Errorf("the same plan written otherwise: created %v, saga %s; want the first mission", again.GetCreated(), again.GetMission().GetSagaId())
	}
	_, err := st.client.StartMission(ctx, &orchestratorv1.StartMissionRequest{MissionId: "faulty", Scenario: small(5), Faults: plan(2, 0, false)})
	wantStatus(t, err, codes.AlreadyExists, rpcerr.ReasonMissionIDReused)
}
