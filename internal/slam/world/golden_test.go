package world

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// worldDigest hashes every bit of a world that leaves the generator: the
// truth and every submap (log-odds bits and placement), every scan range,
// every pose and each agent's view overlap.
func worldDigest(w *World) string {
	h := fnv.New64a()
	put := func(v ...float64) {
		for _, f := range v {
			_ = binary.Write(h, binary.LittleEndian, math.Float64bits(f))
		}
	}
	pose := func(p slam.Pose2D) { put(p.X, p.Y, p.Theta) }
	grd := func(g *grid.Grid) {
		m := g.Meta()
		put(m.Resolution, float64(m.Width), float64(m.Height), m.Origin.X, m.Origin.Y)
		for _, l := range g.LogOdds() {
			_ = binary.Write(h, binary.LittleEndian, math.Float32bits(l))
		}
	}
	grd(w.Truth)
	for _, a := range w.Agents {
		grd(a.Submap)
		pose(a.Truth)
		pose(a.InitialGuess)
		put(a.ViewOverlap)
		for k := range a.Scans {
			pose(a.Path[k])
			pose(a.Odometry[k])
			for _, r := range a.Scans[k].Ranges {
				_ = binary.Write(h, binary.LittleEndian, math.Float32bits(r))
			}
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// goldenWorlds are digests of worlds made by the generator before its
// speed-ups (commit 9f3237c): the speed-ups must not change a single bit.
// A deliberate change of the generator updates them (the test prints the
// new digest).
var goldenWorlds = []struct {
	cfg    Config
	digest string
}{
	{Config{Seed: 1, Agents: 1, WidthM: 10, HeightM: 8}, "4164ba7f5c528cb3"},
	{Config{Seed: 42, Agents: 3}, "44f682340e1a1946"},
	{Config{Seed: 7, Agents: 4, Kind: SealedAgent}, "35458b50e3a410f9"},
	{Config{Seed: 7, Agents: 3, Kind: SymmetricCorridor}, "84c46810be427b3a"},
	{Config{Seed: 5, Agents: 3, Kind: ChangedWorld}, "d61aa0f3a98f1e32"},
}

func TestGenerateMatchesGoldenDigests(t *testing.T) {
	t.Parallel()
	for _, tt := range goldenWorlds {
		t.Run(fmt.Sprintf("%s/seed%d/agents%d", tt.cfg.Kind, tt.cfg.Seed, tt.cfg.Agents), func(t *testing.T) {
			t.Parallel()
			w, err := Generate(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := worldDigest(w); got != tt.digest {
				t.Errorf("world digest %s, want %s", got, tt.digest)
			}
		})
	}
}
