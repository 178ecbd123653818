package saga

import (
	"errors"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestBeginRecordsWhatStartAndRunWould: the record and the events of a saga
// created by Begin are those of one created by Start, once run.
func TestBeginRecordsWhatStartAndRunWould(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	rec, created, err := e.Begin(t.Context(), "m", "s", []byte("input"))
	if err != nil || !created {
		t.Fatalf("Begin = created %v, %v", created, err)
	}
	if rec.State != Running || rec.Steps[0].State != StepRunning || rec.Steps[0].Attempts != 1 {
		t.Errorf("Begin returned %s, first step %s attempt %d; want running, running, 1", rec.State, rec.Steps[0].State, rec.Steps[0].Attempts)
	}
	stored, err := f.store.Load(t.Context(), "m")
	if err != nil || stored.State != Running || stored.Steps[0].Attempts != 1 {
		t.Fatalf("stored before Run: %+v, %v", stored, err)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started"}; !slices.Equal(got, want) {
		t.Errorf("events before Run = %v, want %v", got, want)
	}
	if rec, err = e.Run(t.Context(), "m"); err != nil || rec.State != Completed {
		t.Fatalf("Run = %v, %v", rec, err)
	}
	ref := startRun(t, e, "ref")
	if got, want := events(t, f.rdb, "m"), events(t, f.rdb, "ref"); !slices.Equal(got, want) {
		t.Errorf("events = %v, want those of Start and Run: %v", got, want)
	}
	if got, want := messages(t, f.rdb, "m"), messages(t, f.rdb, "ref"); !slices.Equal(got, want) {
		t.Errorf("messages = %q, want %q", got, want)
	}
	for i := range rec.Steps {
		if rec.Steps[i].Attempts != ref.Steps[i].Attempts || rec.Steps[i].State != ref.Steps[i].State {
			t.Errorf("step %d = %+v, want %+v", i, rec.Steps[i], ref.Steps[i])
		}
	}
	if got, want := f.calls.get(), []string{"a#1", "b#1", "c#1", "a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}

	// A repeat writes nothing and appends no event.
	before := events(t, f.rdb, "m")
	if got, created, err := e.Begin(t.Context(), "m", "other", nil); err != nil || created || got.SagaID != "s" {
		t.Errorf("repeated Begin = %v created %v, %v; want the existing saga s", got, created, err)
	}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, before) {
		t.Errorf("a repeated Begin appended events: %v", got)
	}
}

// TestBeginCountsTheFirstAttempt: the attempt Begin records is the first
// step's first, so a policy of one attempt still calls the step once.
func TestBeginCountsTheFirstAttempt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]behaviour{"a": {fail: []error{errTransient}}})
	f.def.Policy.MaxAttempts = 1
	e := f.engine(t, Options{})
	if _, _, err := e.Begin(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Run(t.Context(), "m")
	if err != nil || rec.State != Compensated {
		t.Fatalf("Run = %v, %v; want compensated", rec, err)
	}
	if got, want := f.calls.get(), []string{"a#1", "~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

// TestCancelBegunSagaCompensatesTheFirstStep: cancelled before Run, a begun
// saga is a running one at its first step: the step is not called, its
// compensation is.
func TestCancelBegunSagaCompensatesTheFirstStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	if _, _, err := e.Begin(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cancel(t.Context(), "m", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Run(t.Context(), "m")
	if err != nil || rec.State != Compensated {
		t.Fatalf("Run = %v, %v; want compensated", rec, err)
	}
	if got, want := f.calls.get(), []string{"~a#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	want := []string{"mission.started", "compensation.started a 1", "compensation.completed a 1", "mission.compensated"}
	if got := events(t, f.rdb, "m"); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestRecoveryRunsASagaWhoseCreatorDiedAfterBegin: the attempt Begin
// recorded is counted, so the new owner's call is the first step's second.
func TestRecoveryRunsASagaWhoseCreatorDiedAfterBegin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	blackout := &renewalBlackout{}
	blackout.on.Store(true) // A dies right after Begin: no renewal lands
	a := f.replica(t, "A", testLease, Options{}, blackout)
	b := f.replica(t, "B", testLease, Options{})
	if _, _, err := a.Begin(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	recovering(t, b)
	rec := awaitStored(t, f.store, "m", Completed)
	if rec.Owner != "B" || rec.Epoch != 2 || rec.Steps[0].Attempts != 2 {
		t.Errorf("completed by %s at epoch %d, first step attempts %d; want B at 2, 2", rec.Owner, rec.Epoch, rec.Steps[0].Attempts)
	}
	if got, want := f.calls.get(), []string{"a#2", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestRepeatedBeginLeavesAFinishedSagaUnindexed: a repeat of a finished
// saga's start (a client retrying StartMission, which no longer reads the
// record first) must not put the saga back in the active-lease index, where
// every recovery scan would read its record until the entry went stale.
func TestRepeatedBeginLeavesAFinishedSagaUnindexed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	if _, _, err := e.Begin(t.Context(), "m", "", nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := e.Run(t.Context(), "m"); err != nil || rec.State != Completed {
		t.Fatalf("Run = %v, %v", rec, err)
	}
	indexed := func() bool {
		err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return err == nil
	}
	if indexed() {
		t.Fatal("the finished saga is still indexed after its run")
	}
	for range 3 {
		if _, created, err := e.Begin(t.Context(), "m", "", nil); err != nil || created {
			t.Fatalf("repeated Begin = created %v, %v", created, err)
		}
		if indexed() {
			t.Fatal("a repeated Begin indexed the finished saga as active")
		}
	}
}
