package barrier

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redistest"
)

// BenchmarkAction measures a first (applied) action with one business write:
// WATCH, HMGET and MULTI/EXEC, three round trips.
func BenchmarkAction(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	br := New(rdb)
	n := 0
	for b.Loop() {
		key := "m" + strconv.Itoa(n)
		n++
		_, _, err := br.Action(b.Context(), ID{Key: key, SagaID: "s", Step: "localize_agents"},
			func(ctx context.Context, tx *Tx) ([]byte, error) {
				tx.Write(func(p redis.Pipeliner) { p.HSet(ctx, "slammesh:{"+key+"}:localization", "agent-1", "pose") })
				return []byte("result"), nil
			})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "actions/s")
}
