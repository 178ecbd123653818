package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func fullRecord(key string) *Record {
	t0 := time.UnixMilli(1_760_000_000_123)
	return &Record{
		SagaID:     "saga-" + key,
		Key:        key,
		Definition: "mission",
		State:      Failed,
		Current:    1,
		Steps: []StepRecord{
			{Name: "a", State: StepSucceeded, Attempts: 1},
			{Name: "b", State: StepCompensationFailed, Attempts: 4, CompAttempts: 13, CompBase: 3,
				Error: Failure{Code: "INTERNAL", Reason: "BUG", Message: "boom"}},
			{Name: "c", State: StepPending},
		},
		Outputs:      map[string][]byte{"a": {0, 1, 2, 255}, "b": []byte("poses")},
		Input:        []byte{9, 8, 7, 0},
		TraceParent:  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		Owner:        "replica-1",
		Epoch:        7,
		Cancelled:    true,
		CancelReason: "operator",
		CreatedAt:    t0,
		UpdatedAt:    t0.Add(time.Second),
		EndedAt:      t0.Add(2 * time.Second),
		Error:        Failure{Code: "INTERNAL", Reason: "BUG", Message: "compensation of b failed"},
		Cause:        Failure{Code: "FAILED_PRECONDITION", Reason: "INSUFFICIENT_OVERLAP", Message: "no overlap"},
	}
}

// createRunning creates fullRecord(key) on store as a running saga at
// epoch 1, not ended, and returns it.
func createRunning(t *testing.T, store *Store, key string) *Record {
	t.Helper()
	rec := fullRecord(key)
	rec.State, rec.Epoch, rec.EndedAt = Running, 1, time.Time{}
	if _, _, err := store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	want := fullRecord("m")
	created, _, err := f.store.Create(t.Context(), want)
	if err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	got, err := f.store.Load(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	got.saved, want.saved = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// The hash is flat: no JSON, one field per value.
	if v := f.rdb.HGet(t.Context(), RecordKey("m"), "s1.cattempts").Val(); v != "13" {
		t.Errorf("s1.cattempts = %q, want 13", v)
	}
	if _, err := f.store.Load(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load(missing) = %v, want ErrNotFound", err)
	}
	// State reads the one field a watch asks about.
	if st, err := f.store.State(t.Context(), "m"); err != nil || st != want.State {
		t.Errorf("State(m) = %q, %v; want %q", st, err, want.State)
	}
	if _, err := f.store.State(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State(missing) = %v, want ErrNotFound", err)
	}
}

func TestSaveWritesOnlyChangedFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := fullRecord("m")
	rec.State, rec.Cancelled, rec.CancelReason, rec.EndedAt = Running, false, "", time.Time{}
	if _, _, err := f.store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if kv := rec.changes(); len(kv) != 0 {
		t.Fatalf("changes after Create = %v, want none", kv)
	}
	rec.Steps[2].State = StepRunning
	rec.Outputs["a"] = nil
	if got, want := rec.changes(), []string{"s2.state", "running", "out.a", ""}; !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}

	// A cancellation written by another replica survives the owner's save
	// (the owner does not write fields it did not change) and is reported back.
	if _, _, err := f.store.cancel(t.Context(), "m", "from elsewhere", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Save(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if !rec.Cancelled || rec.CancelReason != "from elsewhere" {
		t.Errorf("after Save the record does not know of the cancellation: %v %q", rec.Cancelled, rec.CancelReason)
	}
	stored, err := f.store.Load(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Cancelled || stored.Steps[2].State != StepRunning || stored.Outputs["a"] != nil {
		t.Errorf("stored = cancelled %v, c %s, out.a %q", stored.Cancelled, stored.Steps[2].State, stored.Outputs["a"])
	}
	// A field that became empty is deleted, not kept as "".
	if f.rdb.HExists(t.Context(), RecordKey("m"), "out.a").Val() {
		t.Error("out.a is still a field of the record")
	}
}

func TestSaveWithStaleEpochWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := createRunning(t, f.store, "m")
	if _, err := f.store.claim(t.Context(), "m", "usurper", time.Now()); err != nil {
		t.Fatal(err)
	}
	before := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val()

	// The stale owner tries to finish the saga, with events.
	rec.State = Compensated
	rec.EndedAt = time.Now()
	err := f.store.Save(t.Context(), rec,
		Event{Type: EventCompensationCompleted, MissionID: "m", Step: "a", Attempt: 1},
		Event{Type: EventMissionCompensated, MissionID: "m"})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("Save = %v, want ErrFenced", err)
	}
	if after := f.rdb.HGetAll(t.Context(), RecordKey("m")).Val(); !reflect.DeepEqual(after, before) {
		t.Errorf("fenced Save changed the record:\n got %v\nwant %v", after, before)
	}
	if n := f.rdb.Exists(t.Context(), eventsKey("m")).Val(); n != 0 {
		t.Errorf("fenced Save wrote events: %v", events(t, f.rdb, "m"))
	}
	if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); err != nil {
		t.Errorf("fenced Save removed the saga from %s: %v", ActiveKey("m"), err)
	}
}

// TestSaveOfAGoneRecordWritesNothing: a save after Redis lost the record
// writes nothing (no half record, no events) and says the record is gone.
func TestSaveOfAGoneRecordWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := createRunning(t, f.store, "m")
	if err := f.rdb.Del(t.Context(), RecordKey("m"), eventsKey("m")).Err(); err != nil {
		t.Fatal(err)
	}
	rec.State = Compensated
	rec.EndedAt = time.Now()
	err := f.store.Save(t.Context(), rec, Event{Type: EventMissionCompensated, MissionID: "m"})
	var gone *RecordGoneError
	if !errors.Is(err, ErrFenced) || !errors.As(err, &gone) {
		t.Fatalf("Save = %v, want a RecordGoneError (ErrFenced)", err)
	}
	if n := f.rdb.Exists(t.Context(), RecordKey("m"), eventsKey("m")).Val(); n != 0 {
		t.Errorf("Save of a gone record wrote the record or events")
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	t0 := time.UnixMilli(1_760_000_000_000)
	// m2a and m2b share a millisecond, to exercise the cursor's tie-break.
	specs := []struct {
		key   string
		at    time.Duration
		state State
	}{
		{"m0", 0, Completed}, {"m1", time.Millisecond, Compensated}, {"m2a", 2 * time.Millisecond, Running},
		{"m2b", 2 * time.Millisecond, Completed}, {"m3", 3 * time.Millisecond, Failed}, {"m4", 4 * time.Millisecond, Completed},
	}
	for _, s := range specs {
		rec := fullRecord(s.key)
		rec.State, rec.CreatedAt = s.state, t0.Add(s.at)
		if _, _, err := f.store.Create(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		limit  int
		states []State
		want   []string
	}{
		{"all, pages of two", 2, nil, []string{"m4", "m3", "m2b", "m2a", "m1", "m0"}},
		{"all, one page", 0, nil, []string{"m4", "m3", "m2b", "m2a", "m1", "m0"}},
		{"completed only, pages of one", 1, []State{Completed}, []string{"m4", "m2b", "m0"}},
		{"two states", 10, []State{Running, Failed}, []string{"m3", "m2a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			cursor := ""
			for page := 0; ; page++ {
				if page > len(specs) {
					t.Fatalf("more pages than records: %v", got)
				}
				recs, next, err := f.store.List(t.Context(), cursor, tt.limit, tt.states...)
				if err != nil {
					t.Fatal(err)
				}
				if tt.limit > 0 && len(recs) > tt.limit {
					t.Fatalf("page of %d records, limit %d", len(recs), tt.limit)
				}
				for _, r := range recs {
					got = append(got, r.Key)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("listed %v, want %v", got, tt.want)
			}
		})
	}
	if _, _, err := f.store.List(t.Context(), "garbage", 1); err == nil {
		t.Error("List accepted a malformed cursor")
	}
}

// failEvalSha fails the next n EVALSHA commands before they reach Redis, the
// way a dropped connection would.
type failEvalSha struct{ n atomic.Int32 }

func (h *failEvalSha) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failEvalSha) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" && h.n.Add(-1) >= 0 {
			err := fmt.Errorf("injected: %w", net.ErrClosed)
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *failEvalSha) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return failInPipeline(next, func(cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" && h.n.Add(-1) >= 0 {
			return fmt.Errorf("injected: %w", net.ErrClosed)
		}
		return nil
	})
}

func TestTransientWriteErrorsAreRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	hook := &failEvalSha{}
	hook.n.Store(2) // the write before step a fails twice
	f.rdb.AddHook(hook)
	rec, err := e.Run(t.Context(), "m")
	if err != nil || rec.State != Completed {
		t.Fatalf("Run = %v, %v; want completed despite two failed writes", rec, err)
	}
	if got, want := events(t, f.rdb, "m"), []string{"mission.started", "mission.completed"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}

	// Past MaxAttempts the run gives up and leaves the saga to recovery.
	if _, _, err := e.Start(t.Context(), "m2", "s2", nil); err != nil {
		t.Fatal(err)
	}
	hook.n.Store(int32(testPolicy.MaxAttempts))
	if _, err := e.Run(t.Context(), "m2"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run with Redis gone = %v, want the write error", err)
	}
	stored, err := f.store.Load(t.Context(), "m2")
	if err != nil || stored.State != Pending {
		t.Fatalf("stored = %v, %v; want still pending for recovery", stored, err)
	}
	if _, err := f.rdb.ZScore(t.Context(), ActiveKey("m2"), "m2").Result(); err != nil {
		t.Errorf("abandoned saga not in %s: %v", ActiveKey("m"), err)
	}
}

// loseEveryOtherSaveReply lets the save script (its EVALSHA) run every
// time, but fails every other call afterwards, as a timeout would: the
// write landed, its reply did not. The call after a lost one, a retry,
// gets its reply.
type loseEveryOtherSaveReply struct {
	calls atomic.Int32
}

func (h *loseEveryOtherSaveReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseEveryOtherSaveReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil {
			err = h.lose(cmd)
		}
		return err
	}
}

func (h *loseEveryOtherSaveReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if c.Err() == nil {
				err = cmp.Or(err, h.lose(c))
			}
		}
		return err
	}
}

// lose fails every other save script run (as EVALSHA, or as EVAL when a
// saga's ending write carries its index removal) after it ran.
func (h *loseEveryOtherSaveReply) lose(cmd redis.Cmder) error {
	args := cmd.Args()
	save := len(args) > 1 && (cmd.Name() == "evalsha" && args[1] == saveScript.Hash() || cmd.Name() == "eval" && args[1] == saveLua)
	if save && h.calls.Add(1)%2 == 1 {
		err := fmt.Errorf("injected lost reply: %w", os.ErrDeadlineExceeded)
		cmd.SetErr(err)
		return err
	}
	return nil
}

// A save whose reply is lost is retried; the retry must find the write done
// and neither apply it again nor append its events again — the terminal
// event above all, which consumers take as the end of the mission.
func TestSaveRetriedAfterLostReplyWritesOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		b      map[string]behaviour
		state  State
		events []string
		// saves is how many writes the run makes, each sent twice.
		saves int32
	}{
		{
			name:   "completed",
			state:  Completed,
			events: []string{"mission.started", "mission.completed"},
			saves:  4,
		},
		{
			name:  "compensated",
			b:     map[string]behaviour{"b": {fail: []error{errBusiness}}},
			state: Compensated,
			events: []string{"mission.started",
				"compensation.started b 1", "compensation.completed b 1",
				"compensation.started a 1", "compensation.completed a 1", "mission.compensated"},
			saves: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.b)
			// Loaded, the script is sent as EVALSHA from the first save on.
			if err := saveScript.Load(t.Context(), f.rdb).Err(); err != nil {
				t.Fatal(err)
			}
			hook := &loseEveryOtherSaveReply{}
			e := f.replica(t, "lossy", quietLease, Options{}, hook)
			if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
				t.Fatal(err)
			}
			rec, err := e.Run(t.Context(), "m")
			if err != nil || rec.State != tt.state {
				t.Fatalf("Run = %v, %v; want %s despite lost replies", rec, err, tt.state)
			}
			if n := hook.calls.Load(); n != 2*tt.saves {
				t.Errorf("%d save calls, want %d: each of %d writes lost its reply once", n, 2*tt.saves, tt.saves)
			}
			if got := events(t, f.rdb, "m"); !slices.Equal(got, tt.events) {
				t.Errorf("events = %v, want %v", got, tt.events)
			}
			stored, err := f.store.Load(t.Context(), "m")
			if err != nil {
				t.Fatal(err)
			}
			if stored.State != tt.state || stored.rev != int64(tt.saves) {
				t.Errorf("stored state %s at revision %d, want %s at %d", stored.State, stored.rev, tt.state, tt.saves)
			}
		})
	}
}

// TestSaveRefusesADeltaOverALostWrite: a Redis failover may lose the last
// writes a master acknowledged (replication is asynchronous). A Save sends
// only the fields changed since the last one, so over a record that lost
// that one it would write a record no engine ever wrote (the lost write's
// fields missing). The revision tells: the store must refuse, as if fenced,
// and leave the saga to recovery, which drives it from what Redis has.
func TestSaveRefusesADeltaOverALostWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	rec := fullRecord("m")
	rec.State, rec.Cancelled, rec.CancelReason = Running, false, ""
	if _, _, err := f.store.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	before := f.rdb.HGetAll(ctx, RecordKey("m")).Val()
	rec.Steps[2].State = StepRunning
	rec.Steps[2].Attempts = 1
	if err := f.store.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// The failover lost that write: the promoted replica has the record as
	// it was before it.
	if err := f.rdb.Del(ctx, RecordKey("m")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.HSet(ctx, RecordKey("m"), before).Err(); err != nil {
		t.Fatal(err)
	}
	rec.Current = 2
	err := f.store.Save(ctx, rec)
	if !errors.Is(err, ErrFenced) {
		t.Errorf("Save over a lost write = %v, want ErrFenced", err)
	}
	if after := f.rdb.HGetAll(ctx, RecordKey("m")).Val(); !maps.Equal(after, before) {
		t.Errorf("record after a Save over a lost write = %v, want it untouched %v", after, before)
	}
}
