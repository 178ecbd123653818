package saga

import (
	"testing"

	"github.com/slammesh/slammesh/internal/redistest"
)

// The happy path of an n-step saga costs the store n+2 round trips on one
// Redis: the create (with its index entries), one write per step that
// records the previous step's outcome and starts the step, and the write
// that completes the saga, carrying the removal of its active-index entry
// (Store.saveEnding). The
// firehose copies ride in these (SideWriter); lease renewals are per
// engine tick, not per saga (none here: the lease is an hour).
func TestHappyPathRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("counts round trips on a real Redis")
	}
	// One server of its own, even in a cluster run: the bound is that of one
	// Redis (on a Cluster the index writes are round trips of their own:
	// n+4, docs/architecture.md).
	f := newFixtureOn(t, redistest.StartServer(t), nil)
	e := f.engine(t, Options{})
	// Load the scripts first: a NOSCRIPT fallback is a round trip of its
	// own that only the first saga of a process pays.
	if _, _, err := e.Start(t.Context(), "warm", "s", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(t.Context(), "warm"); err != nil {
		t.Fatal(err)
	}
	h := &roundTrips{}
	f.rdb.AddHook(h)
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Run(t.Context(), "m")
	if err != nil || rec.State != Completed {
		t.Fatalf("Run = %v, %v", rec, err)
	}
	n := len(f.def.Steps)
	if got, want := h.n.Load(), int64(n+2); got > want {
		t.Errorf("%d-step saga took %d round trips, want at most %d", n, got, want)
	}
	t.Logf("%d-step saga: %d round trips", n, h.n.Load())
}
