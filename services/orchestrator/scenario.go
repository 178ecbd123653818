package orchestrator

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// scenarioCacheSize bounds the scenarios whose agents stay in memory. A
// mission needs its agents in two steps a few milliseconds apart, and a
// default 20×15 m world's three submaps weigh well under a megabyte, so a
// small cache saves one world generation per mission without growing with the
// number of missions.
const scenarioCacheSize = 32

// scenarioAgents builds the agents of scenario missions from their seeds.
// The saga record holds only the scenario, never the agents (they are large
// and fully determined by it), so every step rebuilds them, and an
// orchestrator that resumes someone else's saga needs nothing but the
// record. Generation is deterministic, so the cache is an optimisation only.
type scenarioAgents struct {
	group singleflight.Group // one generation per scenario at a time

	mu    sync.Mutex
	byKey map[string]*scenarioWorld
	order []string // insertion order, for eviction
}

// scenarioWorld is the agents of one scenario, whose submaps may still be
// being integrated: agents and err are set before ready is closed.
type scenarioWorld struct {
	ready  chan struct{}
	agents []*typesv1.Agent
	err    error
}

func newScenarioAgents() *scenarioAgents {
	return &scenarioAgents{byKey: make(map[string]*scenarioWorld, scenarioCacheSize)}
}

// worldConfig maps a normalized scenario onto the world generator's config.
// The enum values are the generator's kinds plus one (proto3 reserves 0).
func worldConfig(s *typesv1.Scenario) world.Config {
	return world.Config{
		Seed:    s.GetSeed(),
		Agents:  int(s.GetAgents()),
		WidthM:  s.GetWidthM(),
		HeightM: s.GetHeightM(),
		Kind:    world.Kind(s.GetKind() - 1),
	}
}

// Prepare starts building the agents of a normalized scenario and returns
// once the generator has accepted it (world.StartAgents): its error is the
// generator refusing the scenario. The submaps are integrated in the
// background, while the mission begins, and Agents waits for them.
func (c *scenarioAgents) Prepare(s *typesv1.Scenario) error {
	_, err := c.world(s)
	return err
}

// Agents returns the agents of a normalized scenario, once their submaps are
// built; ctx ends the wait with its error. The slice and its messages are
// shared with other callers and must not be modified.
func (c *scenarioAgents) Agents(ctx context.Context, s *typesv1.Scenario) ([]*typesv1.Agent, error) {
	w, err := c.world(s)
	if err != nil {
		return nil, err
	}
	select {
	case <-w.ready:
		return w.agents, w.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// world returns the scenario's cached world, or starts generating it.
func (c *scenarioAgents) world(s *typesv1.Scenario) (*scenarioWorld, error) {
	key := strconv.FormatUint(s.GetSeed(), 10) + "/" + strconv.FormatUint(uint64(s.GetAgents()), 10) + "/" +
		strconv.FormatFloat(s.GetWidthM(), 'g', -1, 64) + "/" + strconv.FormatFloat(s.GetHeightM(), 'g', -1, 64) + "/" +
		strconv.Itoa(int(s.GetKind()))
	c.mu.Lock()
	w, ok := c.byKey[key]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		p, err := world.StartAgents(worldConfig(s))
		if err != nil {
			return nil, fmt.Errorf("generate world: %w", err)
		}
		w := &scenarioWorld{ready: make(chan struct{})}
		go func() {
			defer close(w.ready)
			built, err := p.Wait()
			if err != nil {
				w.err = fmt.Errorf("generate world: %w", err)
				return
			}
			// Submaps, not scans: they are what the services work on, so
			// sending them spares both services integrating the same scans
			// again.
			w.agents = slamproto.WorldAgents(built, slamproto.Submaps)
		}()
		c.put(key, w)
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*scenarioWorld), nil
}

func (c *scenarioAgents) put(key string, w *scenarioWorld) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	if len(c.order) >= scenarioCacheSize {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	c.byKey[key] = w
	c.order = append(c.order, key)
}
