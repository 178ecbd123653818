package steptest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Counter counts the Redis round trips and commands of a client, for the
// step services' benchmarks: a command sent alone is one round trip, a
// pipeline (or MULTI/EXEC) of any length one.
type Counter struct {
	trips, cmds atomic.Int64
}

// CountRedis adds a Counter to rdb and returns it.
func CountRedis(rdb redis.UniversalClient) *Counter {
	c := &Counter{}
	rdb.AddHook(c)
	return c
}

// Trips returns the round trips counted so far.
func (c *Counter) Trips() int64 { return c.trips.Load() }

// Commands returns the commands counted so far.
func (c *Counter) Commands() int64 { return c.cmds.Load() }

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*Counter)(nil)

// OverheadAgent is the agent of slamctl bench's overhead workload: the
// anchor, at the origin, with a 2x2 m submap at 0.05 m sent inline (an
// occupied one-cell border around free floor).
func OverheadAgent() *typesv1.Agent {
	const n = 40
	data := make([]byte, n*n)
	for r := range n {
		for c := range n {
			if r == 0 || c == 0 || r == n-1 || c == n-1 {
				data[r*n+c] = 100
			}
		}
	}
	return &typesv1.Agent{AgentId: "anchor", Anchor: true, InitialGuess: &typesv1.Pose2D{},
		Submap: &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: n, Height: n, Origin: &typesv1.Pose2D{}}, Data: data}}
}

// SeedOverheadMap writes the overhead workload's map for mission as the
// mapping service allocates it: map mapID, 2x2 m at 0.05 m, version 1 all
// unknown.
func SeedOverheadMap(t testing.TB, rdb redis.Cmdable, mission, mapID string) {
	t.Helper()
	blank, err := mapstore.NewBlank(grid.Meta{Resolution: 0.05, Width: 40, Height: 40})
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t)
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		mapstore.Create(ctx, p, mission, mapID, blank)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
