package orchestrator_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/saga"
)

// A mission whose record Redis lost part of (a Redis that dropped the
// scripts' writes of its AOF at load: redis/redis#14541) answers DATA_LOSS
// RECORD_DAMAGED, and ListMissions lists the others; both answered
// UNAVAILABLE "mission store (Redis) unavailable" before, for every
// listing (found by a review).
func TestDamagedRecord(t *testing.T) {
	t.Parallel()
	st := startStack(t, stackConfig{})
	ctx := ctxT(t)
	var ids []string
	for range 3 {
		resp, err := st.client.StartMission(ctx, scenario(typesv1.ScenarioKind_SCENARIO_KIND_OFFICE))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetMission().GetMissionId())
	}
	damaged := ids[1]
	if err := st.rdb.Del(ctx, saga.RecordKey(damaged)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.HSet(ctx, saga.RecordKey(damaged), "lease", "1760000000000").Err(); err != nil {
		t.Fatal(err)
	}

	list, err := st.client.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{})
	if err != nil {
		t.Fatalf("ListMissions with a damaged record: %v", err)
	}
	var listed []string
	for _, m := range list.GetMissions() {
		listed = append(listed, m.GetMissionId())
	}
	if strings.Join(listed, " ") != ids[2]+" "+ids[0] {
		t.Errorf("listed %v, want the two undamaged missions %v", listed, []string{ids[2], ids[0]})
	}
	_, err = st.client.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: damaged})
	wantStatus(t, err, codes.DataLoss, "RECORD_DAMAGED")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "damaged") || !strings.Contains(msg, "Damaged records") {
		t.Errorf("GetMission of the damaged mission says %q", msg)
	}
	_, err = st.client.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{MissionId: damaged})
	wantStatus(t, err, codes.DataLoss, "RECORD_DAMAGED")
	_, err = st.client.StartMission(ctx, &orchestratorv1.StartMissionRequest{MissionId: damaged, Scenario: &typesv1.Scenario{Seed: 7, Agents: 3}})
	wantStatus(t, err, codes.DataLoss, "RECORD_DAMAGED")
}
