package mapstore_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// small is a 10x5 grid: small enough to compare cell by cell.
func small(t *testing.T) grid.Meta {
	t.Helper()
	meta, err := grid.MetaForBounds(-1, 2, 1, 0.5, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Cells() != 50 {
		t.Fatalf("meta %+v has %d cells, want 50", meta, meta.Cells())
	}
	return meta
}

// someCells returns cells of every kind (unknown, free, occupied) for meta.
func someCells(meta grid.Meta) []byte {
	cells := make([]int8, meta.Cells())
	for i := range cells {
		cells[i] = int8(i%102) - 1
	}
	return slamproto.Int8Bytes(cells)
}

// write commits the writes fn queues, as a barrier transaction does.
func write(t *testing.T, rdb redis.UniversalClient, fn func(ctx context.Context, p redis.Pipeliner)) {
	t.Helper()
	ctx := t.Context()
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		fn(ctx, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// create stores a blank map mapID of meta for mission.
func create(t *testing.T, rdb redis.UniversalClient, mission, mapID string, meta grid.Meta) {
	t.Helper()
	blank, err := mapstore.NewBlank(meta)
	if err != nil {
		t.Fatal(err)
	}
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) { mapstore.Create(ctx, p, mission, "saga-1", mapID, blank) })
}

// TestLayout pins the hash of docs/architecture.md through every write.
func TestLayout(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	meta := small(t)
	const m = "m-layout"
	key := "slammesh:{" + m + "}:map"
	if got := mapstore.Key(m); got != key {
		t.Fatalf("Key = %q, want %q", got, key)
	}
	hash := func() map[string]string {
		t.Helper()
		h, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	create(t, rdb, m, "map-1", meta)
	created := hash()
	if got := slices.Sorted(maps.Keys(created)); !slices.Equal(got, []string{"cells", "current", "map_id", "meta", "saga", "v1"}) {
		t.Fatalf("fields %v", got)
	}
	pm := &typesv1.GridMeta{}
	if err := proto.Unmarshal([]byte(created["meta"]), pm); err != nil || !proto.Equal(pm, slamproto.MetaToProto(meta)) {
		t.Errorf("meta = %v (%v), want %v", pm, err, slamproto.MetaToProto(meta))
	}
	if created["map_id"] != "map-1" || created["saga"] != "saga-1" || created["cells"] != "50" || created["current"] != "1" || created["v1"] != "" {
		t.Errorf("created %q", created)
	}

	v2 := someCells(meta)
	layer, err := mapstore.EncodeContributors([]string{"agent-0"}, bytes.Repeat([]byte{1}, 50))
	if err != nil {
		t.Fatal(err)
	}
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) {
		mapstore.AddVersion(ctx, p, m, 2, v2)
		mapstore.AddContributors(ctx, p, m, 2, layer)
	})
	if h := hash(); h["current"] != "2" || h["v2"] != string(v2) || h["v1"] != created["v1"] || h["agents:v2"] != string(layer) {
		t.Errorf("after AddVersion and AddContributors: current %q, v2 %d bytes, agents:v2 %d bytes", h["current"], len(h["v2"]), len(h["agents:v2"]))
	}
	got, err := mapstore.LoadContributors(ctx, rdb, m, 2)
	if err != nil || !slices.Equal(got.GetAgentIds(), []string{"agent-0"}) || !bytes.Equal(got.GetCells(), bytes.Repeat([]byte{1}, 50)) {
		t.Errorf("LoadContributors v2 = %v, %v", got, err)
	}
	if got, err := mapstore.LoadContributors(ctx, rdb, m, 1); got != nil || err != nil {
		t.Errorf("LoadContributors v1 = %v, %v; want none", got, err)
	}
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) {
		mapstore.DeleteVersion(ctx, p, m, 2)
		mapstore.SetCurrent(ctx, p, m, 1)
	})
	if h := hash(); !maps.Equal(h, created) {
		t.Errorf("after DeleteVersion and SetCurrent: fields %v, want the map as created", slices.Sorted(maps.Keys(h)))
	}
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) { mapstore.Delete(ctx, p, m) })
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Errorf("map exists after Delete: %d, %v", n, err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	meta := small(t)
	const m = "m-load"
	create(t, rdb, m, "map-1", meta)
	v2 := someCells(meta)
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) { mapstore.AddVersion(ctx, p, m, 2, v2) })

	tests := []struct {
		name    string
		version uint32
		want    uint32
		cells   []byte
	}{
		{"current", 0, 2, v2},
		{"version 1", 1, 1, bytes.Repeat([]byte{0xff}, 50)},
		{"version 2", 2, 2, v2},
		{"missing version", 7, 7, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := mapstore.Load(t.Context(), rdb, m, tt.version)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != "map-1" || got.Current != 2 || got.Version != tt.want ||
				!proto.Equal(got.Meta, slamproto.MetaToProto(meta)) || !bytes.Equal(got.Cells, tt.cells) || (got.Cells == nil) != (tt.cells == nil) {
				t.Fatalf("Load(%d) = map %s v%d/%d, %d cells", tt.version, got.ID, got.Version, got.Current, len(got.Cells))
			}
			g, err := got.Grid()
			if tt.cells == nil {
				if err == nil {
					t.Errorf("Grid of a missing version = %v, want an error", g)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.Meta() != meta || !bytes.Equal(slamproto.Int8Bytes(g.ToInt8()), tt.cells) {
				t.Errorf("Grid = %+v, cells differ from the stored ones", g.Meta())
			}
		})
	}

	t.Run("no map", func(t *testing.T) {
		t.Parallel()
		if got, err := mapstore.Load(t.Context(), rdb, "m-none", 0); !errors.Is(err, mapstore.ErrNoMap) {
			t.Errorf("Load = %v, %v; want ErrNoMap", got, err)
		}
	})
}

// A version stored empty (Create's version 1) loads as every cell unknown,
// as the version 1 of maps created before it was stored empty does; a blank
// version of a map whose meta does not decode fails the load.
func TestLoadBlankVersions(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	meta := small(t)
	unknown := bytes.Repeat([]byte{0xff}, 50)
	create(t, rdb, "m-blank", "map-1", meta)
	create(t, rdb, "m-old", "map-2", meta)
	if err := rdb.HSet(ctx, mapstore.Key("m-old"), "v1", unknown).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, mapstore.Key("m-bad"), "map_id", "map-3", "meta", "\xff", "current", 1, "v1", "").Err(); err != nil {
		t.Fatal(err)
	}
	for _, mission := range []string{"m-blank", "m-old"} {
		got, err := mapstore.Load(ctx, rdb, mission, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Cells, unknown) {
			t.Errorf("%s: cells %x, want every one unknown", mission, got.Cells)
		}
		g, err := got.Grid()
		if err != nil {
			t.Fatal(err)
		}
		if g.Meta() != meta || !bytes.Equal(slamproto.Int8Bytes(g.ToInt8()), unknown) {
			t.Errorf("%s: Grid %+v is not all unknown", mission, g.Meta())
		}
	}
	if got, err := mapstore.Load(ctx, rdb, "m-bad", 1); err == nil {
		t.Errorf("Load of a blank version with a corrupt meta = %+v, want an error", got)
	}
}

func TestReadHead(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	const m = "m-head"
	head := func() string {
		t.Helper()
		id, cur, err := mapstore.ReadHead(ctx, rdb, m)
		if err != nil {
			t.Fatal(err)
		}
		return id + "@" + strconv.FormatUint(uint64(cur), 10)
	}
	if got := head(); got != "@0" {
		t.Errorf("head without a map = %s, want none", got)
	}
	meta := small(t)
	create(t, rdb, m, "map-1", meta)
	if got := head(); got != "map-1@1" {
		t.Errorf("head = %s, want map-1@1", got)
	}
	write(t, rdb, func(ctx context.Context, p redis.Pipeliner) { mapstore.AddVersion(ctx, p, m, 2, someCells(meta)) })
	if got := head(); got != "map-1@2" {
		t.Errorf("head = %s, want map-1@2", got)
	}

	// A map hash whose current version is unreadable fails the read rather
	// than reporting a version 0 that no map has.
	for name, fields := range map[string][]any{
		"current not a number": {"map_id", "map-x", "current", "two"},
		"current missing":      {"map_id", "map-x"},
		"current out of range": {"map_id", "map-x", "current", "4294967296"},
	} {
		t.Run(name, func(t *testing.T) {
			mission := "m-corrupt-" + strings.ReplaceAll(name, " ", "-")
			if err := rdb.HSet(ctx, mapstore.Key(mission), fields...).Err(); err != nil {
				t.Fatal(err)
			}
			if id, cur, err := mapstore.ReadHead(ctx, rdb, mission); err == nil {
				t.Errorf("ReadHead = %s@%d, want an error", id, cur)
			}
		})
	}
}

func TestReadMeta(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	meta := small(t)
	create(t, rdb, "m-meta", "map-1", meta)
	// A map whose meta is not a GridMeta: only a read that decodes it fails.
	if err := rdb.HSet(t.Context(), mapstore.Key("m-bad"), "map_id", "map-bad", "meta", "\xff").Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, mission, mapID string
		noMap, fails         bool
	}{
		{name: "the map", mission: "m-meta", mapID: "map-1"},
		{name: "another map", mission: "m-meta", mapID: "map-2", noMap: true},
		{name: "no map", mission: "m-none", mapID: "map-1", noMap: true},
		{name: "another map with a corrupt meta", mission: "m-bad", mapID: "map-1", noMap: true},
		{name: "corrupt meta", mission: "m-bad", mapID: "map-bad", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := mapstore.ReadMeta(t.Context(), rdb, tt.mission, tt.mapID)
			switch {
			case tt.noMap:
				if !errors.Is(err, mapstore.ErrNoMap) {
					t.Errorf("ReadMeta = %+v, %v; want ErrNoMap", got, err)
				}
			case tt.fails:
				if err == nil || errors.Is(err, mapstore.ErrNoMap) {
					t.Errorf("ReadMeta = %+v, %v; want a decoding error", got, err)
				}
			case err != nil || got != meta:
				t.Errorf("ReadMeta = %+v, %v; want %+v", got, err, meta)
			}
		})
	}
}
