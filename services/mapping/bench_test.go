package mapping_test

import (
	"strconv"
	"testing"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// BenchmarkAllocateMap measures the allocation of a mission's map through
// gRPC, as the orchestrator calls it, with the Redis round trips and
// commands of the service per call (the firehose's group commits
// included): an overhead mission's 2x2 m map, and an office mission's 20x15
// m one (120,000 cells at 5 cm; run it with -benchtime 300x or so, each
// call stores a map).
//
//	go test -run '^$' -bench AllocateMap -benchtime 300x ./services/mapping
func BenchmarkAllocateMap(b *testing.B) {
	for _, tc := range []struct {
		name string
		spec *typesv1.MapSpec
	}{
		{"overhead", &typesv1.MapSpec{WidthM: 2, HeightM: 2, Resolution: 0.05}},
		{"office", &typesv1.MapSpec{WidthM: 20, HeightM: 15, Resolution: 0.05}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := steptest.Start(b, service(mapping.Config{CapacityCells: 1 << 40}))
			client := mappingv1.NewMappingServiceClient(e.Conn)
			count := steptest.CountRedis(e.Redis)
			ctx := b.Context()
			n := 0
			trips0, cmds0 := count.Trips(), count.Commands()
			for b.Loop() {
				m := "bench-" + strconv.Itoa(n)
				n++
				if _, err := client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: tc.spec}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(count.Trips()-trips0)/float64(n), "roundtrips/op")
			b.ReportMetric(float64(count.Commands()-cmds0)/float64(n), "cmds/op")
		})
	}
}
