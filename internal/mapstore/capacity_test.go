package mapstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
)

// of is the charge of mission m's saga "s".
func of(m string) mapstore.Charge { return mapstore.Charge{MissionID: m, SagaID: "s"} }

// Every accounting write is idempotent: a retry after a lost reply, or two
// janitors at once, count a map once.
func TestCapacityAccountingIsIdempotent(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	charge := func(m string, cells uint64) {
		for range 2 { // the second reservation charges nothing more
			if _, err := mapstore.Reserve(ctx, rdb, of(m), cells, 1<<40, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	usage := func() mapstore.Usage {
		u, err := mapstore.ReadUsage(ctx, rdb)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	charge("a", 100)
	charge("b", 30)
	for range 2 {
		if _, err := mapstore.Retain(ctx, rdb, of("a"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(); u != (mapstore.Usage{Held: 130, Retained: 100}) || u.InFlight() != 30 {
		t.Errorf("after retaining a: %+v", u)
	}
	if in, err := mapstore.ListInFlight(ctx, rdb); err != nil || len(in) != 1 || in[0].Charge != of("b") || in[0].Cells != 30 {
		t.Errorf("in flight after retaining a: %+v, %v; want b's 30 cells", in, err)
	}
	if n, _ := mapstore.Retain(ctx, rdb, of("never-charged"), time.Now()); n != 0 {
		t.Errorf("retained %d cells of an uncharged map", n)
	}
	for i := range 2 {
		n, err := mapstore.Drop(ctx, rdb, of("a"))
		if err != nil || n != map[int]int64{0: 100, 1: 0}[i] {
			t.Errorf("drop %d of a = %d, %v", i, n, err)
		}
	}
	if u := usage(); u != (mapstore.Usage{Held: 30}) {
		t.Errorf("after dropping a: %+v", u)
	}
	// Corrupt counters are detected, and recounted from the maps held.
	rdb.Set(ctx, mapstore.CapacityKey, -70, 0)
	if _, err := mapstore.ReadUsage(ctx, rdb); !errors.Is(err, mapstore.ErrCorrupt) {
		t.Errorf("negative counter read as %v", err)
	}
	for range 2 {
		u, err := mapstore.Recount(ctx, rdb)
		if err != nil || u != (mapstore.Usage{Held: 30}) {
			t.Errorf("recount = %+v, %v", u, err)
		}
	}
	if oldest, _ := mapstore.OldestRetained(ctx, rdb, 0, 10); len(oldest) != 0 {
		t.Errorf("retained after drop: %v", oldest)
	}
}

// A reservation checks the in-flight budget and charges a mission once;
// its reserved mark stays until Confirm or Drop.
func TestReserve(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	at := time.UnixMilli(1_700_000_000_000)
	r, err := mapstore.Reserve(ctx, rdb, of("a"), 60, 100, at)
	if err != nil || r != (mapstore.Reservation{New: true, Left: 40}) {
		t.Fatalf("first reservation = %+v, %v", r, err)
	}
	if r, err = mapstore.Reserve(ctx, rdb, of("a"), 60, 100, at); err != nil || r != (mapstore.Reservation{Left: 40}) {
		t.Errorf("repeated reservation = %+v, %v; want nothing charged", r, err)
	}
	if r, err = mapstore.Reserve(ctx, rdb, of("b"), 50, 100, at); !errors.Is(err, mapstore.ErrFull) || r.Left != 40 {
		t.Errorf("reservation past the budget = %+v, %v; want ErrFull with 40 left", r, err)
	}
	page, err := mapstore.ListCharged(ctx, rdb, 0, 10)
	if err != nil || len(page) != 1 || page[0].Charge != of("a") || !page[0].Reserved.Equal(at) {
		t.Fatalf("charged = %+v, %v; want a, reserved at %v", page, err, at)
	}
	if err := mapstore.Confirm(ctx, rdb, of("a")); err != nil {
		t.Fatal(err)
	}
	if page, _ = mapstore.ListCharged(ctx, rdb, 0, 10); len(page) != 1 || !page[0].Reserved.IsZero() {
		t.Errorf("after Confirm: %+v", page)
	}
	if _, err := mapstore.Reserve(ctx, rdb, of("b"), 40, 100, at); err != nil {
		t.Fatal(err)
	}
	if n, err := mapstore.Drop(ctx, rdb, of("b")); err != nil || n != 40 {
		t.Errorf("drop b = %d, %v", n, err)
	}
	if n := rdb.ZCard(ctx, "slammesh:{mapping}:reserved").Val(); n != 0 {
		t.Errorf("%d reserved marks left after Drop", n)
	}
	rdb.Set(ctx, mapstore.CapacityKey, "x", 0)
	if _, err := mapstore.Reserve(ctx, rdb, of("c"), 1, 100, at); !errors.Is(err, mapstore.ErrCorrupt) {
		t.Errorf("reservation on a corrupt counter: %v, want ErrCorrupt", err)
	}
}

// A charge is the map of one saga of a mission: a mission deleted and
// started again under its id is another charge, which writes about the
// first saga's map (its drop, its retention, its eviction) leave alone.
func TestChargesAreSagas(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	first := mapstore.Charge{MissionID: "m", SagaID: "first"}
	second := mapstore.Charge{MissionID: "m", SagaID: "second"}
	for _, c := range []mapstore.Charge{first, second} {
		if r, err := mapstore.Reserve(ctx, rdb, c, 30, 100, time.Now()); err != nil || !r.New {
			t.Fatalf("reserve %s = %+v, %v; want a new charge", c, r, err)
		}
	}
	if n, err := mapstore.Retain(ctx, rdb, first, time.Now()); err != nil || n != 30 {
		t.Fatalf("retain the first saga's map = %d, %v", n, err)
	}
	if n, err := mapstore.Drop(ctx, rdb, first); err != nil || n != 30 {
		t.Fatalf("drop the first saga's map = %d, %v", n, err)
	}
	page, err := mapstore.ListCharged(ctx, rdb, 0, 10)
	if err != nil || len(page) != 1 || page[0].Charge != second || !page[0].Retained.IsZero() {
		t.Fatalf("charged after the first saga's drop = %+v, %v; want the second saga's, in flight", page, err)
	}
	if u, _ := mapstore.ReadUsage(ctx, rdb); u != (mapstore.Usage{Held: 30}) {
		t.Errorf("usage %+v, want 30 held, none retained", u)
	}

	// A charge made before charges named their saga is any saga's.
	rdb.ZAdd(ctx, "slammesh:{mapping}:maps", redis.Z{Member: "old", Score: 5})
	page, _ = mapstore.ListCharged(ctx, rdb, 0, 10)
	if len(page) != 2 || page[0].Charge != (mapstore.Charge{MissionID: "old"}) || !page[0].Owns("any") {
		t.Errorf("a charge without its saga listed as %+v", page)
	}
	if !second.Owns("") || second.Owns("first") {
		t.Error("Owns: a map without its saga is any charge's; another saga's is not")
	}

	// Eviction deletes the map only if it is still the charge's saga's.
	create := func(saga string) {
		blank, err := mapstore.NewBlank(small(t))
		if err != nil {
			t.Fatal(err)
		}
		write(t, rdb, func(ctx context.Context, p redis.Pipeliner) { mapstore.Create(ctx, p, "m", saga, "map-"+saga, blank) })
	}
	evict := func(c mapstore.Charge) int64 {
		t.Helper()
		pipe := rdb.Pipeline()
		cmd := mapstore.QueueEvict(ctx, pipe, c)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return cmd.Val().(int64)
	}
	create("second")
	if evict(first) != 0 || rdb.Exists(ctx, mapstore.Key("m")).Val() != 1 {
		t.Error("evicting the first saga's map deleted the second saga's")
	}
	if evict(second) != 1 || rdb.Exists(ctx, mapstore.Key("m")).Val() != 0 {
		t.Error("evicting the second saga's map left it")
	}
	create("second")
	if evict(mapstore.Charge{MissionID: "m"}) != 1 {
		t.Error("evicting a charge without its saga left the mission's map")
	}
}
