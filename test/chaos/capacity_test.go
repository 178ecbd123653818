//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
)

// checkCapacity wants the capacity counter to equal the cells of the maps
// left in Redis, with one exception the design documents
// (docs/architecture.md, "A failover loses the last acknowledged writes"):
// a master SIGKILLed right after it acknowledged a reservation may be failed
// over to a replica that never had it, and the map that reservation charged
// is then held uncharged until it goes (under-counted; nothing leaks). A
// shortfall is excused only when the run SIGKILLed the master of the
// accounting's slot (accountingKilled) and the shortfall is exactly the
// cells of the maps whose charge is missing from the accounting; those
// missions go to st.chargesLost.
func checkCapacity(ctx context.Context, rdb redis.UniversalClient, plans []plan, st *stats, v *violations, accountingKilled bool) error {
	used, err := rdb.Get(ctx, capacityKey).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("capacity: %w", err)
	}
	st.capacityUsed = used
	// Two round trips in all: every map's cells and saga, then the
	// charges of the maps held.
	pipe := rdb.Pipeline()
	cells := make([]*redis.StringCmd, len(plans))
	owners := make([]*redis.SliceCmd, len(plans))
	for i, p := range plans {
		cells[i] = pipe.HGet(ctx, mapstore.Key(p.id), "cells")
		owners[i] = mapstore.QueueOwner(ctx, pipe, p.id)
	}
	_, _ = pipe.Exec(ctx)
	var (
		held   []mapstore.Charge
		heldIn []int64
	)
	for i, p := range plans {
		c, err := cells[i].Int64()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return fmt.Errorf("cells of %s: %w", p.id, err)
		}
		sagaID, _, err := mapstore.OwnerOf(owners[i])
		if err != nil {
			return fmt.Errorf("map of %s: %w", p.id, err)
		}
		st.capacityHeld += c
		held = append(held, mapstore.Charge{MissionID: p.id, SagaID: sagaID})
		heldIn = append(heldIn, c)
	}
	var (
		uncharged      []string
		unchargedCells int64
	)
	if len(held) > 0 {
		cpipe := rdb.Pipeline()
		chargedCmd := mapstore.QueueCharges(ctx, cpipe, held)
		_, _ = cpipe.Exec(ctx)
		charged, err := chargedCmd.Result()
		if err != nil {
			return fmt.Errorf("charges of the maps held: %w", err)
		}
		for i, c := range held {
			if charged[i] == 0 {
				uncharged = append(uncharged, c.MissionID)
				unchargedCells += heldIn[i]
			}
		}
	}
	switch {
	case st.capacityUsed == st.capacityHeld:
	case accountingKilled && len(uncharged) > 0 && st.capacityUsed+unchargedCells == st.capacityHeld:
		st.chargesLost = uncharged
	default:
		v.add("capacity", "%s = %d cells, but the maps in Redis hold %d (maps without a charge: %v)", capacityKey, st.capacityUsed, st.capacityHeld, uncharged)
	}
	return nil
}

// accountingKilled reports whether one of faults SIGKILLed the master of
// the map accounting's slot: its promoted replica serves that slot now.
func accountingKilled(ctx context.Context, rdb redis.UniversalClient, faults []*redisFault) (bool, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return false, nil
	}
	node, err := cc.MasterForKey(ctx, capacityKey)
	if err != nil {
		return false, fmt.Errorf("master of %s: %w", capacityKey, err)
	}
	for _, f := range faults {
		if f.kind == "SIGKILL master" && f.promoted == node.Options().Addr {
			return true, nil
		}
	}
	return false, nil
}

// TestCheckCapacity: the counter must equal the cells of the maps held; a
// shortfall is excused only as the documented loss — the accounting's
// master SIGKILLed, and exactly the maps without a charge missing.
func TestCheckCapacity(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Universal(t)
	plans := []plan{{id: "cap-charged"}, {id: "cap-lost"}, {id: "cap-none"}}
	for _, m := range []struct {
		id    string
		cells int64
	}{{"cap-charged", 300}, {"cap-lost", 200}} {
		if err := rdb.HSet(ctx, mapstore.Key(m.id), "map_id", "map-"+m.id, "saga", "s-"+m.id, "cells", m.cells).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Only cap-charged's reservation reached the accounting.
	if _, err := mapstore.Reserve(ctx, rdb, mapstore.Charge{MissionID: "cap-charged", SagaID: "s-cap-charged"}, 300, 1_000_000, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		killed bool
		extra  int64 // added to the counter
		lost   []string
		viol   int
	}{
		{name: "the accounting's master killed", killed: true, lost: []string{"cap-lost"}},
		{name: "no master of the accounting killed", viol: 1},
		{name: "a shortfall that is not the uncharged maps", killed: true, extra: -50, viol: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.extra != 0 {
				if err := rdb.IncrBy(ctx, capacityKey, c.extra).Err(); err != nil {
					t.Fatal(err)
				}
				defer rdb.IncrBy(ctx, capacityKey, -c.extra)
			}
			st, v := &stats{}, &violations{}
			if err := checkCapacity(ctx, rdb, plans, st, v, c.killed); err != nil {
				t.Fatal(err)
			}
			if st.capacityHeld != 500 || !slices.Equal(st.chargesLost, c.lost) || v.count() != c.viol {
				t.Errorf("held %d, charges lost %v, violations %v; want 500, %v and %d", st.capacityHeld, st.chargesLost, v.list, c.lost, c.viol)
			}
		})
	}
}
