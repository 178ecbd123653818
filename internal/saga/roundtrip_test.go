package saga

import (
	"context"
	"testing"

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
