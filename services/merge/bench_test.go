package merge_test

import (
	"strconv"
	"testing"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/merge"
)

// BenchmarkMergeOverhead measures the merge step of an overhead mission
// (the anchor's 2x2 m submap onto a 2x2 m map) through gRPC, with the Redis
// round trips and commands of the service per call (the firehose's group
// commits included; the maps are seeded through another client): read,
// the request without map_meta (the service reads the map with its look at
// the barrier); stated, with it, as the orchestrator sends it (one round
// trip).
func BenchmarkMergeOverhead(b *testing.B) {
	steptest.RunReadAndStated(b, benchmarkMergeOverhead)
}

func benchmarkMergeOverhead(b *testing.B, stated bool) {
	e := start(b, merge.Config{})
	seed := e.Server.Universal(b)
	count := steptest.CountRedis(e.Redis)
	ctx := b.Context()
	agent := steptest.OverheadAgent()
	poses := []*typesv1.AgentPose{{AgentId: agent.GetAgentId(), MapFromAgent: &typesv1.Pose2D{}, Anchor: true}}
	n := 0
	trips0, cmds0 := count.Trips(), count.Commands()
	for b.Loop() {
		m := "bench-" + strconv.Itoa(n)
		n++
		b.StopTimer()
		steptest.SeedOverheadMap(b, seed, m, mapID)
		b.StartTimer()
		req := &mergev1.MergeMapsRequest{Saga: e.Saga(m), MapId: mapID, Agents: []*typesv1.Agent{agent}, Poses: poses}
		if stated {
			req.MapMeta = steptest.OverheadMapMeta()
		}
		if _, err := e.client.MergeMaps(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(count.Trips()-trips0)/float64(n), "roundtrips/op")
	b.ReportMetric(float64(count.Commands()-cmds0)/float64(n), "cmds/op")
}
