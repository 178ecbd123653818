package world

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// mm turns a pose into integers (millimetres, milliradians) so that
// determinism is asserted without comparing floats.
func mm(p slam.Pose2D) [3]int64 {
	return [3]int64{int64(math.Round(p.X * 1000)), int64(math.Round(p.Y * 1000)), int64(math.Round(p.Theta * 1000))}
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{Office, SealedAgent, SymmetricCorridor, ChangedWorld} {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Seed: 42, Agents: 4, Kind: k}
			a, err := Generate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Generate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Truth.ToInt8(), b.Truth.ToInt8()) {
				t.Fatal("truth grids differ for the same seed")
			}
			for i := range a.Agents {
				x, y := a.Agents[i], b.Agents[i]
				if x.Submap.Meta() != y.Submap.Meta() || !slices.Equal(x.Submap.ToInt8(), y.Submap.ToInt8()) {
					t.Fatalf("agent %d submaps differ for the same seed", i)
				}
				if mm(x.Truth) != mm(y.Truth) || mm(x.InitialGuess) != mm(y.InitialGuess) {
					t.Fatalf("agent %d poses differ for the same seed", i)
				}
			}
			c, err := Generate(Config{Seed: 43, Agents: 4, Kind: k})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(a.Truth.ToInt8(), c.Truth.ToInt8()) && mm(a.Agents[0].Truth) == mm(c.Agents[0].Truth) {
				t.Fatal("seeds 42 and 43 gave the same world")
			}
		})
	}
}

func TestAgentCountDoesNotChangeTheBuilding(t *testing.T) {
	t.Parallel()
	a, _ := Generate(Config{Seed: 9, Agents: 2})
	b, _ := Generate(Config{Seed: 9, Agents: 5})
	if !slices.Equal(a.Truth.ToInt8(), b.Truth.ToInt8()) {
		t.Fatal("the floor plan depends on the number of agents")
	}
}

func TestGenerateWorldShape(t *testing.T) {
	t.Parallel()
	w, err := Generate(Config{Seed: 5, Agents: 16})
	if err != nil {
		t.Fatal(err)
	}
	m := w.Truth.Meta()
	if m.Width != 400 || m.Height != 300 || m.Resolution != 0.05 {
		t.Fatalf("truth grid %+v, want 400x300 at 5 cm", m)
	}
	if len(w.Agents) != 16 {
		t.Fatalf("%d agents, want 16", len(w.Agents))
	}
	for i, a := range w.Agents {
		if a.Index != i || a.Anchor != (i == 0) {
			t.Errorf("agent %d: index %d anchor %v", i, a.Index, a.Anchor)
		}
		if len(a.Scans) != DefaultScansPerAgent || len(a.Scans[0].Ranges) != LidarBeams {
			t.Errorf("agent %d: %d scans of %d beams", i, len(a.Scans), len(a.Scans[0].Ranges))
		}
		// Starts are in free space, far enough from every obstacle.
		cx, cy, ok := m.CellOf(a.Truth.X, a.Truth.Y)
		if !ok || w.Truth.At(cx, cy) >= 0 {
			t.Errorf("agent %d starts in an obstacle or outside: %v", i, a.Truth)
		}
		dx, dy := a.InitialGuess.X-a.Truth.X, a.InitialGuess.Y-a.Truth.Y
		dth := math.Abs(slam.AngleDiff(a.InitialGuess.Theta, a.Truth.Theta))
		if a.Anchor && (dx != 0 || dy != 0 || dth != 0) {
			t.Errorf("anchor guess %v differs from truth %v", a.InitialGuess, a.Truth)
		}
		if math.Abs(dx) > 0.5 || math.Abs(dy) > 0.5 || dth > 10*math.Pi/180+1e-12 {
			t.Errorf("agent %d guess perturbed beyond ±0.5 m / ±10°: %v vs %v", i, a.InitialGuess, a.Truth)
		}
		if mm(a.Path[0]) != ([3]int64{}) || mm(a.Odometry[0]) != ([3]int64{}) {
			t.Errorf("agent %d path does not start at the origin of its frame", i)
		}
		if occ, _, _ := a.Submap.Counts(); occ < 100 {
			t.Errorf("agent %d submap has only %d occupied cells", i, occ)
		}
	}
}

func TestScenarioRoles(t *testing.T) {
	t.Parallel()
	s, _ := Generate(Config{Seed: 3, Agents: 3, Kind: SealedAgent})
	if !s.Agents[2].Sealed || s.Agents[1].Sealed || s.Agents[2].ViewOverlap != 0 {
		t.Errorf("sealed world: the last agent should be the sealed one with no overlap: %+v", s.Agents[2].ViewOverlap)
	}
	c, _ := Generate(Config{Seed: 3, Agents: 3, Kind: ChangedWorld})
	if !c.Agents[2].Changed || len(c.ChangedShapes) == 0 {
		t.Error("changed world: the last agent should have seen a changed plan")
	}
	doors := 0
	for _, r := range c.ChangedShapes {
		if r.Kind == ShapeDoorLeaf {
			doors++
		}
	}
	if doors == 0 {
		t.Error("changed world closed no door")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"zero value is valid", Config{}, nil},
		{"negative agents", Config{Agents: -1}, slam.ErrInvalidArgument},
		{"17 agents", Config{Agents: 17}, slam.ErrInvalidArgument},
		{"sealed needs two", Config{Agents: 1, Kind: SealedAgent}, slam.ErrInvalidArgument},
		{"unknown kind", Config{Kind: 9}, slam.ErrInvalidArgument},
		{"negative resolution", Config{Resolution: -0.05}, slam.ErrInvalidArgument},
		{"nan width", Config{WidthM: math.NaN()}, slam.ErrInvalidArgument},
		{"inf height", Config{HeightM: math.Inf(1)}, slam.ErrInvalidArgument},
		{"tiny world", Config{WidthM: 3, HeightM: 3}, slam.ErrInvalidArgument},
		{"huge world", Config{WidthM: 1e6, HeightM: 1e6}, slam.ErrTooLarge},
		{"noise out of range", Config{RangeNoise: 3}, slam.ErrInvalidArgument},
		{"negative noise other than Off", Config{DropoutRate: -0.5}, slam.ErrInvalidArgument},
		{"noise off", Config{RangeNoise: Off, DropoutRate: Off, OdomNoise: Off, OdomRotNoise: Off}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MapMeta(tc.cfg)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("MapMeta(%+v) = %v, want %v", tc.cfg, err, tc.want)
			}
			if tc.want != nil {
				if _, err := Generate(tc.cfg); !errors.Is(err, tc.want) {
					t.Fatalf("Generate(%+v) = %v, want %v", tc.cfg, err, tc.want)
				}
				if _, err := StartAgents(tc.cfg); !errors.Is(err, tc.want) {
					t.Fatalf("StartAgents(%+v) = %v, want %v", tc.cfg, err, tc.want)
				}
			}
		})
	}
}

// StartAgents is Generate without the truth raster: with Generate's truth
// put back, its worlds match the golden digests bit for bit.
func TestStartAgentsIsGenerateWithoutTruth(t *testing.T) {
	t.Parallel()
	for _, g := range goldenWorlds {
		p, err := StartAgents(g.cfg)
		if err != nil {
			t.Fatalf("StartAgents(%+v): %v", g.cfg, err)
		}
		w, err := p.Wait()
		if err != nil {
			t.Fatalf("Wait(%+v): %v", g.cfg, err)
		}
		select {
		case <-p.Done():
		default:
			t.Fatal("Done is open after Wait returned")
		}
		if again, err := p.Wait(); again != w || err != nil {
			t.Fatalf("a second Wait = %p, %v; want the same world", again, err)
		}
		if w.Truth != nil {
			t.Fatal("StartAgents drew the truth raster")
		}
		full, err := Generate(g.cfg)
		if err != nil {
			t.Fatal(err)
		}
		w.Truth = full.Truth
		if got := worldDigest(w); got != g.digest {
			t.Errorf("StartAgents(%+v) with Generate's truth: digest %s, want %s", g.cfg, got, g.digest)
		}
	}
}

// checkSubmapSize refuses exactly the drives whose submap is too large,
// measuring them exactly only when the cheap bound (the odometry's bounds
// padded by the lidar range) is too large.
func TestCheckSubmapSize(t *testing.T) {
	t.Parallel()
	const res = 0.01 // grid.MaxCells is 8192 cells, 81.92 m, a side at 1 cm
	scans := func(n int, r float32) []slam.LaserScan {
		out := make([]slam.LaserScan, n)
		for k := range out {
			s := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: 2 * math.Pi / 8, RangeMin: 0.05, RangeMax: LidarRange,
				Ranges: make([]float32, 8)}
			for b := range s.Ranges {
				s.Ranges[b] = r
			}
			out[k] = s
		}
		return out
	}
	diagonal := func(side float64) []slam.Pose2D { return []slam.Pose2D{{}, {X: side, Y: side}} }
	for _, tc := range []struct {
		name  string
		side  float64 // the drive's extent along each axis, m
		rng   float32 // every beam's range, m
		large bool
	}{
		{"within the cheap bound", 50, 1, false},
		{"past the cheap bound, within the exact one", 70, 1, false},
		{"past both", 70, 7, true},
		{"no returns reach the range bound", 70, float32(math.Inf(1)), true},
		{"past both with short beams", 85, 1, true},
	} {
		err := checkSubmapSize(res, diagonal(tc.side), scans(2, tc.rng))
		if tc.large != errors.Is(err, slam.ErrTooLarge) || !tc.large && err != nil {
			t.Errorf("%s: checkSubmapSize = %v, want too large: %v", tc.name, err, tc.large)
		}
		_, berr := submapMeta(res, diagonal(tc.side), scans(2, tc.rng))
		if (berr != nil) != (err != nil) {
			t.Errorf("%s: checkSubmapSize = %v but the submap's geometry = %v", tc.name, err, berr)
		}
	}
}

func TestOversizedWorldAgainstCapacity(t *testing.T) {
	t.Parallel()
	// 200 x 200 m at 5 cm is 16 Mi cells: a valid grid, but more than a map
	// store with a budget of 4 Mi cells can hold.
	m, err := MapMeta(Config{WidthM: 200, HeightM: 200})
	if err != nil {
		t.Fatal(err)
	}
	if m.Cells() != 16_000_000 {
		t.Fatalf("cells = %d, want 16e6", m.Cells())
	}
	var ce *grid.CapacityError
	if err := grid.CheckCapacity(m, 4<<20); !errors.Is(err, slam.ErrCapacity) || !errors.As(err, &ce) {
		t.Fatalf("CheckCapacity = %v, want a CapacityError", err)
	}
	// Beyond grid.MaxCells nothing is allocated at all.
	if _, err := MapMeta(Config{WidthM: 200, HeightM: 200, Resolution: 0.01}); !errors.Is(err, slam.ErrTooLarge) {
		t.Fatalf("MapMeta(200 m at 1 cm) = %v, want ErrTooLarge", err)
	}
}

func TestParseKind(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{Office, SealedAgent, SymmetricCorridor, ChangedWorld} {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if k, err := ParseKind("Symmetric-Corridor"); err != nil || k != SymmetricCorridor {
		t.Errorf("ParseKind is not lenient about case and dashes: %v, %v", k, err)
	}
	if _, err := ParseKind("moon"); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("ParseKind(moon) = %v", err)
	}
}

// BenchmarkGenerateWorld measures a default 20×15 m office at 5 cm with four
// agents: floor plan, truth raster, placement, 48 simulated scans and four
// submaps. Target: ≤ 50 ms on the 2-core CI machine.
func BenchmarkGenerateWorld(b *testing.B) {
	b.ReportAllocs()
	seed := uint64(0)
	for b.Loop() {
		seed++
		if _, err := Generate(Config{Seed: seed, Agents: 4}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartAgents measures what a scenario mission of the office
// workload (three agents, 20×15 m) waits for before it begins: the drives,
// until StartAgents returns ("driven"), against the whole world of Generate
// ("generate"). The submaps of "driven" are integrated with the timer
// stopped.
//
//	go test -run '^$' -bench StartAgents -benchmem ./internal/slam/world
func BenchmarkStartAgents(b *testing.B) {
	b.Run("driven", func(b *testing.B) {
		b.ReportAllocs()
		seed := uint64(0)
		for b.Loop() {
			seed++
			p, err := StartAgents(Config{Seed: seed, Agents: 3})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if _, err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("generate", func(b *testing.B) {
		b.ReportAllocs()
		seed := uint64(0)
		for b.Loop() {
			seed++
			if _, err := Generate(Config{Seed: seed, Agents: 3}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
