package saga

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/groupcommit"
)

// renewals counts the lease renewals (runs of renewScript) one engine's
// client sent and got a reply to.
type renewals struct{ n atomic.Int64 }

// runs reports whether cmd is an EVALSHA of script.
func runs(cmd redis.Cmder, script *redis.Script) bool {
	a := cmd.Args()
	return cmd.Name() == "evalsha" && len(a) > 1 && a[1] == script.Hash()
}

func isRenewal(cmd redis.Cmder) bool { return runs(cmd, renewScript) }

func (h *renewals) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *renewals) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if isRenewal(cmd) && cmd.Err() == nil {
			h.n.Add(1)
		}
		return err
	}
}

func (h *renewals) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if isRenewal(c) && c.Err() == nil {
				h.n.Add(1)
			}
		}
		return err
	}
}

// TestRunOfABegunSagaWhoseLeaseWasLostCallsNoStep: a begun saga whose
// renewal found it taken over before Run picked it up is not driven: its
// first step is not called by the stale owner (Start's Pending saga was
// fenced at Run's first write, before any call; a begun one has no write
// before its first call).
func TestRunOfABegunSagaWhoseLeaseWasLostCallsNoStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	blackout := &renewalBlackout{}
	blackout.on.Store(true) // A is paused: its lease runs out
	a := f.replica(t, "A", testLease, Options{}, blackout)
	b := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Begin(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	recovering(t, b)
	awaitStored(t, f.store, "m", Completed)
	blackout.on.Store(false) // A wakes up: its next renewal finds the saga lost
	await(t, "A's renewal to find the saga lost", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		s := a.started["m"]
		return s != nil && s.lost
	})
	before := f.calls.get()
	_, err := a.Run(t.Context(), "m")
	if !errors.Is(err, ErrFenced) {
		t.Errorf("Run of the lost saga = %v, want ErrFenced", err)
	}
	if got := f.calls.get(); !slices.Equal(got, before) {
		t.Errorf("the stale owner called %v after it knew its lease lost", got[len(before):])
	}
}

// TestBegunSagaCancelledElsewhereBeforeRunCallsNoStep: a cancellation
// recorded by another replica while a begun saga waits for Run, which the
// owner's lease renewal reported, stops the saga before its first call: only
// the first step's compensation is called.
func TestBegunSagaCancelledElsewhereBeforeRunCallsNoStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rn := &renewals{}
	a := f.replica(t, "A", testLease, Options{}, rn)
	b := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Begin(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cancel(t.Context(), "m", "elsewhere"); err != nil {
		t.Fatal(err)
	}
	// Two renewals after the cancellation: at least one ran after it landed.
	seen := rn.n.Load()
	await(t, "two renewals of A after the cancellation", func() bool { return rn.n.Load() >= seen+2 })
	rec, err := a.Run(t.Context(), "m")
	if err != nil || rec.State != Compensated {
		t.Fatalf("Run = %v, %v; want compensated", rec, err)
	}
	if got, want := f.calls.get(), []string{"~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if rec.Error.Reason != ReasonMissionCancelled {
		t.Errorf("error = %+v, want reason %s", rec.Error, ReasonMissionCancelled)
	}
}

// TestBeginAfterScriptCacheFlush: a Begin that finds Redis's script cache
// empty (a restart or failover) creates the saga once, with one
// mission.started, and a repeat after another flush appends nothing.
func TestBeginAfterScriptCacheFlush(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	if err := f.rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, created, err := e.Begin(t.Context(), "m", "s", nil); err != nil || !created {
		t.Fatalf("Begin = created %v, %v", created, err)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started"}; !slices.Equal(got, want) {
		t.Errorf("events after Begin = %v, want %v", got, want)
	}
	if rec, err := e.Run(t.Context(), "m"); err != nil || rec.State != Completed {
		t.Fatalf("Run = %v, %v", rec, err)
	}
	before := events(t, f.rdb, "m")
	if err := f.rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if rec, created, err := e.Begin(t.Context(), "m", "other", nil); err != nil || created || rec.State != Completed {
		t.Fatalf("repeated Begin = %v created %v, %v; want the completed saga", rec, created, err)
	}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, before) {
		t.Errorf("a repeated Begin appended events: %v, had %v", got, before)
	}
}

// TestEndingWriteAfterScriptCacheFlush: the ending write goes by the save
// script's digest; when Redis lost its scripts during the last step, it goes
// again with the body, and ends the saga once, its active-index entry
// removed with it — also when Redis had the removal's script again already
// (it ran behind the refused write and removed the entry, which was put
// back with a new score).
func TestEndingWriteAfterScriptCacheFlush(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name                 string
		grouped, removalKept bool
	}{
		{name: "alone"},
		{name: "group commit", grouped: true},
		{name: "removal's script loaded again", removalKept: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f *fixture
			f = newFixture(t, map[string]behaviour{"c": {act: func(ctx context.Context, x *Exec) error {
				x.SetOutput([]byte("c-out"))
				if err := f.rdb.ScriptFlush(ctx).Err(); err != nil {
					return err
				}
				if tt.removalKept {
					return unindexScript.Load(ctx, f.rdb).Err()
				}
				return nil
			}}})
			if tt.grouped {
				f.store.WithGroupCommit(groupcommit.New(f.rdb, groupcommit.Options{}))
			}
			e := f.engine(t, Options{})
			if _, _, err := e.Begin(t.Context(), "m", "s", nil); err != nil {
				t.Fatal(err)
			}
			rec, err := e.Run(t.Context(), "m")
			if err != nil || rec.State != Completed {
				t.Fatalf("Run = %v, %v; want completed", rec, err)
			}
			if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); !errors.Is(err, redis.Nil) {
				t.Errorf("active-index entry of the ended saga: %v, want none", err)
			}
			if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
				t.Errorf("events = %v, want %v", got, want)
			}
		})
	}
}

// resendCreate delivers the first create of a saga twice, as go-redis does
// when the reply of a call that landed times out (it sends the call again,
// MaxRetries times): the caller gets the second reply.
type resendCreate struct{ done atomic.Bool }

func isCreate(cmd redis.Cmder) bool { return runs(cmd, createScript) }

func (h *resendCreate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *resendCreate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isCreate(cmd) && h.done.CompareAndSwap(false, true) {
			_ = next(ctx, cmd) // lands; its reply is lost
		}
		return next(ctx, cmd)
	}
}

func (h *resendCreate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, isCreate) && h.done.CompareAndSwap(false, true) {
			_ = next(ctx, cmds)
		}
		return next(ctx, cmds)
	}
}

// TestBeginWhoseCreateWasSentTwice: a create that landed, lost its reply and
// was sent again (go-redis's retry of a timed-out call) finds its own saga:
// Begin reports it created, once, and Run drives it from its first attempt,
// instead of answering "it existed" and leaving the saga to recovery a
// lease later, its first attempt spent.
func TestBeginWhoseCreateWasSentTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	h := &resendCreate{}
	a := f.replica(t, "A", quietLease, Options{}, h)
	if err := createScript.Load(t.Context(), f.rdb).Err(); err != nil { // no NOSCRIPT round
		t.Fatal(err)
	}
	rec, created, err := a.Begin(t.Context(), "m", "", nil)
	if err != nil || !created {
		t.Fatalf("Begin = %+v created %v, %v; want created", rec, created, err)
	}
	if !h.done.Load() {
		t.Fatal("the create was not sent twice")
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started"}; !slices.Equal(got, want) {
		t.Errorf("events after Begin = %v, want %v", got, want)
	}
	done := runInBackground(a, "m")
	r := awaitRunResult(t, done)
	if r.err != nil || r.rec.State != Completed || r.rec.Epoch != 1 {
		t.Fatalf("Run = %+v, %v; want completed at epoch 1", r.rec, r.err)
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}

	// A saga id given by the caller proves nothing: two Begins may share it.
	if _, created, err := a.Begin(t.Context(), "m", rec.SagaID, nil); err != nil || created {
		t.Errorf("a second Begin with the same saga id: created %v, %v; want false", created, err)
	}
}
