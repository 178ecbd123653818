package orchestrator_test

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/steptest"
)

// TestSmallStepsTakeOneRoundTrip: the orchestrator states the allocated
// map's geometry to localization and merge, so that the steps of a small
// mission (slamctl bench's overhead workload: the anchor alone, its 2x2 m
// submap inline, a 2x2 m map) commit without a look at the barrier, which
// would carry their read of the map: one barrier round trip each, the
// commit. (The stack's step services publish their events through their
// own pipelines, so the barrier's calls are what is counted.)
func TestSmallStepsTakeOneRoundTrip(t *testing.T) {
	t.Parallel()
	st := startStack(t, stackConfig{})
	loc, merge := &barrierCalls{}, &barrierCalls{}
	st.stepRedis[1].AddHook(loc)
	st.stepRedis[2].AddHook(merge)
	resp := st.start(t, &orchestratorv1.StartMissionRequest{
		MissionId: "m-small",
		Wait:      true,
		Agents:    []*typesv1.Agent{steptest.OverheadAgent()},
		Map:       &typesv1.MapSpec{WidthM: 2, HeightM: 2, Resolution: 0.05},
	})
	if resp.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("mission %v, want completed", resp.GetMission())
	}
	for name, c := range map[string]*barrierCalls{"localization": loc, "merge": merge} {
		if modes := c.seen(); len(modes) != 1 || modes[0] != "act" {
			t.Errorf("%s: barrier calls %q, want one commit (act) and no look (probe-act)", name, modes)
		}
	}
}

// barrierCalls records the mode of every barrier script call a client
// sends (its first script argument: act, probe-act, comp, probe-comp).
type barrierCalls struct {
	mu    sync.Mutex
	modes []string
}

func (b *barrierCalls) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.modes...)
}

func (b *barrierCalls) record(cmds []redis.Cmder) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cmds {
		if c.Name() != "eval" && c.Name() != "evalsha" {
			continue
		}
		// EVAL script numkeys key... mode ...
		args := c.Args()
		if len(args) < 3 {
			continue
		}
		n, ok := args[2].(int)
		if !ok || len(args) <= 3+n {
			continue
		}
		if mode, _ := args[3+n].(string); mode == "act" || mode == "probe-act" || mode == "comp" || mode == "probe-comp" {
			b.modes = append(b.modes, mode)
		}
	}
}

func (b *barrierCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *barrierCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		b.record([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (b *barrierCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		b.record(cmds)
		return next(ctx, cmds)
	}
}
