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
			if err := c.Prepare(s); err != nil {
				t.Fatal(err)
			}
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
	if err := c.Prepare(s); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Fatalf("Prepare = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Agents(context.Background(), s); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Fatalf("Agents = %v, want ErrInvalidArgument", err)
	}
	if n := len(c.byKey); n != 0 {
		t.Fatalf("%d refused scenarios cached", n)
	}
}

// The cache keeps the most recent scenarioCacheSize worlds.
func TestScenarioCacheEvictsTheOldest(t *testing.T) {
	t.Parallel()
	c := newScenarioAgents()
	for seed := range uint64(scenarioCacheSize + 2) {
		if err := c.Prepare(&typesv1.Scenario{Seed: seed, Agents: 1, WidthM: 10, HeightM: 8, Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.byKey) != scenarioCacheSize || len(c.order) != scenarioCacheSize {
		t.Fatalf("cache holds %d worlds (%d in order), want %d", len(c.byKey), len(c.order), scenarioCacheSize)
	}
	if _, ok := c.byKey["0/1/10/8/1"]; ok {
		t.Fatal("the oldest world is still cached")
	}
}
