package fuse_test

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
)

func TestWarpIdentityCopies(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 1, Agents: 1})
	src := w.Agents[0].Submap
	dst, _ := grid.New(src.Meta())
	if err := fuse.Warp(dst, src, slam.Pose2D{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dst.ToInt8(), src.ToInt8()) {
		t.Fatal("warping by the identity into the same metadata changed the grid")
	}
	// Warping twice adds the evidence: log-odds double (up to the clamp).
	fuse.Warp(dst, src, slam.Pose2D{})
	for i, l := range src.LogOdds() {
		if want := grid.ClampLogOdds(2 * l); dst.LogOdds()[i] != want {
			t.Fatalf("cell %d: %g after two warps, want %g", i, dst.LogOdds()[i], want)
		}
	}
}

func TestWarpPlacesSubmapAtItsPose(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 6, Agents: 3, RangeNoise: world.Off, OdomNoise: world.Off, OdomRotNoise: world.Off})
	for _, a := range w.Agents {
		g, _ := grid.New(w.Truth.Meta())
		if err := fuse.Warp(g, a.Submap, a.Truth); err != nil {
			t.Fatal(err)
		}
		// At the true pose, what the submap calls occupied is a wall of the
		// truth (within a cell) and what it calls free is free.
		e, tr := g.LogOdds(), w.Truth.LogOdds()
		m := g.Meta()
		bad, occ := 0, 0
		for y := 1; y < m.Height-1; y++ {
			for x := 1; x < m.Width-1; x++ {
				if e[y*m.Width+x] <= 0 {
					continue
				}
				occ++
				found := false
				for dy := -1; dy <= 1 && !found; dy++ {
					for dx := -1; dx <= 1; dx++ {
						if tr[(y+dy)*m.Width+x+dx] > 0 {
							found = true
						}
					}
				}
				if !found {
					bad++
				}
			}
		}
		if occ == 0 || float64(bad) > 0.02*float64(occ) {
			t.Errorf("agent %d: %d of %d occupied cells are not on a truth wall", a.Index, bad, occ)
		}
	}
}

func TestMergeGate(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 3, Agents: 2})
	base, _ := grid.New(w.Truth.Meta())
	in := []fuse.Input{
		{Agent: 0, Submap: w.Agents[0].Submap, Pose: w.Agents[0].Truth},
		{Agent: 1, Submap: w.Agents[1].Submap, Pose: w.Agents[1].Truth},
	}
	merged, rep, err := fuse.Merge(base, in, fuse.Options{})
	if err != nil {
		t.Fatalf("merge at true poses: %v (report %+v)", err, rep)
	}
	if !rep.Agents[1].Judged || rep.Agents[1].Consistency < fuse.DefaultMinConsistency {
		t.Fatalf("true poses judged inconsistent: %+v", rep.Agents[1])
	}
	if occ, _, _ := base.Counts(); occ != 0 {
		t.Fatal("Merge modified its base")
	}
	if occ, _, _ := merged.Counts(); occ == 0 {
		t.Fatal("merged map is empty")
	}
	// The same submap 0.6 m and 15° off contradicts the first.
	off := in[1]
	off.Pose = slam.Pose2D{X: off.Pose.X + 0.6, Y: off.Pose.Y - 0.3, Theta: off.Pose.Theta + 0.26}
	_, rep, err = fuse.Merge(base, []fuse.Input{in[0], off}, fuse.Options{})
	var ie *fuse.InconsistencyError
	if !errors.Is(err, slam.ErrInconsistent) || !errors.As(err, &ie) || ie.Agent != 1 {
		t.Fatalf("misplaced submap: %v (report %+v), want InconsistencyError for agent 1", err, rep)
	}
	t.Logf("consistency at the true pose %.4f, misplaced %.4f", 0.0+rep.Agents[1].Consistency, ie.Consistency)
}

func TestMergeRejectsBadInput(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 3, Agents: 1})
	base, _ := grid.New(w.Truth.Meta())
	for name, in := range map[string]fuse.Input{
		"nil submap": {Agent: 0},
		"nan pose":   {Submap: w.Agents[0].Submap, Pose: slam.Pose2D{X: math.NaN()}},
		"inf pose":   {Submap: w.Agents[0].Submap, Pose: slam.Pose2D{Theta: math.Inf(1)}},
	} {
		if _, _, err := fuse.Merge(base, []fuse.Input{in}, fuse.Options{}); !errors.Is(err, slam.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := fuse.Warp(base, w.Agents[0].Submap, slam.Pose2D{Y: math.Inf(-1)}); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("Warp with an infinite pose: %v", err)
	}
	// A pose that puts the submap far outside the map is not an error: there
	// is simply nothing to add.
	if err := fuse.Warp(base, w.Agents[0].Submap, slam.Pose2D{X: 1e5}); err != nil {
		t.Errorf("Warp far outside: %v", err)
	}
}

// BenchmarkFuse4 merges four agents' submaps into an empty 20×15 m map at
// 5 cm, with the consistency measure. Target: ≤ 10 ms.
func BenchmarkFuse4(b *testing.B) { benchmarkFuse(b, world.Config{Seed: 1, Agents: 4}) }

// BenchmarkFuseTiny is the tiny workload's merge: one agent of a 10x8 m
// world onto its empty map.
func BenchmarkFuseTiny(b *testing.B) {
	benchmarkFuse(b, world.Config{Seed: 1, Agents: 1, WidthM: 10, HeightM: 8})
}

// truthInputs generates the world of cfg and returns its empty map and its
// agents' submaps at their true poses: a merge's inputs with no pose error.
func truthInputs(tb testing.TB, cfg world.Config) (*grid.Grid, []fuse.Input) {
	tb.Helper()
	w, err := world.Generate(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	base, err := grid.New(w.Truth.Meta())
	if err != nil {
		tb.Fatal(err)
	}
	in := make([]fuse.Input, len(w.Agents))
	for i, a := range w.Agents {
		in[i] = fuse.Input{Agent: i, Submap: a.Submap, Pose: a.Truth}
	}
	return base, in
}

func benchmarkFuse(b *testing.B, cfg world.Config) {
	base, in := truthInputs(b, cfg)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := fuse.Merge(base, in, fuse.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestChangedShareRegionSlides checks the per-region test on a made-up
// pair of grids: walls every 8 cells on confident floor, and an input that
// adds 40 occupied cells on that floor. As one 8×5 block across the corner
// of four 1 m tiles (no tile holds 10 % disagreement) the block is a
// contradiction: the region centred on each of its cells is; the same 40
// cells scattered 1.5 m apart are noise and count nothing.
func TestChangedShareRegionSlides(t *testing.T) {
	t.Parallel()
	meta := grid.Meta{Resolution: 0.05, Width: 120, Height: 120}
	base, err := grid.New(meta)
	if err != nil {
		t.Fatal(err)
	}
	cells := base.LogOdds()
	for y := range meta.Height {
		for x := range meta.Width {
			cells[y*meta.Width+x] = -3
			if y%8 == 0 {
				cells[y*meta.Width+x] = 3
			}
		}
	}
	occupy := func(pts [][2]int) *grid.Grid {
		in := base.Clone()
		for _, p := range pts {
			in.LogOdds()[p[1]*meta.Width+p[0]] = 3
		}
		return in
	}
	var block, scattered [][2]int
	for y := 18; y <= 22; y++ { // rows 17..23 lie between the walls at 16 and 24
		for x := 16; x <= 23; x++ { // tiles meet at x = 20, y = 20
			block = append(block, [2]int{x, y})
		}
	}
	for i := range 40 {
		scattered = append(scattered, [2]int{4 + 30*(i%4), 4 + 8*(i/4)}) // rows y%8 == 4
	}
	for _, tc := range []struct {
		name           string
		pts            [][2]int
		cells, regions int
	}{
		{"block across four tiles", block, 40, 4},
		{"scattered", scattered, 0, 0},
	} {
		ar, err := fuse.Consistency(base, occupy(tc.pts), slam.Pose2D{}, fuse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !ar.Judged || ar.Disagreement != len(tc.pts) || ar.ContradictedCells != tc.cells || ar.ContradictedRegions != tc.regions {
			t.Errorf("%s: %+v, want %d disagreements, %d contradicted cells in %d tiles", tc.name, ar, len(tc.pts), tc.cells, tc.regions)
		}
	}
}

// TestMergeOntoUnknownGroundOnlyAdds: an input over ground the map knows
// nothing confident about (the map as allocated, or a corner nobody has
// seen) cannot be judged: the merge adds it exactly as Warp does, with a
// report of no shared cells. Also when the map is confident elsewhere, and
// for every agent of a seeded world merged alone onto an empty map.
func TestMergeOntoUnknownGroundOnlyAdds(t *testing.T) {
	for seed := range uint64(4) {
		w, err := world.Generate(world.Config{Seed: seed + 1, Agents: 3})
		if err != nil {
			t.Fatal(err)
		}
		for k, a := range w.Agents {
			base, _ := grid.New(w.Truth.Meta())
			if seed%2 == 1 {
				base.Add(0, 0, 3) // confident, but far from every agent's footprint
			}
			in := fuse.Input{Agent: k, Submap: a.Submap, Pose: a.Truth}
			merged, rep, err := fuse.Merge(base, []fuse.Input{in}, fuse.Options{})
			if err != nil {
				t.Fatalf("seed %d agent %d: %v", seed, k, err)
			}
			want := base.Clone()
			if err := fuse.Warp(want, a.Submap, a.Truth); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(merged.LogOdds(), want.LogOdds()) {
				t.Errorf("seed %d agent %d: merged cells differ from the warp alone", seed, k)
			}
			if ar := rep.Agents[0]; ar.Judged || ar.Agreement != 0 || ar.Disagreement != 0 || ar.Consistency != 1 {
				t.Errorf("seed %d agent %d: report %+v, want not judged, nothing shared", seed, k, ar)
			}
		}
	}
}

// BenchmarkWarp adds the three submaps of an office mission into its 20×15
// m map at 5 cm at their true poses: the warps localization makes for its
// references (fuse.Warp).
//
//	go test -run '^$' -bench Warp -benchmem ./internal/slam/fuse
func BenchmarkWarp(b *testing.B) {
	base, in := truthInputs(b, world.Config{Seed: 1, Agents: 3})
	b.ReportAllocs()
	for b.Loop() {
		dst := base.Clone()
		for _, x := range in {
			if err := fuse.Warp(dst, x.Submap, x.Pose); err != nil {
				b.Fatal(err)
			}
		}
	}
}
