package match

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// realMission reads the StartMission request of a real mission
// (../shared/realdata/missions, next to the project root) as LocalizeAll's
// input: the mission map and the agents.
func realMission(tb testing.TB, name string) (grid.Meta, []Agent) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "shared", "realdata", "missions", name+".json"))
	if err != nil {
		tb.Fatalf("real mission %s: %v", name, err)
	}
	req := &orchestratorv1.StartMissionRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		tb.Fatal(err)
	}
	ms := req.GetMap()
	meta, err := grid.MetaForBounds(ms.GetOriginX(), ms.GetOriginY(), ms.GetWidthM(), ms.GetHeightM(), ms.GetResolution())
	if err != nil {
		tb.Fatal(err)
	}
	in, err := slamproto.AgentsFromProto(req.GetAgents(), meta.Resolution)
	if err != nil {
		tb.Fatal(err)
	}
	agents := make([]Agent, len(in))
	for i, a := range in {
		agents[i] = Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor}
	}
	return meta, agents
}

// A refinement over its region (refineRegion) keeps the pose and score a
// refinement over the whole mission map keeps, on synthetic offices at 5,
// 10 and 20 cm and on the real missions, from the poses the rounds give
// and from starts off them by most of what the refinement may move; and the region is a part of the map, not all of it, where an agent saw
// a part.
func TestRefinementOverItsRegionKeepsTheWholeMapsPose(t *testing.T) {
	t.Parallel()
	type mission struct {
		name   string
		meta   grid.Meta
		agents []Agent
	}
	var missions []mission
	for _, c := range []world.Config{
		{Seed: 1, Agents: 3}, {Seed: 2, Agents: 3}, {Seed: 3, Agents: 3},
		{Seed: 4, Agents: 3}, {Seed: 5, Agents: 3}, {Seed: 6, Agents: 3},
		// The fine search's walk and the fields' reach grow with the cell.
		{Seed: 7, Agents: 3, Resolution: 0.1}, {Seed: 8, Agents: 4, Resolution: 0.1},
		{Seed: 9, Agents: 3, Resolution: 0.2}, {Seed: 10, Agents: 4, Resolution: 0.2},
	} {
		w, err := world.Generate(c)
		if err != nil {
			t.Fatal(err)
		}
		agents := make([]Agent, len(w.Agents))
		for i, a := range w.Agents {
			agents[i] = Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor}
		}
		missions = append(missions, mission{fmt.Sprintf("office seed %d at %g m", c.Seed, w.Truth.Meta().Resolution), w.Truth.Meta(), agents})
	}
	for _, name := range []string{"intel-local-3", "intel-odomline-3", "fr079-local-4", "willow-3"} {
		meta, agents := realMission(t, name)
		missions = append(missions, mission{name, meta, agents})
	}
	ctx := context.Background()
	refined, smaller := 0, 0
	for _, m := range missions {
		results, err := LocalizeAll(ctx, m.meta, m.agents, Options{SkipRefinement: true}, nil)
		if err != nil {
			t.Fatalf("%s: rounds: %v", m.name, err)
		}
		for i, a := range m.agents {
			if a.Anchor || !results[i].Localized {
				continue
			}
			ps := extractPoints(a.Submap)
			// From the rounds' pose, and from starts off it by most of the
			// moves the refinement may keep: these walk to the region's
			// edge, so a pad short of what the refinement reads shows
			// (found by a helper: with the rounds' poses alone, a pad of
			// the fields' reach alone passed).
			d, turn := 0.75*refineMaxShift, 0.75*refineMaxTurn
			for k, off := range []slam.Pose2D{{}, {X: d}, {Y: -d}, {X: -d, Y: d, Theta: turn}, {Theta: -turn}} {
				start := slices.Clone(results)
				start[i].Pose = slam.Pose2D{X: results[i].Pose.X + off.X, Y: results[i].Pose.Y + off.Y, Theta: results[i].Pose.Theta + off.Theta}
				region := refineRegion(m.meta, ps, start[i].Pose)
				whole, err := refineOne(ctx, m.meta, m.meta, m.agents, ps, start, i)
				if err != nil {
					t.Fatalf("%s agent %d: whole map: %v", m.name, i, err)
				}
				part, err := refineOne(ctx, m.meta, region, m.agents, ps, start, i)
				if err != nil {
					t.Fatalf("%s agent %d: region: %v", m.name, i, err)
				}
				const tol = 1e-9
				if math.Abs(whole.Pose.X-part.Pose.X) > tol || math.Abs(whole.Pose.Y-part.Pose.Y) > tol ||
					math.Abs(whole.Pose.Theta-part.Pose.Theta) > tol || math.Abs(whole.Score-part.Score) > tol {
					t.Errorf("%s agent %d from %+v: over its region %+v (score %.6f), over the map %+v (score %.6f)",
						m.name, i, start[i].Pose, part.Pose, part.Score, whole.Pose, whole.Score)
				}
				if whole.Pose != start[i].Pose {
					refined++
				}
				if region.Cells() < m.meta.Cells() {
					smaller++
				}
				if k == 0 {
					t.Logf("%s agent %d: region %d of %d cells; refined %v", m.name, i, region.Cells(), m.meta.Cells(), whole.Pose != results[i].Pose)
				}
			}
		}
	}
	// The comparison means something only if refinements moved poses, and
	// the region only if it is smaller than the map.
	if refined == 0 || smaller == 0 {
		t.Errorf("%d refinements moved a pose and %d regions were smaller than their map: want some of each", refined, smaller)
	}
}
