package orchestrator_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

// missionStartedWith returns the mission.started events whose message starts
// with prefix.
func missionStartedWith(events []progress.Event, prefix string) []progress.Event {
	var out []progress.Event
	for _, e := range events {
		if e.Type == progress.MissionStarted && strings.HasPrefix(e.Message, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func TestResumeMission(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, policy: saga.Policy{
		CompensationMaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}})
	// The merge fails for good, and releasing the agents fails three times
	// in a row: past the bound of two attempts the mission is FAILED, the
	// map still allocated.
	req := &orchestratorv1.StartMissionRequest{MissionId: "stuck", Scenario: small(11), Wait: true, Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{
			{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR},
			{Step: "localize_agents", Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT, Times: 3, Compensation: true},
		},
	}}
	failed := st.start(t, req).GetMission()
	if failed.GetState() != orchestratorv1.MissionState_MISSION_STATE_FAILED {
		t.Fatalf("state = %v, error %v; want FAILED", failed.GetState(), failed.GetError())
	}
	if s := failed.GetSteps()[1]; s.GetState() != orchestratorv1.StepState_STEP_STATE_COMPENSATION_FAILED || s.GetCompensationAttempts() != 2 {
		t.Fatalf("localize_agents = %v, want COMPENSATION_FAILED after 2 attempts", s)
	}
	if st.capacityUsed(t) == 0 {
		t.Fatal("the failed mission released its map: nothing left for the resume to do")
	}

	// The fault is "repaired" (the fourth attempt succeeds): an operator
	// resumes the mission.
	resp, err := st.client.ResumeMission(ctxT(t), &orchestratorv1.ResumeMissionRequest{MissionId: "stuck", Wait: true})
	if err != nil {
		t.Fatalf("ResumeMission: %v", err)
	}
	m := resp.GetMission()
	if !resp.GetResumed() || m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		t.Fatalf("ResumeMission = resumed %v, state %v, error %v; want resumed and COMPENSATED", resp.GetResumed(), m.GetState(), m.GetError())
	}
	wantSteps := []struct {
		state   orchestratorv1.StepState
		attempt uint32
	}{
		{orchestratorv1.StepState_STEP_STATE_COMPENSATED, 1},
		{orchestratorv1.StepState_STEP_STATE_COMPENSATED, 4},
		{orchestratorv1.StepState_STEP_STATE_COMPENSATED, 1},
	}
	for i, w := range wantSteps {
		if s := m.GetSteps()[i]; s.GetState() != w.state || s.GetCompensationAttempts() != w.attempt {
			t.Errorf("step %s = %v after %d compensation attempts, want %v after %d", s.GetName(), s.GetState(), s.GetCompensationAttempts(), w.state, w.attempt)
		}
	}
	// The mission ends with why it compensated, not with the give-up.
	if e := m.GetError(); e.GetCode() != "FAILED_PRECONDITION" || e.GetReason() != rpcerr.ReasonInjectedFault {
		t.Errorf("error = %v, want the merge's FAILED_PRECONDITION %s", e, rpcerr.ReasonInjectedFault)
	}
	if left := st.leftovers(t, "stuck"); len(left) != 0 {
		t.Errorf("keys left after the resumed compensation: %v", left)
	}
	if used := st.capacityUsed(t); used != 0 {
		t.Errorf("capacity in use = %d cells, want 0", used)
	}
	effects, err := st.barrier.Effects(ctxT(t), "stuck")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"allocate_map:compensation", "localize_agents:compensation"} {
		if effects[k] != 1 {
			t.Errorf("effects = %v, want %s applied once", effects, k)
		}
	}
	events := st.events(t, "stuck")
	checkTraceIDs(t, events, failed.GetTraceId())
	if n := len(missionStartedWith(events, saga.MessageCompensationResumedPrefix)); n != 1 {
		t.Errorf("%d mission.started events of a resumed compensation, want 1; events: %v", n, eventLines(events))
	}

	// A retry of the call, whose reply was lost, changes nothing.
	again, err := st.client.ResumeMission(ctxT(t), &orchestratorv1.ResumeMissionRequest{MissionId: "stuck"})
	if err != nil || again.GetResumed() || again.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED ||
		again.GetMission().GetSteps()[1].GetCompensationAttempts() != 4 {
		t.Errorf("second ResumeMission = %v, %v; want the compensated mission unchanged", again, err)
	}

	completed := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: "fine", Scenario: small(12), Wait: true}).GetMission()
	if completed.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("mission fine = %v", completed.GetState())
	}
	for _, tt := range []struct {
		name, id string
		code     codes.Code
		reason   string
	}{
		{"completed mission", "fine", codes.FailedPrecondition, "MISSION_NOT_FAILED"},
		{"unknown mission", "nope", codes.NotFound, rpcerr.ReasonMissionNotFound},
		{"invalid id", "bad{id}", codes.InvalidArgument, rpcerr.ReasonInvalidField},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.client.ResumeMission(ctxT(t), &orchestratorv1.ResumeMissionRequest{MissionId: tt.id})
			wantStatus(t, err, tt.code, tt.reason)
		})
	}
	if got, err := st.client.GetMission(ctxT(t), &orchestratorv1.GetMissionRequest{MissionId: "fine"}); err != nil ||
		got.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Errorf("completed mission after a refused ResumeMission = %v, %v", got, err)
	}
}

func TestShutdownHandsRunningMissionsToAnotherReplica(t *testing.T) {
	// Leases and attempt deadlines of a minute: only the hand-off can
	// explain a resume within seconds.
	const lease = time.Minute
	policy := saga.Policy{AttemptTimeout: time.Minute}
	st := startStack(t, stackConfig{allowFaults: true, owner: "orch-a", leaseTTL: lease, policy: policy})
	_, replicaB := st.startOrchestrator(t, stackConfig{allowFaults: true, owner: "orch-b", leaseTTL: lease,
		recoveryInterval: 20 * time.Millisecond, policy: policy})

	// The merge stalls on its first attempt until its caller gives up: the
	// mission is running, and its client waiting on A, when A shuts down.
	req := &orchestratorv1.StartMissionRequest{MissionId: "handoff", Scenario: small(13), Wait: true, Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
	}}
	waitCtx := ctxT(t)
	waited := make(chan error, 1)
	go func() {
		_, err := st.client.StartMission(waitCtx, req)
		waited <- err
	}()
	st.awaitEvent(t, "handoff", func(e progress.Event) bool { return e.Type == progress.StepStarted && e.Step == "merge_maps" })
	got, err := st.client.GetMission(ctxT(t), &orchestratorv1.GetMissionRequest{MissionId: "handoff"})
	if err != nil {
		t.Fatal(err)
	}
	started := got.GetMission()

	grace, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := st.orch.Shutdown(grace); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The waiting client is told to go elsewhere, and retries on the other
	// replica (StartMission is idempotent on mission_id).
	if err := <-waited; status.Code(err) != codes.Unavailable {
		t.Errorf("StartMission waiting on A during its hand-off = %v, want UNAVAILABLE", err)
	}
	resp, err := replicaB.StartMission(ctxT(t), req)
	if err != nil {
		t.Fatalf("StartMission on replica B: %v", err)
	}
	m := resp.GetMission()
	if took := time.Since(begin); took > lease/10 {
		t.Errorf("mission ended %v after the shutdown, want well under the %v lease", took, lease)
	}
	if resp.GetCreated() || m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED || m.GetSteps()[2].GetAttempts() != 2 {
		t.Fatalf("mission = created %v, %v, merge attempts %d, error %v; want the existing mission COMPLETED after 2 merge attempts",
			resp.GetCreated(), m.GetState(), m.GetSteps()[2].GetAttempts(), m.GetError())
	}

	events := st.events(t, "handoff")
	checkTraceIDs(t, events, started.GetTraceId())
	if n := len(missionStartedWith(events, saga.MessageResumedPrefix+"orch-b, epoch 2, lease of orch-a expired ")); n != 1 {
		t.Errorf("%d resumptions by orch-b, want 1; events: %v", n, eventLines(events))
	}
	if n := countType(events, progress.CompensationStarted); n != 0 {
		t.Errorf("the handed-off mission was compensated: %v", eventLines(events))
	}
	effects, err := st.barrier.Effects(ctxT(t), "handoff")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"allocate_map:action": 1, "localize_agents:action": 1, "merge_maps:action": 1}; !maps.Equal(effects, want) {
		t.Errorf("effects = %v, want %v", effects, want)
	}
}
