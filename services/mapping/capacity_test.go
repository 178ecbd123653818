package mapping_test

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// setState writes the saga state of mission m, as the orchestrator would.
func setState(t *testing.T, rdb redis.UniversalClient, m string, st saga.State) {
	t.Helper()
	if err := rdb.HSet(steptest.Context(t), saga.RecordKey(m), "state", string(st)).Err(); err != nil {
		t.Fatal(err)
	}
}

func mapExists(t *testing.T, rdb redis.UniversalClient, m string) bool {
	t.Helper()
	return rdb.Exists(steptest.Context(t), mapstore.Key(m)).Val() == 1
}

// cellsHeld sums the cells of the maps in Redis (every map key, on every
// master of a cluster).
func cellsHeld(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	ctx := steptest.Context(t)
	var sum int64
	for _, k := range redistest.Keys(t, rdb, "slammesh:{*}:map") {
		n, err := rdb.HGet(ctx, k, "cells").Int64()
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}

// allocateFinished allocates the maps of missions <prefix>-00 … n-1, each
// running while it allocates and completed after: maps that a janitor pass
// retains.
func allocateFinished(t *testing.T, e *env, prefix string, n int) {
	t.Helper()
	for i := range n {
		m := fmt.Sprintf("%s-%02d", prefix, i)
		setState(t, e.Redis, m, saga.Running)
		if err := allocate(t, e, m); err != nil {
			t.Fatalf("mission %s: %v", m, err)
		}
		setState(t, e.Redis, m, saga.Completed)
	}
}

func allocate(t *testing.T, e *env, m string) error {
	t.Helper()
	_, err := e.client.AllocateMap(steptest.Context(t), &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: office()})
	return err
}

// Completed missions' maps leave the in-flight budget for the retained one,
// whose oldest maps are evicted: missions keep starting far past what the
// in-flight budget alone holds, and a running mission's map is never
// evicted.
func TestFinishedMissionsDoNotBlockNewOnes(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{CapacityCells: 2 * officeCells, RetainedCells: 2 * officeCells})
	ctx := steptest.Context(t)
	setState(t, e.Redis, "running", saga.Running)
	if err := allocate(t, e, "running"); err != nil {
		t.Fatal(err)
	}
	const n = 12
	allocateFinished(t, e, "m", n)
	if !mapExists(t, e.Redis, "running") {
		t.Error("the running mission's map was evicted")
	}
	if !mapExists(t, e.Redis, fmt.Sprintf("m-%02d", n-2)) || mapExists(t, e.Redis, "m-00") {
		t.Error("eviction is not oldest first")
	}
	u, err := mapstore.ReadUsage(ctx, e.Redis)
	if err != nil {
		t.Fatal(err)
	}
	if u.InFlight() > 2*officeCells || u.Retained > 2*officeCells {
		t.Errorf("usage %+v over the budgets", u)
	}
	if held := cellsHeld(t, e.Redis); held != u.Held {
		t.Errorf("counter says %d cells held, the maps in Redis hold %d", u.Held, held)
	}
}

// A map that left Redis with its mission (retention, DeleteMission) gives
// its cells back at the next janitor pass — here the one a full budget
// triggers.
func TestVanishedMapIsUncharged(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{CapacityCells: officeCells})
	setState(t, e.Redis, "a", saga.Running)
	setState(t, e.Redis, "b", saga.Running)
	if err := allocate(t, e, "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.Redis.Del(steptest.Context(t), mapstore.Key("a"), saga.RecordKey("a")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := allocate(t, e, "b"); err != nil {
		t.Fatalf("allocation after the first map expired: %v", err)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity = %d, want %d", got, officeCells)
	}
}

// A corrupt counter (negative, or not a number) is recounted from the maps
// held, never answered INTERNAL.
func TestCorruptCounterIsRepaired(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"-6120000", "garbage"} {
		t.Run(bad, func(t *testing.T) {
			t.Parallel()
			e := start(t, mapping.Config{CapacityCells: 3 * officeCells})
			ctx := steptest.Context(t)
			setState(t, e.Redis, "a", saga.Running)
			setState(t, e.Redis, "b", saga.Running)
			if err := allocate(t, e, "a"); err != nil {
				t.Fatal(err)
			}
			if err := e.Redis.Set(ctx, mapstore.CapacityKey, bad, 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := allocate(t, e, "b"); err != nil {
				t.Fatalf("allocation on a corrupt counter: %v", err)
			}
			if got := capacityUsed(t, e.Redis); got != 2*officeCells {
				t.Errorf("capacity after repair = %d, want %d", got, 2*officeCells)
			}
			// Repaired once, the budget holds again.
			setState(t, e.Redis, "c", saga.Running)
			setState(t, e.Redis, "d", saga.Running)
			if err := allocate(t, e, "c"); err != nil {
				t.Fatal(err)
			}
			steptest.WantStatus(t, allocate(t, e, "d"), codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted)
		})
	}
}

// Retained maps whose missions are no longer completed (a teardown that
// failed left them FAILED) cannot be evicted; however many of them sit at
// the old end of the retained set, eviction must look past them to a
// completed mission's map.
func TestEvictionLooksPastUnevictableMaps(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{CapacityCells: 2 * officeCells, RetainedCells: officeCells})
	ctx := steptest.Context(t)
	const failed = 20 // more than one page of the retained set
	base := time.Now().Add(-time.Hour)
	for i := range failed + 1 {
		m := fmt.Sprintf("r-%02d", i)
		setState(t, e.Redis, m, saga.Running)
		if err := allocate(t, e, m); err != nil {
			t.Fatalf("mission %s: %v", m, err)
		}
		if _, err := mapstore.Retain(ctx, e.Redis, chargeOf(e, m), base.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		st := saga.Failed
		if i == failed {
			st = saga.Completed
		}
		setState(t, e.Redis, m, st)
	}
	// A full in-flight budget makes the next allocation run a janitor pass.
	for _, m := range []string{"new-0", "new-1", "new-2"} {
		setState(t, e.Redis, m, saga.Running)
		_ = allocate(t, e, m)
	}
	if mapExists(t, e.Redis, fmt.Sprintf("r-%02d", failed)) {
		t.Error("the completed mission's retained map was not evicted behind the failed missions' maps")
	}
	if !mapExists(t, e.Redis, "r-00") {
		t.Error("a failed mission's map was evicted")
	}
}

// A capacity reservation whose map never appeared (its allocation died
// between the reservation and the barrier's commit) is an allocation in
// progress within the grace period, and is dropped by the janitor after it.
func TestReservationWithoutMapIsDroppedAfterGrace(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		grace   time.Duration
		granted bool
	}{
		{"within the grace period", time.Hour, false},
		{"after the grace period", time.Millisecond, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, mapping.Config{CapacityCells: officeCells, ReservationGrace: tt.grace})
			ctx := steptest.Context(t)
			ghost := mapstore.Charge{MissionID: "ghost", SagaID: "saga-ghost"}
			if _, err := mapstore.Reserve(ctx, e.Redis, ghost, officeCells, officeCells, time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			setState(t, e.Redis, "b", saga.Running)
			err := allocate(t, e, "b")
			if tt.granted {
				if err != nil {
					t.Fatalf("allocation after the grace period: %v", err)
				}
			} else {
				steptest.WantStatus(t, err, codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted)
			}
			if got := capacityUsed(t, e.Redis); got != officeCells {
				t.Errorf("capacity = %d, want %d", got, officeCells)
			}
		})
	}
}

// startOwned starts the mapping service of cfg with a barrier that checks
// the saga record, as the binaries' does (cmd/slammesh).
func startOwned(t *testing.T, cfg mapping.Config) *env {
	t.Helper()
	svc := service(cfg)
	svc.New = func(rdb redis.UniversalClient, _ *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
		return mapping.NewServer(cfg, rdb, barrier.New(rdb, barrier.WithOwner(saga.RecordKey)), log), nil
	}
	se := steptest.Start(t, svc)
	return &env{Env: se, client: mappingv1.NewMappingServiceClient(se.Conn)}
}

// A young reservation without its map is an allocation in progress only
// while its mission's saga record exists, when the barrier checks the
// record as the binaries' does: a mission deleted right after its
// allocation reserved (DeleteMission removes its record, map and marks)
// must not hold the budget for the grace period.
func TestReservationOfADeletedMissionIsDroppedAtOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		record  bool // the reserving mission's saga record still exists
		granted bool
	}{
		{"record kept: an allocation in progress", true, false},
		{"record deleted", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startOwned(t, mapping.Config{CapacityCells: officeCells, ReservationGrace: time.Hour})
			ctx := steptest.Context(t)
			if tt.record {
				setState(t, e.Redis, "first", saga.Running)
			}
			if _, err := mapstore.Reserve(ctx, e.Redis, chargeOf(e, "first"), officeCells, officeCells, time.Now()); err != nil {
				t.Fatal(err)
			}
			setState(t, e.Redis, "next", saga.Running)
			err := allocate(t, e, "next")
			if tt.granted {
				if err != nil {
					t.Fatalf("allocation after the reserving mission was deleted: %v", err)
				}
			} else {
				steptest.WantStatus(t, err, codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted)
			}
			if got := capacityUsed(t, e.Redis); got != officeCells {
				t.Errorf("capacity = %d, want %d", got, officeCells)
			}
		})
	}
}

// An allocation the barrier refuses (here: the step belongs to another saga
// of the mission) drops the charge its reservation made for a map that will
// not be created.
func TestRefusedAllocationLeavesNoCharge(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-refused"
	if err := allocate(t, e, m); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: e.Saga(m)}); err != nil {
		t.Fatal(err)
	}
	other := e.Saga(m)
	other.SagaId = "another-saga"
	_, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: other, Spec: office()})
	steptest.WantStatus(t, err, codes.FailedPrecondition, rpcerr.ReasonSagaMismatch)
	if got := capacityUsed(t, e.Redis); got != 0 {
		t.Errorf("capacity after the refused allocation = %d, want 0", got)
	}
}

// A mission deleted (DeleteMission drops its record, map and marks, not its
// charge) and started again under the same id runs another saga, whose map
// is charged apart: the janitor drops the deleted saga's charge, whose map
// is gone, and keeps the new one's. A charge by mission id alone made the
// new allocation reuse the old charge, which a janitor pass that had read
// it as gone could then drop under the new map.
func TestJanitorDropsOnlyTheDeletedSagasCharge(t *testing.T) {
	t.Parallel()
	e := startOwned(t, mapping.Config{CapacityCells: 2 * officeCells, ReservationGrace: time.Hour})
	ctx := steptest.Context(t)
	const m = "m-again"
	setState(t, e.Redis, m, saga.Running)
	if err := allocate(t, e, m); err != nil {
		t.Fatal(err)
	}
	if err := e.Redis.Del(ctx, saga.RecordKey(m), mapstore.Key(m), barrier.Key(m, mapping.Step)).Err(); err != nil {
		t.Fatal(err)
	}
	again := e.Saga(m)
	again.SagaId = "saga-again"
	if err := e.Redis.HSet(ctx, saga.RecordKey(m), "state", string(saga.Running), "saga_id", again.SagaId).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: again, Spec: office()}); err != nil {
		t.Fatalf("allocation of the mission started again: %v", err)
	}
	if got := capacityUsed(t, e.Redis); got != 2*officeCells {
		t.Errorf("capacity = %d cells, want %d: the deleted saga's charge and the new one's", got, 2*officeCells)
	}
	// The budget is full: this allocation runs a janitor pass first.
	setState(t, e.Redis, "next", saga.Running)
	if err := allocate(t, e, "next"); err != nil {
		t.Fatalf("allocation after the deleted saga's charge was due to go: %v", err)
	}
	page, err := mapstore.ListCharged(ctx, e.Redis, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var charged []mapstore.Charge
	for _, c := range page {
		charged = append(charged, c.Charge)
	}
	want := []mapstore.Charge{{MissionID: m, SagaID: again.SagaId}, chargeOf(e, "next")}
	if !slices.Equal(charged, want) {
		t.Errorf("charged %v, want %v", charged, want)
	}
	if !mapExists(t, e.Redis, m) {
		t.Error("the new saga's map is gone")
	}
}

// A late allocation of a deleted saga, arriving after its mission was
// started again under the same id, is refused before it claims the step:
// the new saga allocates its map as if the late call had never come.
func TestLateAllocationOfADeletedSagaIsRefused(t *testing.T) {
	t.Parallel()
	e := startOwned(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-late"
	again := e.Saga(m)
	again.SagaId = "saga-again"
	if err := e.Redis.HSet(ctx, saga.RecordKey(m), "state", string(saga.Running), "saga_id", again.SagaId).Err(); err != nil {
		t.Fatal(err)
	}
	steptest.WantStatus(t, allocate(t, e, m), codes.FailedPrecondition, rpcerr.ReasonSagaMismatch)
	if mapExists(t, e.Redis, m) || e.Redis.Exists(ctx, barrier.Key(m, mapping.Step)).Val() != 0 {
		t.Fatal("the late allocation wrote the map or the step's barrier")
	}
	if got := capacityUsed(t, e.Redis); got != 0 {
		t.Errorf("capacity after the refused allocation = %d, want 0", got)
	}
	if _, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: again, Spec: office()}); err != nil {
		t.Fatalf("allocation of the saga that owns the mission: %v", err)
	}
}

// An allocation that the barrier would refuse says so, also when the
// budget has no room for its map: the refusal, not what the budget held.
func TestRefusedAllocationOfAnotherSagaSaysSoWhenTheBudgetIsFull(t *testing.T) {
	t.Parallel()
	e := startOwned(t, mapping.Config{CapacityCells: officeCells})
	ctx := steptest.Context(t)
	setState(t, e.Redis, "full", saga.Running)
	if err := allocate(t, e, "full"); err != nil {
		t.Fatal(err)
	}
	const m = "m-foreign"
	if err := e.Redis.HSet(ctx, saga.RecordKey(m), "state", string(saga.Running), "saga_id", "saga-owner").Err(); err != nil {
		t.Fatal(err)
	}
	steptest.WantStatus(t, allocate(t, e, m), codes.FailedPrecondition, rpcerr.ReasonSagaMismatch)
	steptest.WantStatus(t, allocate(t, e, "m-no-record"), codes.FailedPrecondition, rpcerr.ReasonMissionGone)
	// The saga that owns the mission is refused for capacity, as it is.
	owner := e.Saga(m)
	owner.SagaId = "saga-owner"
	_, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: owner, Spec: office()})
	steptest.WantStatus(t, err, codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted)
}
