package match_test

import (
	"context"
	"testing"

	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
)

// realReference loads a real mission (match.RealMission) and returns its
// anchor's submap fused into the mission map at its pose, and the agents.
func realReference(tb testing.TB, name string) (*grid.Grid, []match.Agent) {
	tb.Helper()
	meta, agents := match.RealMission(tb, name)
	ref, err := grid.New(meta)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range agents {
		if a.Anchor {
			if err := fuse.Warp(ref, a.Submap, a.Guess); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return ref, agents
}

// BenchmarkGlobalLocalizeReal localizes one real agent (intel-local-3's
// robot-2: 30 Intel Lab scans of 180 beams) with no initial guess: the whole
// 31×33 m map at every heading, branch and bound over the coarse field,
// refinement, verification. The reference is prepared once outside the
// loop (in a mission it is shared by every agent of a round); its
// branch-and-bound stack is built on the first iteration. Target: ≤ 300 ms.
func BenchmarkGlobalLocalizeReal(b *testing.B) {
	for _, name := range []string{"intel-local-3", "fr079-local-4"} {
		b.Run(name, func(b *testing.B) {
			g, agents := realReference(b, name)
			ref, err := match.NewReference(g)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ref.LocalizeGlobal(ctx, agents[2].Submap, match.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLocalizeAllReal localizes every agent of a real mission from
// its guesses, as the localization service does: the rounds against the
// growing team map, then each agent's refinement against the others.
//
//	go test -run '^$' -bench LocalizeAllReal -benchmem ./internal/slam/match
func BenchmarkLocalizeAllReal(b *testing.B) {
	for _, name := range []string{"intel-local-3", "fr079-local-4"} {
		b.Run(name, func(b *testing.B) {
			g, agents := realReference(b, name)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := match.LocalizeAll(ctx, g.Meta(), agents, match.Options{}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
