package saga

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slammesh/slammesh/internal/redistest"
)

// extraKey is a business key the test missions own besides record and
// stream, as a step service's would be.
func extraKey(key string) string { return "slammesh:{" + key + "}:extra" }

func testRetention(ttl time.Duration) Retention {
	return Retention{TTL: ttl, Keys: func(key string) []string { return []string{eventsKey(key), extraKey(key)} }}
}

// missionKeys returns every key of the keyspace carrying mission key's hash
// tag (SCAN over the whole keyspace).
func missionKeys(t *testing.T, rdb redis.UniversalClient, key string) []string {
	t.Helper()
	out := redistest.Keys(t, rdb, "*{"+key+"}*")
	slices.Sort(out)
	return out
}

// pttls returns the PTTL of each key (-1: no expiry, -2: missing).
func pttls(t *testing.T, rdb redis.UniversalClient, keys ...string) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(keys))
	for i, k := range keys {
		d, err := rdb.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

func TestRetentionExpiresOnlyFinishedSagas(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	// rdb is set once the fixture exists, before any step runs.
	var rdb redis.UniversalClient
	f := newFixture(t, map[string]behaviour{
		// Mission "bad" fails at c and compensates; "stuck" cannot undo b.
		"c": {act: func(ctx context.Context, x *Exec) error {
			if x.Key() != "ok" {
				return errBusiness
			}
			x.SetOutput([]byte("c-out"))
			return nil
		}},
		"b": {comp: func(ctx context.Context, x *Exec) error {
			if x.Key() == "stuck" {
				return errBusiness
			}
			return nil
		}},
		// While a step runs, no key of its mission may have an expiry.
		"a": {act: func(ctx context.Context, x *Exec) error {
			for _, d := range pttls(t, rdb, RecordKey(x.Key()), eventsKey(x.Key()), extraKey(x.Key())) {
				if d != -1 {
					return errors.New("a running mission's key has an expiry")
				}
			}
			x.SetOutput([]byte("a-out"))
			return nil
		}},
	})
	rdb = f.rdb
	f.store.WithRetention(testRetention(ttl))
	e := f.engine(t, Options{})
	for _, key := range []string{"ok", "bad", "stuck"} {
		if err := f.rdb.Set(t.Context(), extraKey(key), "business", 0).Err(); err != nil {
			t.Fatal(err)
		}
		startRun(t, e, key)
	}
	for key, want := range map[string]State{"ok": Completed, "bad": Compensated, "stuck": Failed} {
		rec, err := f.store.Load(t.Context(), key)
		if err != nil || rec.State != want {
			t.Fatalf("%s: %v %v, want %s", key, rec, err, want)
		}
		for i, d := range pttls(t, f.rdb, RecordKey(key), eventsKey(key), extraKey(key)) {
			expiring := d > 0 && d <= ttl
			if want == Failed && d != -1 || want != Failed && !expiring {
				t.Errorf("%s (%s): key %d PTTL %v", key, want, i, d)
			}
		}
	}
	// A teardown reopens the completed mission: its keys must not expire
	// under it, and get their retention again when it ends.
	if _, err := e.Cancel(t.Context(), "ok", "test"); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.store.Load(t.Context(), "ok")
	if rec.State != Compensated {
		t.Fatalf("teardown ended %s", rec.State)
	}
	if !slices.Contains(f.calls.get(), "~a#1") {
		t.Errorf("teardown did not compensate a: %v", f.calls.get())
	}
	for i, d := range pttls(t, f.rdb, RecordKey("ok"), eventsKey("ok"), extraKey("ok")) {
		if d <= 0 || d > ttl {
			t.Errorf("torn-down mission key %d PTTL %v", i, d)
		}
	}
}

func TestRetentionLeavesNothingAndTrimsTheIndex(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]behaviour{"c": {fail: []error{errBusiness}}})
	f.store.WithRetention(testRetention(300 * time.Millisecond))
	if err := f.rdb.Set(t.Context(), extraKey("done"), "business", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e := f.engine(t, Options{})
	if got := startRun(t, e, "done").State; got != Compensated {
		t.Fatalf("state %s", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(missionKeys(t, f.rdb, "done")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("keys left after the retention: %v", missionKeys(t, f.rdb, "done"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := f.store.Load(t.Context(), "done"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after expiry: %v", err)
	}
	for _, key := range []string{"done", "never"} {
		gone, err := f.store.Vanished(t.Context(), key)
		if err != nil || gone != (key == "done") {
			t.Errorf("Vanished(%s) = %v, %v", key, gone, err)
		}
	}
	// The janitor drops the index entry once the mission is older than the
	// retention, keeping a tombstone; twice is the same as once.
	later := time.Now().Add(time.Second)
	for range 2 {
		if _, err := f.store.Trim(t.Context(), later, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.rdb.ZCard(t.Context(), MissionsKey).Val(); n != 0 {
		t.Errorf("%d missions still indexed", n)
	}
	if gone, _ := f.store.Vanished(t.Context(), "done"); !gone {
		t.Error("tombstone missing after Trim")
	}
	// Tombstones go one retention after they were written.
	if _, err := f.store.Trim(t.Context(), later.Add(time.Hour), 1000); err != nil {
		t.Fatal(err)
	}
	if n := f.rdb.ZCard(t.Context(), GoneKey).Val(); n != 0 {
		t.Errorf("%d tombstones left", n)
	}
}

func TestTrimKeepsFailedMissions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]behaviour{
		"c": {fail: []error{errBusiness}},
		"b": {comp: func(context.Context, *Exec) error { return errBusiness }},
	})
	f.store.WithRetention(testRetention(time.Millisecond))
	e := f.engine(t, Options{})
	if got := startRun(t, e, "stuck").State; got != Failed {
		t.Fatalf("state %s", got)
	}
	if _, err := f.store.Trim(t.Context(), time.Now().Add(time.Hour), 1000); err != nil {
		t.Fatal(err)
	}
	if n := f.rdb.ZCard(t.Context(), MissionsKey).Val(); n != 1 {
		t.Errorf("failed mission dropped from the index (%d left)", n)
	}
	if _, err := f.store.Load(t.Context(), "stuck"); err != nil {
		t.Errorf("failed mission: %v", err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := newFixture(t, map[string]behaviour{"b": {act: func(ctx context.Context, x *Exec) error {
		if x.Key() == "running" {
			<-release
		}
		x.SetOutput([]byte("b-out"))
		return nil
	}}})
	f.store.WithRetention(testRetention(time.Hour))
	e := f.engine(t, Options{})
	startRun(t, e, "done")
	if err := f.rdb.Set(t.Context(), extraKey("done"), "business", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Start(t.Context(), "running", "saga-running", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(e, "running")
	if err := f.store.Delete(t.Context(), "running", time.Now()); !errors.Is(err, ErrNotFinished) {
		t.Errorf("Delete(running) = %v, want ErrNotFinished", err)
	}
	close(release)
	awaitRunResult(t, done)
	if err := f.store.Delete(t.Context(), "done", time.Now()); err != nil {
		t.Fatal(err)
	}
	if keys := missionKeys(t, f.rdb, "done"); len(keys) != 0 {
		t.Errorf("keys left after Delete: %v", keys)
	}
	if err := f.store.Delete(t.Context(), "done", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if gone, _ := f.store.Vanished(t.Context(), "done"); !gone {
		t.Error("deleted mission not reported vanished")
	}
	if s := f.rdb.ZScore(t.Context(), MissionsKey, "done").Err(); !errors.Is(s, redis.Nil) {
		t.Errorf("deleted mission still indexed: %v", s)
	}
}

// TestTrimPassesFailedMissions pins that failed missions, which stay in the
// index, do not hide the expired missions indexed after them from a janitor
// that checks limit entries per call: with more failed missions than limit
// at the old end of the index, the expired ones behind them must still be
// dropped within a few calls.
func TestTrimPassesFailedMissions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// A minute: the index entries (an hour old) are past it, and the
	// tombstone one pass leaves is not (a millisecond would let the next
	// pass drop it again on a slow machine).
	f.store.WithRetention(testRetention(time.Minute))
	ctx := t.Context()
	base := time.Now().Add(-time.Hour)
	for i, k := range []string{"failed-0", "failed-1", "failed-2", "expired"} {
		f.rdb.ZAdd(ctx, MissionsKey, redis.Z{Score: float64(base.Add(time.Duration(i) * time.Second).UnixMilli()), Member: k})
		if k != "expired" {
			f.rdb.HSet(ctx, RecordKey(k), "state", string(Failed))
		}
	}
	for range 4 {
		if _, err := f.store.Trim(ctx, time.Now(), 2); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.rdb.ZRange(ctx, MissionsKey, 0, -1).Val(); !slices.Equal(got, []string{"failed-0", "failed-1", "failed-2"}) {
		t.Errorf("index after four trims of 2 entries: %v, want the three failed missions", got)
	}
	if gone, _ := f.store.Vanished(ctx, "expired"); !gone {
		t.Error("no tombstone for the expired mission")
	}
}

// recreateBeforeUnindex is a hook that, once, runs again before the
// pipeline that writes a tombstone (Delete's and Trim's unindex): a saga
// created again under the deleted key in between, as a StartMission racing
// a DeleteMission, or a Trim of the expired saga, does.
type recreateBeforeUnindex struct {
	once  sync.Once
	again func()
}

func (*recreateBeforeUnindex) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*recreateBeforeUnindex) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *recreateBeforeUnindex) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if a := c.Args(); len(a) > 1 && strings.EqualFold(c.Name(), "zadd") && a[1] == GoneKey {
				h.once.Do(h.again)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// A saga created again under a key between the deletion of the first one's
// keys and its unindex (Delete), or between Trim's read of an expired entry
// and its removal, stays in the mission index at its own creation time: the
// unindex removes only the entry with the first saga's creation time, which
// the second one replaced, also when it was created by a replica whose
// clock is behind the first one's.
func TestUnindexLeavesASagaCreatedAgain(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		how  string
		then time.Duration // the first saga's creation, from now
	}{
		{"delete", -2 * time.Hour},
		{"trim", -2 * time.Hour},
		{"delete, created again by a clock behind", time.Hour},
	} {
		t.Run(tt.how, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.store.WithRetention(testRetention(time.Hour))
			e := f.engine(t, Options{})
			ctx := t.Context()
			startRun(t, e, "m")
			// The first saga was created two hours ago (Trim looks at it),
			// or an hour ahead of this clock.
			then := time.Now().Add(tt.then).UnixMilli()
			f.rdb.HSet(ctx, RecordKey("m"), "created", then)
			f.rdb.ZAdd(ctx, MissionsKey, redis.Z{Score: float64(then), Member: "m"})
			var again *Record
			f.rdb.AddHook(&recreateBeforeUnindex{again: func() {
				var err error
				if again, _, err = e.Start(ctx, "m", "saga-again", []byte("input")); err != nil {
					t.Error(err)
				}
			}})
			switch tt.how {
			case "delete", "delete, created again by a clock behind":
				if err := f.store.Delete(ctx, "m", time.Now()); err != nil {
					t.Fatal(err)
				}
			case "trim":
				f.rdb.Del(ctx, RecordKey("m")) // expired
				if n, err := f.store.Trim(ctx, time.Now(), 100); err != nil || n != 1 {
					t.Fatalf("Trim = %d, %v; want the expired entry read", n, err)
				}
			}
			if again == nil {
				t.Fatal("the saga was not created again")
			}
			score, err := f.rdb.ZScore(ctx, MissionsKey, "m").Result()
			if err != nil || int64(score) != again.CreatedAt.UnixMilli() {
				t.Fatalf("index score %v, %v; want the second saga's creation time %d", score, err, again.CreatedAt.UnixMilli())
			}
			recs, _, err := f.store.List(ctx, "", 10)
			if err != nil || len(recs) != 1 || recs[0].SagaID != "saga-again" {
				t.Errorf("List = %v, %v; want the saga created again", recs, err)
			}
		})
	}
}

// A repeated create of an existing saga (a client's retry) leaves its
// mission-index entry at the saga's creation time.
func TestRepeatedCreateKeepsTheIndexScore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	e := f.engine(t, Options{})
	ctx := t.Context()
	first := startRun(t, e, "m")
	if _, created, err := e.Start(ctx, "m", "saga-m", []byte("input")); err != nil || created {
		t.Fatalf("repeated Start = created %v, %v", created, err)
	}
	if score, err := f.rdb.ZScore(ctx, MissionsKey, "m").Result(); err != nil || int64(score) != first.CreatedAt.UnixMilli() {
		t.Errorf("index score %v, %v after a repeated start; want the creation time %d", score, err, first.CreatedAt.UnixMilli())
	}
}
