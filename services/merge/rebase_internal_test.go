package merge

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
)

// TestStaleBaseIsNotCommitted checks the guard MergeMaps relies on to fuse
// again: a fusion computed on a version that is no longer current commits
// nothing, neither the version nor the barrier mark.
func TestStaleBaseIsNotCommitted(t *testing.T) {
	t.Parallel()
	ctx := steptest.Context(t)
	rdb := redistest.Start(t).Universal(t)
	b := barrier.New(rdb)
	s, err := NewServer(Config{}, rdb, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	const m, mapID = "m-stale", "map-stale"
	w, meta := steptest.SeedWorld(t, rdb, m, mapID, world.Config{Seed: 3, Agents: 2})
	base, err := loadCurrent(ctx, rdb, m, mapID)
	if err != nil {
		t.Fatal(err)
	}
	agents := slamproto.WorldAgents(w, slamproto.Submaps)
	truth := make(map[string]slam.Pose2D, len(w.Agents))
	for i, a := range w.Agents {
		truth[slamproto.WorldAgentID(i)] = a.Truth
	}
	in, ids, err := inputs(agents, truth, meta.Resolution)
	if err != nil {
		t.Fatal(err)
	}

	// Another writer moves the map on after the base was read.
	if err := rdb.HSet(ctx, mapstore.Key(m), "v2", bytes.Repeat([]byte{0xff}, int(meta.Cells())), "current", 2).Err(); err != nil {
		t.Fatal(err)
	}
	id := barrier.ID{Key: m, SagaID: "saga-stale", Step: Step}
	if _, err := s.mergeOnto(ctx, id, mapID, base, in, ids, s.fuseOpts); !errors.Is(err, errMapChanged) {
		t.Fatalf("mergeOnto on a stale base: err = %v, want errMapChanged", err)
	}
	h, err := rdb.HGetAll(ctx, mapstore.Key(m)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if h["current"] != "2" || h["v3"] != "" {
		t.Errorf("stale merge committed: current %q", h["current"])
	}
	if n, err := rdb.Exists(ctx, barrier.Key(m, Step)).Result(); err != nil || n != 0 {
		t.Errorf("stale merge left a barrier mark: %d, %v", n, err)
	}

	// On the fresh base the same inputs commit as version 3.
	if base, err = loadCurrent(ctx, rdb, m, mapID); err != nil {
		t.Fatal(err)
	}
	resp, err := s.mergeOnto(ctx, id, mapID, base, in, ids, s.fuseOpts)
	if err != nil || resp.GetVersion() != 3 {
		t.Fatalf("mergeOnto on the fresh base = %v, %v; want version 3", resp, err)
	}
}
