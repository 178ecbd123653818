package merge_test

import (
	"slices"
	"testing"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/merge"
)

// TestMergeStoresContributors: a synthetic 2-agent mission, its agents sent
// in reverse order so that the layer's indexes cannot line up with the
// world's by accident. The merged version gets a contributor layer naming
// the agents in request order; every known cell that only one agent saw is
// that agent's; no unknown cell is anyone's; RevertMerge removes the layer
// with the version.
func TestMergeStoresContributors(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	const m = "m-contributors"
	w, meta := steptest.SeedWorld(t, e.Redis, m, mapID, world.Config{Seed: 5, Agents: 2})
	agents := slamproto.WorldAgents(w, slamproto.Submaps)
	slices.Reverse(agents)
	req := &mergev1.MergeMapsRequest{Saga: e.Saga(m), MapId: mapID, Agents: agents}
	for i, a := range w.Agents {
		req.Poses = append(req.Poses, &typesv1.AgentPose{AgentId: slamproto.WorldAgentID(i), MapFromAgent: slamproto.PoseToProto(a.Truth), Anchor: a.Anchor})
	}
	resp, err := e.client.MergeMaps(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	layer, err := mapstore.LoadContributors(ctx, e.Redis, m, resp.GetVersion())
	if err != nil || layer == nil {
		t.Fatalf("contributors of v%d = %v, %v", resp.GetVersion(), layer, err)
	}
	if want := []string{slamproto.WorldAgentID(1), slamproto.WorldAgentID(0)}; !slices.Equal(layer.GetAgentIds(), want) {
		t.Fatalf("layer agents %q, want %q (request order)", layer.GetAgentIds(), want)
	}
	if v1, err := mapstore.LoadContributors(ctx, e.Redis, m, 1); err != nil || v1 != nil {
		t.Errorf("the empty version 1 has a layer: %v, %v", v1, err)
	}
	stored, err := mapstore.Load(ctx, e.Redis, m, resp.GetVersion())
	if err != nil {
		t.Fatal(err)
	}
	cells := layer.GetCells()
	if len(cells) != len(stored.Cells) {
		t.Fatalf("layer has %d cells, the map %d", len(cells), len(stored.Cells))
	}

	// What each agent saw: its submap as the service decodes it, warped by
	// its pose into a blank map.
	converted, err := slamproto.AgentsFromProto(agents, meta.Resolution)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string][]float32)
	for i, a := range converted {
		g, _ := grid.New(meta)
		if err := fuse.Warp(g, a.Submap, w.Agents[len(converted)-1-i].Truth); err != nil {
			t.Fatal(err)
		}
		seen[a.ID] = g.LogOdds()
	}
	only := make(map[string]int)
	for i, c := range cells {
		known := int8(stored.Cells[i]) != -1
		if !known {
			if c != 0 {
				t.Fatalf("unknown cell %d is attributed to %d", i, c)
			}
			continue
		}
		var saw []string
		for _, id := range layer.GetAgentIds() {
			if seen[id][i] != 0 {
				saw = append(saw, id)
			}
		}
		if len(saw) == 1 {
			only[saw[0]]++
			if c == 0 || layer.GetAgentIds()[c-1] != saw[0] {
				t.Fatalf("cell %d, seen only by %s, is attributed to %d", i, saw[0], c)
			}
		}
	}
	for _, id := range layer.GetAgentIds() {
		if only[id] < 200 {
			t.Errorf("%s saw %d cells alone; the world should give each agent a region of its own", id, only[id])
		}
	}

	if _, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)}); err != nil {
		t.Fatal(err)
	}
	if after, err := mapstore.LoadContributors(ctx, e.Redis, m, resp.GetVersion()); err != nil || after != nil {
		t.Errorf("contributors after the revert = %v, %v; want none", after, err)
	}
}
