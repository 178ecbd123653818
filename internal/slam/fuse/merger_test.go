package fuse_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// TestMergerIsMergeThenContributors: over office and changed worlds, with
// true and perturbed poses, adding the inputs one by one to a Merger gives
// Merge's grid, reports and first error, and its Contributors the layer
// Contributors computes by warping every input again, whether the Merger
// kept an input's window or (past its budget of one map's cells) warps it
// again too.
func TestMergerIsMergeThenContributors(t *testing.T) {
	t.Parallel()
	failed, merged, kept, rewarped := 0, 0, 0, 0
	for seed := uint64(1); seed <= 12; seed++ {
		kind, agents := world.Office, 1+int(seed%4)
		if seed%3 == 0 {
			kind, agents = world.ChangedWorld, max(agents, 2)
		}
		w, err := world.Generate(world.Config{Seed: seed, Agents: agents, Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		base, _ := grid.New(w.Truth.Meta())
		in := make([]fuse.Input, len(w.Agents))
		for i, a := range w.Agents {
			pose := a.Truth
			if seed%4 == 1 {
				pose = a.InitialGuess // up to 0.5 m and 10° off: some merges fail
			}
			in[i] = fuse.Input{Agent: i, Submap: a.Submap, Pose: pose}
		}
		want, wantRep, wantErr := fuse.Merge(base, in, fuse.Options{})

		m := fuse.NewMerger(base, fuse.Options{})
		var reps []fuse.AgentReport
		var firstErr error
		for _, x := range in {
			ar, err := m.Add(x)
			if err != nil && !errors.Is(err, slam.ErrInconsistent) {
				t.Fatalf("seed %d: Add: %v", seed, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			reps = append(reps, ar)
		}
		if !slices.Equal(reps, wantRep.Agents) {
			t.Errorf("seed %d: reports %+v, Merge's %+v", seed, reps, wantRep.Agents)
		}
		if (firstErr == nil) != (wantErr == nil) || (firstErr != nil && firstErr.Error() != wantErr.Error()) {
			t.Errorf("seed %d: first error %v, Merge's %v", seed, firstErr, wantErr)
		}
		if wantErr != nil {
			failed++
			continue
		}
		merged++
		k, r := fuse.KeptWindows(m)
		kept, rewarped = kept+k, rewarped+r
		if !slices.Equal(m.Grid().LogOdds(), want.LogOdds()) {
			t.Errorf("seed %d: the Merger's grid differs from Merge's", seed)
		}
		got, err := m.Contributors()
		if err != nil {
			t.Fatal(err)
		}
		layer, err := fuse.Contributors(want, in)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, layer) {
			t.Errorf("seed %d: the Merger's contributor layer differs from Contributors'", seed)
		}
	}
	if failed == 0 || merged == 0 || kept == 0 || rewarped == 0 {
		t.Errorf("%d merges failed and %d succeeded, %d windows kept and %d inputs warped again: the worlds must exercise all four",
			failed, merged, kept, rewarped)
	}
}

// TestMergerRefusesBadInput: a nil submap or an invalid pose is
// slam.ErrInvalidArgument, adds nothing and takes its number (a later
// input's error names its own position), and the merge has no contributor
// layer; an input outside the map adds nothing and still takes its number.
func TestMergerRefusesBadInput(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 2, Agents: 2})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := grid.New(w.Truth.Meta())
	m := fuse.NewMerger(base, fuse.Options{})
	for k, in := range []fuse.Input{
		{Pose: w.Agents[0].Truth},
		{Submap: w.Agents[0].Submap, Pose: slam.Pose2D{X: math.NaN()}},
	} {
		_, err := m.Add(in)
		if !errors.Is(err, slam.ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprintf("input %d", k)) {
			t.Errorf("input %d: err = %v, want slam.ErrInvalidArgument naming input %d", k, err, k)
		}
	}
	if !slices.Equal(m.Grid().LogOdds(), base.LogOdds()) {
		t.Error("a refused input changed the map")
	}
	if _, err := m.Contributors(); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("Contributors after a refused input: %v, want slam.ErrInvalidArgument", err)
	}

	m = fuse.NewMerger(base, fuse.Options{})
	if _, err := m.Add(fuse.Input{Submap: w.Agents[0].Submap, Pose: slam.Pose2D{X: 1e5}}); err != nil {
		t.Fatalf("outside the map: %v", err)
	}
	if _, err := m.Add(fuse.Input{Agent: 1, Submap: w.Agents[1].Submap, Pose: w.Agents[1].Truth}); err != nil {
		t.Fatal(err)
	}
	layer, err := m.Contributors()
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, c := range layer {
		switch c {
		case fuse.NoContributor:
		case 2:
			named++
		default:
			t.Fatalf("layer names input %d; only the second input covers the map", c-1)
		}
	}
	if named == 0 {
		t.Error("the second input decided no cell")
	}
}

// BenchmarkMergeStep is the merge service's fusion of an office mission (3
// agents of a 20×15 m office at 5 cm onto its empty map, one at a time) with
// its contributor layer. Sub-benchmark merger uses a Merger: one copy of the
// map, the layer read off the kept windows. Sub-benchmark merge-per-input is
// the service before the Merger: Merge once per input, then Contributors,
// which warps every input again.
//
//	go test -run '^$' -bench MergeStep -benchmem ./internal/slam/fuse
func BenchmarkMergeStep(b *testing.B) {
	base, in := truthInputs(b, world.Config{Seed: 1, Agents: 3})
	b.Run("merger", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := fuse.NewMerger(base, fuse.Options{})
			for _, x := range in {
				if _, err := m.Add(x); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Contributors(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("merge-per-input", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			merged := base
			for _, x := range in {
				next, _, err := fuse.Merge(merged, []fuse.Input{x}, fuse.Options{})
				if err != nil {
					b.Fatal(err)
				}
				merged = next
			}
			if _, err := fuse.Contributors(merged, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestMergerKeepsWindowsApart: past the window budget an input's window
// goes to the scratch buffer, and a later, smaller window that is kept may
// be warped into that buffer; the next input not kept must then not write
// over it. Seeds 3 and 5 with five or more agents go through that sequence
// (the layer differed from Contributors' when the kept window stayed the
// scratch buffer).
func TestMergerKeepsWindowsApart(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{3, 5} {
		for _, agents := range []int{5, 8} {
			base, in := truthInputs(t, world.Config{Seed: seed, Agents: agents})
			m := fuse.NewMerger(base, fuse.Options{})
			for _, x := range in {
				if _, err := m.Add(x); err != nil {
					t.Fatalf("seed %d, %d agents: %v", seed, agents, err)
				}
			}
			if kept, rewarped := fuse.KeptWindows(m); kept == 0 || rewarped == 0 {
				t.Fatalf("seed %d, %d agents: %d windows kept and %d inputs warped again; the case needs both", seed, agents, kept, rewarped)
			}
			got, err := m.Contributors()
			if err != nil {
				t.Fatal(err)
			}
			want, err := fuse.Contributors(m.Grid(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("seed %d, %d agents: the Merger's contributor layer differs from Contributors'", seed, agents)
			}
		}
	}
}

// TestMergerBuffersLeaveNoTrace: the working memory a Merger takes from
// its pool was last used by another merge, of larger or smaller windows.
// Over office and changed worlds merged in turn (so each merge finds the
// last one's buffers), each Add reports what Consistency, on fresh memory,
// measures for the input against the map so far, and the contributor
// layer is the one the same merge gives when merged again after all the
// others.
func TestMergerBuffersLeaveNoTrace(t *testing.T) {
	type merge struct {
		base *grid.Grid
		in   []fuse.Input
	}
	var merges []merge
	for seed := uint64(1); seed <= 8; seed++ {
		cfg := world.Config{Seed: seed, Agents: 2 + int(seed%3)}
		if seed%2 == 0 {
			cfg.Kind = world.ChangedWorld
		}
		base, in := truthInputs(t, cfg)
		merges = append(merges, merge{base, in})
	}
	judged := 0
	run := func(mg merge) []uint8 {
		m := fuse.NewMerger(mg.base, fuse.Options{})
		for _, x := range mg.in {
			want, err := fuse.Consistency(m.Grid(), x.Submap, x.Pose, fuse.Options{})
			if err != nil {
				t.Fatal(err)
			}
			want.Agent = x.Agent
			got, err := m.Add(x)
			if err != nil && !errors.Is(err, slam.ErrInconsistent) {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("input %d: Add reports %+v, Consistency %+v", x.Agent, got, want)
			}
			if got.Judged {
				judged++
			}
		}
		layer, err := m.Contributors()
		if err != nil {
			t.Fatal(err)
		}
		return layer
	}
	first := make([][]uint8, len(merges))
	for i, mg := range merges {
		first[i] = run(mg)
	}
	for i := len(merges) - 1; i >= 0; i-- {
		if !slices.Equal(run(merges[i]), first[i]) {
			t.Errorf("merge %d: the contributor layer differs from the same merge's before", i)
		}
	}
	if judged == 0 {
		t.Error("no input was judged: the comparison's buffers were never used")
	}
}
