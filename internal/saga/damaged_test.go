package saga

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// damage leaves of key's record what a Redis that dropped the scripts'
// writes of its AOF at load keeps (redis/redis#14541): a field or two a
// single write set, no schema version.
func damage(t *testing.T, rdb redis.UniversalClient, key string, fields ...any) {
	t.Helper()
	ctx := t.Context()
	if err := rdb.Del(ctx, RecordKey(key)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, RecordKey(key), fields...).Err(); err != nil {
		t.Fatal(err)
	}
}

// A damaged record is left out of List, told once per listing to the
// handler, and Load says ErrDamaged; a record of another schema version is
// not damage (found by a review: one damaged record failed every listing).
func TestDamagedRecordIsLeftOutOfList(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	var told []string
	f.store.WithDamagedRecords(func(key string, err error) {
		if !errors.Is(err, ErrDamaged) {
			t.Errorf("told of %s with %v, not ErrDamaged", key, err)
		}
		told = append(told, key)
	})
	t0 := time.UnixMilli(1_760_000_000_000)
	for i, key := range []string{"m0", "m1", "m2"} {
		rec := fullRecord(key)
		rec.State, rec.CreatedAt = Completed, t0.Add(time.Duration(i)*time.Millisecond)
		if _, _, err := f.store.Create(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
	damage(t, f.rdb, "m1", "lease", "1760000000000")
	recs, _, err := f.store.List(t.Context(), "", 10)
	if err != nil {
		t.Fatalf("List with a damaged record: %v", err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Key)
	}
	if !slices.Equal(got, []string{"m2", "m0"}) || !slices.Equal(told, []string{"m1"}) {
		t.Errorf("listed %v and told of %v; want [m2 m0] and [m1]", got, told)
	}
	if _, err := f.store.Load(t.Context(), "m1"); !errors.Is(err, ErrDamaged) {
		t.Errorf("Load of the damaged record = %v, want ErrDamaged", err)
	}
	if err := f.rdb.HSet(t.Context(), RecordKey("m2"), fieldVersion, "2").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Load(t.Context(), "m2"); err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("Load of a record of schema version 2 = %v, want an error that is not ErrDamaged", err)
	}
}

// Recovery drops a damaged unfinished record from the active index instead
// of claiming it again every lease TTL: it can never be driven.
func TestRecoveryDropsADamagedRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	damage(t, f.rdb, "m", "state", "running", "lease", "1")
	if err := f.rdb.ZAdd(ctx, ActiveKey("m"), redis.Z{Score: 1, Member: "m"}).Err(); err != nil {
		t.Fatal(err)
	}
	e := f.replica(t, "B", testLease, Options{})
	if n, err := e.recoverOnce(ctx, RecoveryOptions{}.withDefaults()); n != 0 || err != nil {
		t.Errorf("recovery resumed %d sagas (%v), want none and no error", n, err)
	}
	if err := f.rdb.ZScore(ctx, ActiveKey("m"), "m").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("the damaged record's active-index entry is still there (%v)", err)
	}
}
