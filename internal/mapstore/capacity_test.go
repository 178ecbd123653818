package mapstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
)

// Every accounting write is idempotent: a retry after a lost reply, or two
// janitors at once, count a map once.
func TestCapacityAccountingIsIdempotent(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := t.Context()
	charge := func(m string, cells uint64) {
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			mapstore.Charge(ctx, p, m, cells)
			return nil
		}); err != nil {
			t.Fatal(err)
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
