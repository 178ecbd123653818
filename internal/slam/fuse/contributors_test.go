package fuse_test

import (
	"errors"
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// TestContributorsHandMade: on a 40×10 map, agent A sees columns 0..24 and
// agent B columns 15..39 (both at the identity pose). Cells only one agent
// saw are that agent's; in the overlap the stronger agreeing evidence wins;
// a wall A saw where B saw free stays A's (B's evidence disagrees with the
// fused verdict); a cell known from the base only, or unknown, is no one's.
func TestContributorsHandMade(t *testing.T) {
	t.Parallel()
	meta := grid.Meta{Resolution: 0.1, Width: 40, Height: 10}
	a, _ := grid.New(meta)
	b, _ := grid.New(meta)
	base, _ := grid.New(meta)
	for y := range meta.Height {
		for x := range 25 {
			a.Add(x, y, -1)
		}
		for x := 15; x < 40; x++ {
			b.Add(x, y, -2)
		}
	}
	a.Add(20, 5, 4)    // A: a wall at (20, 5), -1+4 = 3 ...
	b.Add(20, 5, 1)    // ... where B says -2+1 = -1: fused +2, A's
	a.Add(10, 5, 0.5)  // A: weakly free at (10, 5); B never saw it
	b.Add(39, 9, 2)    // B: unknown at (39, 9) (-2+2 = 0) ...
	base.Add(39, 9, 1) // ... which the base knows
	in := []fuse.Input{{Agent: 0, Submap: a}, {Agent: 1, Submap: b}}
	merged, _, err := fuse.Merge(base, in, fuse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	merged.Add(39, 0, -merged.At(39, 0)) // a cell the merge left unknown
	layer, err := fuse.Contributors(merged, in)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(layer); n != int(meta.Cells()) {
		t.Fatalf("layer has %d cells, want %d", n, meta.Cells())
	}
	want := func(x, y int, who uint8) {
		t.Helper()
		if got := layer[y*meta.Width+x]; got != who {
			t.Errorf("cell (%d, %d): contributor %d, want %d", x, y, got, who)
		}
	}
	want(0, 0, 1)  // A only
	want(10, 5, 1) // A only, weak
	want(14, 9, 1) // A only
	want(15, 0, 2) // both free, B's -2 beats A's -1
	want(24, 9, 2) // same
	want(20, 5, 1) // A's wall, B outvoted
	want(25, 0, 2) // B only
	want(39, 9, 0) // known from the base only: B saw nothing there
	want(39, 0, 0) // unknown in the merged map
}

// TestContributorsSyntheticWorld: on a seeded 2-agent world merged at the
// true poses, every known cell only one agent's warped submap covers is
// that agent's, every attributed cell was seen by the agent it names, and
// unknown cells are no one's.
func TestContributorsSyntheticWorld(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 4, Agents: 2})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := grid.New(w.Truth.Meta())
	var in []fuse.Input
	var seen [][]float32
	for i, ag := range w.Agents {
		in = append(in, fuse.Input{Agent: i, Submap: ag.Submap, Pose: ag.Truth})
		s, _ := grid.New(w.Truth.Meta())
		if err := fuse.Warp(s, ag.Submap, ag.Truth); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, s.LogOdds())
	}
	merged, _, err := fuse.Merge(base, in, fuse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	layer, err := fuse.Contributors(merged, in)
	if err != nil {
		t.Fatal(err)
	}
	var only [2]int
	for i, f := range merged.LogOdds() {
		sa, sb := seen[0][i] != 0, seen[1][i] != 0
		switch {
		case f == 0:
			if layer[i] != fuse.NoContributor {
				t.Fatalf("cell %d is unknown but attributed to %d", i, layer[i])
			}
			continue
		case sa && !sb:
			only[0]++
			if layer[i] != 1 {
				t.Fatalf("cell %d seen only by agent 0 is attributed to %d", i, layer[i])
			}
		case sb && !sa:
			only[1]++
			if layer[i] != 2 {
				t.Fatalf("cell %d seen only by agent 1 is attributed to %d", i, layer[i])
			}
		}
		if k := layer[i]; k != 0 && seen[k-1][i] == 0 {
			t.Fatalf("cell %d is attributed to agent %d, which did not see it", i, k-1)
		}
	}
	if only[0] < 1000 || only[1] < 1000 {
		t.Errorf("cells seen by one agent only: %v; the world should give each agent a region of its own", only)
	}
}

// TestContributorsRefusesBadInputs: too many inputs, a nil submap or an
// invalid pose is slam.ErrInvalidArgument, never a panic.
func TestContributorsRefusesBadInputs(t *testing.T) {
	t.Parallel()
	meta := grid.Meta{Resolution: 0.1, Width: 4, Height: 4}
	g, _ := grid.New(meta)
	many := make([]fuse.Input, fuse.MaxContributors+1)
	for i := range many {
		many[i] = fuse.Input{Agent: i, Submap: g}
	}
	for name, in := range map[string][]fuse.Input{
		"too many":     many,
		"nil submap":   {{Agent: 0}},
		"invalid pose": {{Agent: 0, Submap: g, Pose: slam.Pose2D{X: math.NaN()}}},
	} {
		if _, err := fuse.Contributors(g, in); !errors.Is(err, slam.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want slam.ErrInvalidArgument", name, err)
		}
	}
}

// BenchmarkContributors4 attributes the cells of BenchmarkFuse4's merge (4
// submaps into 20×15 m at 5 cm): the merge service's extra work per merge
// for the contributor layer. Target: well under BenchmarkFuse4 (≤ 3 ms).
func BenchmarkContributors4(b *testing.B) {
	base, in := truthInputs(b, world.Config{Seed: 1, Agents: 4})
	merged, _, err := fuse.Merge(base, in, fuse.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fuse.Contributors(merged, in); err != nil {
			b.Fatal(err)
		}
	}
}
