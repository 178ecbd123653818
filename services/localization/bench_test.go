package localization_test

import (
	"strconv"
	"testing"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/localization"
)

// BenchmarkLocalizeOverhead measures the localization step of an overhead
// mission (the anchor alone, its 2x2 m submap inline) through gRPC, with
// the Redis round trips and commands of the service per call (the
// firehose's group commits included; the maps are seeded through another
// client): read, the request without map_meta (the service reads the map
// with its look at the barrier); stated, with it, as the orchestrator sends
// it (one round trip).
func BenchmarkLocalizeOverhead(b *testing.B) {
	steptest.RunReadAndStated(b, benchmarkLocalizeOverhead)
}

func benchmarkLocalizeOverhead(b *testing.B, stated bool) {
	e := start(b, localization.Config{})
	seed := e.Server.Universal(b)
	count := steptest.CountRedis(e.Redis)
	ctx := b.Context()
	agents := []*typesv1.Agent{steptest.OverheadAgent()}
	n := 0
	trips0, cmds0 := count.Trips(), count.Commands()
	for b.Loop() {
		m := "bench-" + strconv.Itoa(n)
		n++
		b.StopTimer()
		steptest.SeedOverheadMap(b, seed, m, mapID)
		b.StartTimer()
		req := &localizationv1.LocalizeAgentsRequest{Saga: e.Saga(m), MapId: mapID, Agents: agents}
		if stated {
			req.MapMeta = steptest.OverheadMapMeta()
		}
		if _, err := e.client.LocalizeAgents(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(count.Trips()-trips0)/float64(n), "roundtrips/op")
	b.ReportMetric(float64(count.Commands()-cmds0)/float64(n), "cmds/op")
}
