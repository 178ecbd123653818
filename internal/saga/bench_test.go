package saga

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/redistest"
)

// roundTrips counts the commands and pipelines a client sends: one each is one
// round trip.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// benchEngine returns an engine of three no-op steps on a fresh Redis, its
// store batching through a group commit when grouped, and the counter of
// its round trips.
func benchEngine(b *testing.B, grouped bool) (*Engine, *roundTrips) {
	rdb := redistest.Start(b).Universal(b)
	rt := &roundTrips{}
	rdb.AddHook(rt)
	noop := func(context.Context, *Exec) error { return nil }
	def := Definition{Name: "bench", Steps: []Step{
		{Name: "allocate_map", Action: noop, Compensate: noop},
		{Name: "localize_agents", Action: noop, Compensate: noop},
		{Name: "merge_maps", Action: noop, Compensate: noop},
	}}
	store := NewStore(rdb, streamSink{}, 0)
	if grouped {
		store.WithGroupCommit(groupcommit.New(rdb, groupcommit.Options{}))
	}
	e, err := NewEngine(store, def, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := e.Drain(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return e, rt
}

// runOne creates a saga with Begin, as the orchestrator does, and runs it.
func runOne(b *testing.B, e *Engine, key string) {
	if _, _, err := e.Begin(b.Context(), key, "", []byte("input")); err != nil {
		b.Fatal(err)
	}
	rec, err := e.Run(b.Context(), key)
	if err != nil || rec.State != Completed {
		b.Fatalf("Run(%s) = %v, %v", key, rec, err)
	}
}

// BenchmarkSagaThreeSteps runs 3-step sagas of no-op steps one after the
// other against a real redis-server, with records and events written: the
// engine's own cost per saga.
func BenchmarkSagaThreeSteps(b *testing.B) {
	e, rt := benchEngine(b, false)
	n := 0
	for b.Loop() {
		runOne(b, e, "b"+strconv.Itoa(n))
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sagas/s")
	b.ReportMetric(float64(rt.n.Load())/float64(n), "roundtrips/saga")
}

// BenchmarkSagaThreeStepsParallel is the same with 16 sagas per CPU in
// flight, each write a round trip of its own ("alone") or batched with the
// other sagas' ("group_commit", as the orchestrator runs on one Redis).
func BenchmarkSagaThreeStepsParallel(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		name := "alone"
		if grouped {
			name = "group_commit"
		}
		b.Run(name, func(b *testing.B) {
			e, rt := benchEngine(b, grouped)
			var n atomic.Int64
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					runOne(b, e, "p"+strconv.FormatInt(n.Add(1), 10))
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "sagas/s")
			b.ReportMetric(float64(rt.n.Load())/float64(n.Load()), "roundtrips/saga")
		})
	}
}
