package saga

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/redistest"
)

// The happy path of an n-step saga costs the store n+1 round trips on one
// Redis when Begin creates it: the create (with its index entries, the
// first step's start and mission.started), one write per step that records
// its outcome and starts the next, the last one completing the saga and
// carrying the removal of its active-index entry (Store.saveEnding). Start
// costs one more: its saga is created Pending, and the first step's start
// is a write of its own. The firehose copies ride in these (SideWriter);
// lease renewals are per engine tick, not per saga (none here: the lease is
// an hour).
func TestHappyPathRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("counts round trips on a real Redis")
	}
	for _, tt := range []struct {
		name   string
		create func(e *Engine) func(context.Context, string, string, []byte) (*Record, bool, error)
		extra  int
	}{
		{"Begin", func(e *Engine) func(context.Context, string, string, []byte) (*Record, bool, error) { return e.Begin }, 1},
		{"Start", func(e *Engine) func(context.Context, string, string, []byte) (*Record, bool, error) { return e.Start }, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// One server of its own, even in a cluster run: the bound is
			// that of one Redis (on a Cluster the index writes are round
			// trips of their own: two more, docs/architecture.md).
			f := newFixtureOn(t, redistest.StartServer(t), nil)
			e := f.engine(t, Options{})
			create := tt.create(e)
			// Load the scripts first: a NOSCRIPT fallback is a round trip
			// of its own that only the first saga of a process pays.
			if _, _, err := create(t.Context(), "warm", "s", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Run(t.Context(), "warm"); err != nil {
				t.Fatal(err)
			}
			h := &roundTrips{}
			f.rdb.AddHook(h)
			if _, _, err := create(t.Context(), "m", "s", nil); err != nil {
				t.Fatal(err)
			}
			rec, err := e.Run(t.Context(), "m")
			if err != nil || rec.State != Completed {
				t.Fatalf("Run = %v, %v", rec, err)
			}
			n := len(f.def.Steps)
			if got, want := h.n.Load(), int64(n+tt.extra); got > want {
				t.Errorf("%d-step saga took %d round trips, want at most %d", n, got, want)
			}
			t.Logf("%d-step saga: %d round trips", n, h.n.Load())
		})
	}
}

// Through a group commit, a saga alone costs what it costs without one, and
// concurrent sagas share round trips: every write of the 32 sagas below
// waits for all of them to reach the same step, so their saves are in the
// group's queue together.
func TestGroupCommitSharesRoundTrips(t *testing.T) {
	const sagas = 32
	var arrived sync.WaitGroup
	arrived.Add(sagas)
	together := func(ctx context.Context, x *Exec) error {
		arrived.Done()
		arrived.Wait()
		x.SetOutput([]byte("b-out"))
		return nil
	}
	f := newFixtureOn(t, redistest.StartServer(t), map[string]behaviour{"b": {act: together}})
	f.store.WithGroupCommit(groupcommit.New(f.rdb, groupcommit.Options{}))
	e := f.engine(t, Options{})
	// The scripts loaded (see TestHappyPathRoundTrips), on a saga whose
	// step b does not wait for the others.
	warm := newTestEngine(t, f.store, Definition{Name: "warm", Steps: fakeSteps(&calls{}, []string{"a", "b", "c"}, nil),
		Classify: classify, Describe: describe, Policy: testPolicy}, Options{})
	if _, _, err := warm.Begin(t.Context(), "warm", "s", nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := warm.Run(t.Context(), "warm"); err != nil || rec.State != Completed {
		t.Fatalf("warm-up saga: %v, %v", rec, err)
	}

	h := &roundTrips{}
	f.rdb.AddHook(h)
	if _, _, err := warm.Begin(t.Context(), "solo", "s", nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := warm.Run(t.Context(), "solo"); err != nil || rec.State != Completed {
		t.Fatalf("saga alone: %v, %v", rec, err)
	}
	n := len(f.def.Steps)
	if got := h.n.Load(); got > int64(n+1) {
		t.Errorf("a %d-step saga alone took %d round trips through the group, want at most %d", n, got, n+1)
	}
	h.n.Store(0)

	var wg sync.WaitGroup
	for i := range sagas {
		key := "m" + strconv.Itoa(i)
		wg.Go(func() {
			if _, _, err := e.Begin(t.Context(), key, "s", nil); err != nil {
				t.Errorf("Begin %s: %v", key, err)
				arrived.Done()
				return
			}
			if rec, err := e.Run(t.Context(), key); err != nil || rec.State != Completed {
				t.Errorf("Run %s = %v, %v", key, rec, err)
			}
		})
	}
	wg.Wait()
	alone := int64(sagas * (n + 1))
	if got := h.n.Load(); got >= alone {
		t.Errorf("%d concurrent %d-step sagas took %d round trips, want fewer than the %d they take alone", sagas, n, got, alone)
	} else {
		t.Logf("%d concurrent %d-step sagas: %d round trips (alone: %d)", sagas, n, got, alone)
	}
	for i := range sagas {
		key := "m" + strconv.Itoa(i)
		if got, want := events(t, f.rdb, key), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
			t.Errorf("%s: events %v, want %v", key, got, want)
		}
	}
}

// Concurrent creates through a group commit on one Redis each find their
// saga in the active index: the index writes ride in the create's pooled
// pipeline, which the next create reuses once the first is done with it
// (run with -race).
func TestConcurrentCreatesThroughAGroupCommitAreIndexed(t *testing.T) {
	f := newFixtureOn(t, redistest.StartServer(t), nil)
	f.store.WithGroupCommit(groupcommit.New(f.rdb, groupcommit.Options{}))
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec := fullRecord("m" + strconv.Itoa(w) + "-" + strconv.Itoa(i))
				rec.State, rec.EndedAt = Pending, time.Time{}
				if created, _, err := f.store.Create(t.Context(), rec); err != nil || !created {
					t.Errorf("Create %s = %v, %v", rec.Key, created, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		for i := range each {
			key := "m" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
			if err := f.rdb.ZScore(t.Context(), ActiveKey(key), key).Err(); err != nil {
				t.Errorf("saga %s not in %s: %v", key, ActiveKey(key), err)
			}
		}
	}
}
