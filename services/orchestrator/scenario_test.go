package orchestrator

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// The agents a scenario mission's steps get are the generator's world, with
// the submaps the background integration finished, whether or not
// StartMission prepared them first.
func TestScenarioAgentsAreTheGeneratedWorld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for i, s := range []*typesv1.Scenario{
		{Seed: 3, Agents: 3, WidthM: 20, HeightM: 15, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE},
		{Seed: 9, Agents: 2, WidthM: 16, HeightM: 12, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD},
	} {
		c := newScenarioAgents()
		if i == 0 {
			release, err := c.Prepare(s)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
		}
		// Every step of many missions at once: one generation, one answer.
		got := make([][]*typesv1.Agent, 8)
		var wg sync.WaitGroup
		for k := range got {
			wg.Go(func() {
				var err error
				if got[k], err = c.Agents(ctx, s); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		w, err := world.Generate(worldConfig(s))
		if err != nil {
			t.Fatal(err)
		}
		want := slamproto.WorldAgents(w, slamproto.Submaps)
		for k := range got {
			if len(got[k]) != len(want) || &got[k][0] != &got[0][0] {
				t.Fatalf("scenario %d: caller %d got another generation of the agents", i, k)
			}
		}
		for a := range want {
			if !proto.Equal(got[0][a], want[a]) {
				t.Errorf("scenario %d: agent %d differs from world.Generate's", i, a)
			}
		}
	}
}

// A scenario the generator refuses is refused by Prepare (StartMission's
// INVALID_ARGUMENT) and by Agents alike, and is not cached.
func TestScenarioRefusedByTheGenerator(t *testing.T) {
	t.Parallel()
	c := newScenarioAgents()
	s := &typesv1.Scenario{Seed: 1, Agents: world.MaxAgents + 1, WidthM: 20, HeightM: 15, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE}
	if _, err := c.Prepare(s); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Fatalf("Prepare = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Agents(context.Background(), s); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Fatalf("Agents = %v, want ErrInvalidArgument", err)
	}
	if n := len(c.byKey); n != 0 {
		t.Fatalf("%d refused scenarios cached", n)
	}
}

// The cache keeps every world a mission holds, however many others come
// and go, and the most recent scenarioCacheSize of the others; a world is
// evictable once its last hold is released, and a second release of a hold
// changes nothing.
func TestScenarioCacheKeepsWhatMissionsHold(t *testing.T) {
	t.Parallel()
	c := newScenarioAgents()
	tiny := func(seed uint64) *typesv1.Scenario {
		return &typesv1.Scenario{Seed: seed, Agents: 1, WidthM: 10, HeightM: 8, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE}
	}
	prepare := func(seed uint64) func() {
		t.Helper()
		release, err := c.Prepare(tiny(seed))
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	cached := func(seed uint64) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.byKey[scenarioKey(tiny(seed))]
		return ok
	}
	held := prepare(0)
	heldTwice := prepare(1)
	again := prepare(1)
	for seed := uint64(2); seed < 2+2*scenarioCacheSize; seed++ {
		prepare(seed)() // a mission that ended at once
	}
	if !cached(0) || !cached(1) {
		t.Fatal("a world a mission holds was evicted")
	}
	if cached(2) || !cached(1+2*scenarioCacheSize) {
		t.Fatal("the cache did not keep the most recent of the worlds no mission holds")
	}
	if n := len(c.byKey); n != scenarioCacheSize+2 {
		t.Fatalf("cache holds %d worlds, want %d unheld and the 2 held", n, scenarioCacheSize)
	}
	held()
	held()
	heldTwice()
	if cached(0) || !cached(1) {
		t.Fatalf("after releases: world 0 cached %v (no hold left), world 1 %v (one hold left)", cached(0), cached(1))
	}
	again()
	c.mu.Lock()
	n, pinned, heldBytes := len(c.byKey), c.pinned, c.heldBytes
	c.mu.Unlock()
	if cached(1) || n != scenarioCacheSize || pinned != 0 || heldBytes != 0 {
		t.Fatalf("after the last release: world 1 cached %v, %d worlds, %d held of %d bytes", cached(1), n, pinned, heldBytes)
	}
}

// Held worlds are bounded in bytes: past the limit a mission starts without
// a hold (its world stays cached only as long as the cache keeps it).
func TestScenarioHoldsAreBoundedInBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newScenarioAgents()
	tiny := func(seed uint64) *typesv1.Scenario {
		return &typesv1.Scenario{Seed: seed, Agents: 1, WidthM: 10, HeightM: 8, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE}
	}
	first, err := c.Prepare(tiny(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Agents(ctx, tiny(1)); err != nil { // built: its size counts
		t.Fatal(err)
	}
	c.mu.Lock()
	size := c.heldBytes
	c.heldLimit = size // the next hold would pass it
	c.mu.Unlock()
	if size <= 0 {
		t.Fatalf("a held, built world weighs %d bytes", size)
	}
	second, err := c.Prepare(tiny(2))
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	held2, pinned := c.byKey[scenarioKey(tiny(2))].holds, c.pinned
	c.mu.Unlock()
	if held2 != 0 || pinned != 1 {
		t.Fatalf("past the limit: world 2 has %d holds, %d worlds held; want none and 1", held2, pinned)
	}
	second()
	first()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pinned != 0 || c.heldBytes != 0 {
		t.Fatalf("after the releases: %d held of %d bytes", c.pinned, c.heldBytes)
	}

}
