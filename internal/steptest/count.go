package steptest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Counter counts the Redis round trips and commands of a client, for the
// step services' benchmarks: a command sent alone is one round trip, a
// pipeline (or MULTI/EXEC) of any length one.
type Counter struct {
	trips, cmds atomic.Int64
	calls       bool // CountCalls's

}

// CountRedis adds a Counter to rdb and returns it.
func CountRedis(rdb redis.UniversalClient) *Counter {
	c := &Counter{}
	rdb.AddHook(c)
	return c
}

// CountCalls adds to rdb a Counter of the round trips a step call makes:
// CountRedis's, less the firehose's own group commits (round trips of
// nothing but firehose copies, on their own timer) and the set-up of a new
// connection (HELLO, CLIENT), which the pool makes when a concurrent user
// holds the idle one.
func CountCalls(rdb redis.UniversalClient) *Counter {
	c := &Counter{calls: true}
	rdb.AddHook(c)
	return c
}

// notCalls reports whether cmds are all firehose copies or connection
// set-up.
func notCalls(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		args := c.Args()
		switch {
		case c.Name() == "hello" || c.Name() == "client":
		case c.Name() == "xadd" && len(args) > 1 && args[1] == progress.GlobalStream:
		default:
			return false
		}
	}
	return len(cmds) > 0
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
		if !c.calls || !notCalls([]redis.Cmder{cmd}) {
			c.trips.Add(1)
			c.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !c.calls || !notCalls(cmds) {
			c.trips.Add(1)
			c.cmds.Add(int64(len(cmds)))
		}
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

// overheadMap is the overhead workload's map: 2x2 m at 0.05 m.
var overheadMap = grid.Meta{Resolution: 0.05, Width: 40, Height: 40}

// OverheadMapMeta is the geometry of the overhead workload's map, as
// AllocateMap returns it (a request's map_meta).
func OverheadMapMeta() *typesv1.GridMeta { return slamproto.MetaToProto(overheadMap) }

// SeedOverheadMap writes the overhead workload's map for mission as the
// mapping service allocates it: map mapID, 2x2 m at 0.05 m, version 1 all
// unknown.
func SeedOverheadMap(t testing.TB, rdb redis.Cmdable, mission, mapID string) {
	t.Helper()
	SeedMap(t, rdb, mission, mapID, overheadMap)
}

// CheckOneTrip makes a step call twice, the second a duplicate of the
// first, and checks that each takes one round trip on count (CountCalls),
// answers want, and leaves the step's action effects (effects()) at one.
func CheckOneTrip[M proto.Message](t *testing.T, count *Counter, want M, call func() (M, error), effects func() int64) {
	t.Helper()
	for n := range 2 {
		trips := count.Trips()
		got, err := call()
		if err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
		if d := count.Trips() - trips; d != 1 {
			t.Errorf("call %d: %d round trips, want 1", n, d)
		}
		if !proto.Equal(got, want) {
			t.Errorf("call %d answered\n%v\nwant\n%v", n, got, want)
		}
		if e := effects(); e != 1 {
			t.Errorf("call %d: action effects %d, want 1", n, e)
		}
	}
}

// RunReadAndStated runs bench as two sub-benchmarks of a step call: "read",
// with requests without map_meta (the service reads the map, with its look
// at the barrier), and "stated", with map_meta as the orchestrator sends it.
func RunReadAndStated(b *testing.B, bench func(b *testing.B, stated bool)) {
	b.Run("read", func(b *testing.B) { bench(b, false) })
	b.Run("stated", func(b *testing.B) { bench(b, true) })
}
