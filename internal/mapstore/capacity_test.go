package mapstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
)

// Every accounting write is idempotent: a retry after a lost reply, or two
// janitors at once, count a map once.
func TestCapacityAccountingIsIdempotent(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	charge := func(m string, cells uint64) {
		for range 2 { // the second reservation charges nothing more
			if _, err := mapstore.Reserve(ctx, rdb, m, cells, 1<<40, time.Now()); err != nil {
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
		if _, err := mapstore.Retain(ctx, rdb, "a", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(); u != (mapstore.Usage{Held: 130, Retained: 100}) || u.InFlight() != 30 {
		t.Errorf("after retaining a: %+v", u)
	}
	if n, _ := mapstore.Retain(ctx, rdb, "never-charged", time.Now()); n != 0 {
		t.Errorf("retained %d cells of an uncharged map", n)
	}
	for i := range 2 {
		n, err := mapstore.Drop(ctx, rdb, "a")
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
	r, err := mapstore.Reserve(ctx, rdb, "a", 60, 100, at)
	if err != nil || r != (mapstore.Reservation{New: true, Left: 40}) {
		t.Fatalf("first reservation = %+v, %v", r, err)
	}
	if r, err = mapstore.Reserve(ctx, rdb, "a", 60, 100, at); err != nil || r != (mapstore.Reservation{Left: 40}) {
		t.Errorf("repeated reservation = %+v, %v; want nothing charged", r, err)
	}
	if r, err = mapstore.Reserve(ctx, rdb, "b", 50, 100, at); !errors.Is(err, mapstore.ErrFull) || r.Left != 40 {
		t.Errorf("reservation past the budget = %+v, %v; want ErrFull with 40 left", r, err)
	}
	page, err := mapstore.ListCharged(ctx, rdb, 0, 10)
	if err != nil || len(page) != 1 || page[0].MissionID != "a" || !page[0].Reserved.Equal(at) {
		t.Fatalf("charged = %+v, %v; want a, reserved at %v", page, err, at)
	}
	if err := mapstore.Confirm(ctx, rdb, "a"); err != nil {
		t.Fatal(err)
	}
	if page, _ = mapstore.ListCharged(ctx, rdb, 0, 10); len(page) != 1 || !page[0].Reserved.IsZero() {
		t.Errorf("after Confirm: %+v", page)
	}
	if _, err := mapstore.Reserve(ctx, rdb, "b", 40, 100, at); err != nil {
		t.Fatal(err)
	}
	if n, err := mapstore.Drop(ctx, rdb, "b"); err != nil || n != 40 {
		t.Errorf("drop b = %d, %v", n, err)
	}
	if n := rdb.ZCard(ctx, "slammesh:{mapping}:reserved").Val(); n != 0 {
		t.Errorf("%d reserved marks left after Drop", n)
	}
	rdb.Set(ctx, mapstore.CapacityKey, "x", 0)
	if _, err := mapstore.Reserve(ctx, rdb, "c", 1, 100, at); !errors.Is(err, mapstore.ErrCorrupt) {
		t.Errorf("reservation on a corrupt counter: %v, want ErrCorrupt", err)
	}
}
