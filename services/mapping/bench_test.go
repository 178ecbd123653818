package mapping_test

import (
	"strconv"
	"testing"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// BenchmarkAllocateMap measures the allocation of an overhead mission's
// 2x2 m map through gRPC, as the orchestrator calls it, with the Redis
// round trips and commands of the service per call (the firehose's group
// commits included).
func BenchmarkAllocateMap(b *testing.B) {
	e := steptest.Start(b, service(mapping.Config{}))
	client := mappingv1.NewMappingServiceClient(e.Conn)
	count := steptest.CountRedis(e.Redis)
	ctx := b.Context()
	spec := &typesv1.MapSpec{WidthM: 2, HeightM: 2, Resolution: 0.05}
	n := 0
	trips0, cmds0 := count.Trips(), count.Commands()
	for b.Loop() {
		m := "bench-" + strconv.Itoa(n)
		n++
		if _, err := client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: spec}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(count.Trips()-trips0)/float64(n), "roundtrips/op")
	b.ReportMetric(float64(count.Commands()-cmds0)/float64(n), "cmds/op")
}
