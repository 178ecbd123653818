package orchestrator

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// scenarioCacheSize bounds the scenarios whose agents stay in memory once no
// mission this orchestrator runs holds them: a mission started here holds
// its world until its run ends (Prepare), so its steps never generate it
// again however many missions start meanwhile. A default 20×15 m world's
// three submaps weigh about 110 KB, the largest (16 agents, 200×200 m)
// about 830 KB.
const scenarioCacheSize = 32

// scenarioHeldBytes bounds the agents (proto bytes) of the worlds missions
// hold: past it a mission starts without a hold, and its steps find its
// world in the cache while it lasts. Held worlds are missions in flight,
// which an outage can pile up (a step's retries, then compensation, can
// last minutes); 64 MiB is several hundred default worlds.
const scenarioHeldBytes = 64 << 20

// scenarioAgents builds the agents of scenario missions from their seeds.
// The saga record holds only the scenario, never the agents (they are large
// and fully determined by it), so every step rebuilds them, and an
// orchestrator that resumes someone else's saga needs nothing but the
// record. Generation is deterministic, so the cache is an optimisation only.
type scenarioAgents struct {
	group singleflight.Group // one generation per scenario at a time

	mu        sync.Mutex
	byKey     map[string]*scenarioWorld
	order     []string // insertion order, for eviction
	pinned    int      // entries of byKey with holds (every held entry is cached)
	heldBytes int64    // the sizes of the held entries
	heldLimit int64    // scenarioHeldBytes
}

// scenarioWorld is the agents of one scenario, whose submaps may still be
// being integrated: agents and err are set before ready is closed.
type scenarioWorld struct {
	ready  chan struct{}
	agents []*typesv1.Agent
	err    error
	// Under scenarioAgents.mu: missions holding it (Prepare), and the
	// proto size of its agents once they are built.
	holds int
	size  int64
}

func newScenarioAgents() *scenarioAgents {
	return &scenarioAgents{byKey: make(map[string]*scenarioWorld, scenarioCacheSize), heldLimit: scenarioHeldBytes}
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
// background, while the mission begins, and Agents waits for them. The
// world stays cached until release is called (when the mission's run ends;
// a second call does nothing), unless the held worlds are at
// scenarioHeldBytes already.
func (c *scenarioAgents) Prepare(s *typesv1.Scenario) (release func(), err error) {
	key := scenarioKey(s)
	w, err := c.world(key, s)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heldBytes >= c.heldLimit {
		return func() {}, nil
	}
	switch cached, ok := c.byKey[key]; {
	case !ok:
		// Evicted since world returned it (more than scenarioCacheSize
		// others came and went): cached again, to be held.
		c.insert(key, w)
	case cached != w:
		w = cached // a second generation of the same world; hold the cached one
	}
	if w.holds++; w.holds == 1 {
		c.pinned++
		c.heldBytes += w.size
	}
	var once sync.Once
	return func() { once.Do(func() { c.release(w) }) }, nil
}

// release drops a hold on w, and evicts what the cache then holds beyond
// its size.
func (c *scenarioAgents) release(w *scenarioWorld) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.holds--; w.holds == 0 {
		c.pinned--
		c.heldBytes -= w.size
		c.evict()
	}
}

// Agents returns the agents of a normalized scenario, once their submaps are
// built; ctx ends the wait with its error. The slice and its messages are
// shared with other callers and must not be modified.
func (c *scenarioAgents) Agents(ctx context.Context, s *typesv1.Scenario) ([]*typesv1.Agent, error) {
	w, err := c.world(scenarioKey(s), s)
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

// scenarioKey names a normalized scenario in the cache.
func scenarioKey(s *typesv1.Scenario) string {
	return strconv.FormatUint(s.GetSeed(), 10) + "/" + strconv.FormatUint(uint64(s.GetAgents()), 10) + "/" +
		strconv.FormatFloat(s.GetWidthM(), 'g', -1, 64) + "/" + strconv.FormatFloat(s.GetHeightM(), 'g', -1, 64) + "/" +
		strconv.Itoa(int(s.GetKind()))
}

// world returns the cached world of scenario s (named key), or starts
// generating it.
func (c *scenarioAgents) world(key string, s *typesv1.Scenario) (*scenarioWorld, error) {
	c.mu.Lock()
	w, ok := c.byKey[key]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		// A generation that ended between the look above and this call
		// has cached its world: take it rather than make another.
		c.mu.Lock()
		cached, ok := c.byKey[key]
		c.mu.Unlock()
		if ok {
			return cached, nil
		}
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
			var size int64
			for _, a := range w.agents {
				size += int64(proto.Size(a))
			}
			c.mu.Lock()
			if w.size = size; w.holds > 0 {
				c.heldBytes += size
			}
			c.mu.Unlock()
		}()
		c.put(key, w)
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*scenarioWorld), nil
}

// put caches w under key, then evicts what the cache holds beyond its
// size.
func (c *scenarioAgents) put(key string, w *scenarioWorld) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.insert(key, w)
	c.evict()
}

// insert caches w under key, the newest entry; c.mu is held.
func (c *scenarioAgents) insert(key string, w *scenarioWorld) {
	c.byKey[key] = w
	c.order = append(c.order, key)
}

// evict drops the oldest worlds no mission holds while more than
// scenarioCacheSize are cached; c.mu is held.
func (c *scenarioAgents) evict() {
	for i := 0; len(c.byKey)-c.pinned > scenarioCacheSize && i < len(c.order); {
		if key := c.order[i]; c.byKey[key].holds == 0 {
			delete(c.byKey, key)
			c.order = slices.Delete(c.order, i, i+1)
			continue
		}
		i++
	}
}
