package barrier

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/redistest"
)

// BenchmarkAction measures a first (applied) action with one business write
// through the callback API: a look at the marks, then the commit script, two
// round trips (before the script barrier: WATCH, HMGET and MULTI/EXEC,
// three).
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

// BenchmarkCommit measures what a step service does per action: the plan
// built first (one business write, two progress events announced on the
// mission stream), then one script, one round trip.
func BenchmarkCommit(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	br := New(rdb)
	n := 0
	for b.Loop() {
		commitOne(b, br, "m"+strconv.Itoa(n))
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "actions/s")
}

// BenchmarkCommitOwned is BenchmarkCommit with the owner check the step
// services run (WithOwner): the saga record must exist without an expiry
// and name the call's saga.
func BenchmarkCommitOwned(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	br := New(rdb, WithOwner(func(key string) string { return "slammesh:{" + key + "}:saga" }))
	const batch = 1000
	n := 0
	for b.Loop() {
		if n%batch == 0 { // the records of the next batch of missions, untimed
			b.StopTimer()
			pipe := rdb.Pipeline()
			for i := n; i < n+batch; i++ {
				pipe.HSet(b.Context(), "slammesh:{m"+strconv.Itoa(i)+"}:saga", "state", "running", "saga_id", "s")
			}
			if _, err := pipe.Exec(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		commitOne(b, br, "m"+strconv.Itoa(n))
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "actions/s")
}

// BenchmarkCommitParallel is BenchmarkCommit with 16 calls per CPU in
// flight, each commit a round trip of its own ("alone") or batched with the
// others' ("group_commit", as a step service runs on one Redis).
func BenchmarkCommitParallel(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		name := "alone"
		if grouped {
			name = "group_commit"
		}
		b.Run(name, func(b *testing.B) {
			rdb := redistest.Start(b).Client(b)
			var opts []Option
			if grouped {
				opts = append(opts, WithGroupCommit(groupcommit.New(rdb, groupcommit.Options{})))
			}
			br := New(rdb, opts...)
			var n atomic.Int64
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					commitOne(b, br, "p"+strconv.FormatInt(n.Add(1), 10))
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "actions/s")
		})
	}
}

// commitOne commits BenchmarkCommit's plan for mission key.
func commitOne(b *testing.B, br *Barrier, key string) {
	ctx := b.Context()
	tx := br.NewTx()
	tx.Write(func(p redis.Pipeliner) { p.HSet(ctx, "slammesh:{"+key+"}:localization", "agent-1", "pose") })
	tx.Announce(func(p redis.Pipeliner) {
		for _, typ := range []string{"step.started", "step.completed"} {
			p.XAdd(ctx, &redis.XAddArgs{Stream: "slammesh:{" + key + "}:events", MaxLen: 10000, Approx: true,
				Values: []any{"v", "1", "mission_id", key, "type", typ}})
		}
	})
	if _, _, err := br.Commit(ctx, ID{Key: key, SagaID: "s", Step: "localize_agents"}, tx, []byte("result")); err != nil {
		b.Fatal(err)
	}
}
