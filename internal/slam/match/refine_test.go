package match

import (
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// BenchmarkFineSearch is the fine search of one office agent against the
// anchor's submap placed at its true pose (BenchmarkLocalizeAgent's case),
// started a few cells and a rotation step off the truth.
//
//	go test -run '^$' -bench FineSearch -benchmem ./internal/slam/match
func BenchmarkFineSearch(b *testing.B) {
	w, err := world.Generate(world.Config{Seed: 1, Agents: 2})
	if err != nil {
		b.Fatal(err)
	}
	g, _ := grid.New(w.Truth.Meta())
	if err := fuse.Warp(g, w.Agents[0].Submap, w.Agents[0].Truth); err != nil {
		b.Fatal(err)
	}
	ref, err := newReference(g, false)
	if err != nil {
		b.Fatal(err)
	}
	a := w.Agents[1]
	ps := extractPoints(a.Submap)
	start := slam.Pose2D{X: a.Truth.X + 0.1, Y: a.Truth.Y - 0.1, Theta: a.Truth.Theta + 0.02}
	b.ReportAllocs()
	for b.Loop() {
		ref.fineSearch(ps.fine, start, 0.02, ps.pivot)
	}
}
