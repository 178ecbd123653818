package saga

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redistest"
)

// committingSink is streamSink that also records what the store committed
// (what would go to the firehose).
type committingSink struct {
	streamSink
	mu        sync.Mutex
	committed []EventType
}

func (s *committingSink) Committed(events []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		s.committed = append(s.committed, e.Type)
	}
}

func (s *committingSink) got() []EventType {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]EventType(nil), s.committed...)
}

func TestActiveKeysShareTheirShardsSlotAndSpreadOverShards(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := range 1000 {
		k := ActiveKey("mission-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26))
		seen[k] = true
	}
	if len(seen) != ActiveShards {
		t.Errorf("1000 missions use %d shards, want all %d", len(seen), ActiveShards)
	}
	for _, k := range ActiveShardKeys() {
		if !seen[k] {
			t.Errorf("shard %s unused", k)
		}
	}
}

func TestFencedSaveCommitsNoFirehoseEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	sink := &committingSink{}
	store := NewStore(f.rdb, sink, quietLease)
	rec := createRunning(t, store, "m")
	rec.UpdatedAt = time.Now()
	if err := store.Save(t.Context(), rec, Event{Type: EventStepRetrying, MissionID: "m", Step: "a", Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if got := sink.got(); len(got) != 1 || got[0] != EventStepRetrying {
		t.Fatalf("committed = %v, want the saved event", got)
	}
	if _, err := store.claim(t.Context(), "m", "usurper", time.Now()); err != nil {
		t.Fatal(err)
	}
	rec.State, rec.EndedAt = Compensated, time.Now()
	err := store.Save(t.Context(), rec, Event{Type: EventMissionCompensated, MissionID: "m"})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("Save = %v, want ErrFenced", err)
	}
	if got := sink.got(); len(got) != 1 {
		t.Errorf("committed after a fenced save = %v, want only the first save's event", got)
	}
}

func TestRecoveryDropsAStaleEntryOnlyPastItsGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// An entry whose record was never created (the creator died between
	// its index write and its create), one lease TTL past its score: a
	// create still in flight may land until then, so recovery keeps it.
	now := time.Now().UnixMilli()
	recent := now - quietLease.Milliseconds()
	f.rdb.ZAdd(t.Context(), ActiveKey("m"), redis.Z{Score: float64(recent), Member: "m"})
	c, err := f.store.recoverClaim(t.Context(), indexEntry{key: "m", score: recent}, "B", time.Now())
	if err != nil || c != nil {
		t.Fatalf("recoverClaim = %v, %v; want nothing claimed", c, err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Fatalf("entry within its grace dropped: %v", err)
	}
	// Past the grace it goes; an entry rewritten meanwhile would not.
	old := now - 3*quietLease.Milliseconds()
	f.rdb.ZAdd(t.Context(), ActiveKey("m"), redis.Z{Score: float64(old), Member: "m"})
	if c, err := f.store.recoverClaim(t.Context(), indexEntry{key: "m", score: old - 1}, "B", time.Now()); err != nil || c != nil {
		t.Fatalf("recoverClaim = %v, %v; want nothing claimed", c, err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Fatalf("entry rewritten since recovery saw it dropped: %v", err)
	}
	if c, err := f.store.recoverClaim(t.Context(), indexEntry{key: "m", score: old}, "B", time.Now()); err != nil || c != nil {
		t.Fatalf("recoverClaim = %v, %v; want nothing claimed", c, err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("stale entry past its grace still indexed: %v", err)
	}
}

func TestCreateOrReopenPastTheIndexDeadlineIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	past := time.Now().Add(-time.Minute).UnixMilli()
	// The creator paused between its index write and its create for longer
	// than the entry's deadline: recovery may have dropped the entry, so
	// the create must not land.
	err := createScript.Run(t.Context(), f.rdb, []string{RecordKey("m")}, "1000", past, fieldVersion, schemaVersion).Err()
	if err == nil || !strings.Contains(err.Error(), errLate) {
		t.Fatalf("late create = %v, want %s", err, errLate)
	}
	if n := f.rdb.Exists(t.Context(), RecordKey("m")).Val(); n != 0 {
		t.Fatal("a late create wrote the record")
	}
	// Likewise a teardown reopened late.
	rec := fullRecord("m")
	rec.State = Completed
	if _, _, err := f.store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	err = cancelScript.Run(t.Context(), f.rdb, []string{RecordKey("m")}, "why", time.Now().UnixMilli(), 1000, past).Err()
	if err == nil || !strings.Contains(err.Error(), errLate) {
		t.Fatalf("late teardown = %v, want %s", err, errLate)
	}
	if st := f.rdb.HGet(t.Context(), RecordKey("m"), fieldState).Val(); st != string(Completed) {
		t.Errorf("state after a late teardown = %s, want completed", st)
	}
}

func TestCrashBetweenIndexAndCreateLeavesNoUnindexedSaga(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// The index write landed, the process died before the create: the
	// entry names no record, and recovery neither claims nor keeps it for
	// good.
	old := time.Now().Add(-3 * quietLease).UnixMilli()
	f.rdb.ZAdd(t.Context(), ActiveKey("gone"), redis.Z{Score: float64(old), Member: "gone"})
	e := f.engine(t, Options{})
	if n, err := e.recoverOnce(t.Context(), RecoveryOptions{}.withDefaults()); err != nil || n != 0 {
		t.Fatalf("recoverOnce = %d, %v; want nothing resumed", n, err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("gone"), "gone").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("entry of a record never created still indexed: %v", err)
	}
	// Every unfinished saga a Start creates is indexed before it exists.
	if _, _, err := e.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Errorf("started saga not indexed: %v", err)
	}
	if _, err := e.Run(t.Context(), "m"); err != nil {
		t.Fatal(err)
	}
}

func TestEndOfASagaKeepsAFresherIndexEntry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := createRunning(t, f.store, "m")
	// Another engine rewrote the entry (say, for a teardown it reopens as
	// soon as this saga completes): the end must not remove it.
	fresh := float64(time.Now().Add(time.Hour).UnixMilli() + 7)
	f.rdb.ZAdd(t.Context(), ActiveKey("m"), redis.Z{Score: fresh, Member: "m"})
	rec.State, rec.EndedAt = Completed, time.Now()
	if err := f.store.Save(context.WithoutCancel(t.Context()), rec); err != nil {
		t.Fatal(err)
	}
	if s, err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Result(); err != nil || s != fresh {
		t.Errorf("entry after the end = %v, %v; want the fresher %v kept", s, err, fresh)
	}
}

func TestFailedEndingWritePutsItsIndexEntryBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := createRunning(t, f.store, "m")
	// The ending write fails inside its script (its event cannot be
	// appended to a key of the wrong type) after the removal that rides
	// behind it in the same round trip was sent.
	if err := f.rdb.Set(t.Context(), eventsKey("m"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rec.State, rec.EndedAt = Completed, time.Now()
	err := f.store.Save(t.Context(), rec, Event{Type: EventMissionCompleted, MissionID: "m"})
	if err == nil {
		t.Fatal("Save onto a broken stream succeeded")
	}
	if st := f.rdb.HGet(t.Context(), RecordKey("m"), fieldState).Val(); st != string(Running) {
		t.Fatalf("state = %s after a failed write, want running", st)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Fatalf("unfinished saga left unindexed by a failed ending write: %v", err)
	}
	// Once the fault is gone the retried write ends it and unindexes it.
	f.rdb.Del(t.Context(), eventsKey("m"))
	if err := f.store.Save(t.Context(), rec, Event{Type: EventMissionCompleted, MissionID: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("completed saga still indexed: %v", err)
	}
}

func TestFencedEndingWriteLeavesTheNewOwnersEntry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rec := createRunning(t, f.store, "m")
	// Another process's recovery takes the saga over.
	expireLease(t, f, "m")
	other := NewStore(f.rdb, streamSink{}, quietLease)
	c, err := other.recoverClaim(t.Context(), indexEntry{key: "m", score: 1}, "B", time.Now())
	if err != nil || c == nil {
		t.Fatalf("recoverClaim = %v, %v", c, err)
	}
	rec.State, rec.EndedAt = Completed, time.Now()
	if err := f.store.Save(t.Context(), rec); !errors.Is(err, ErrFenced) {
		t.Fatalf("Save = %v, want ErrFenced", err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Errorf("the new owner's saga lost its index entry to the fenced write: %v", err)
	}
}

func TestRecoveryScanRetriesAFailedIndexRemoval(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	createRunning(t, f.store, "m")
	score := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Val()
	f.rdb.HSet(t.Context(), RecordKey("m"), fieldState, string(Completed))
	// The saga ended; its removal failed (its shard's node was down) and
	// waits in the store.
	f.store.idx.pending = append(f.store.idx.pending, indexEntry{key: "m", score: int64(score)})
	e := f.engine(t, Options{})
	if _, err := e.recoverOnce(t.Context(), RecoveryOptions{}.withDefaults()); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("entry whose removal failed still indexed after a recovery scan: %v", err)
	}
}

func TestRecoveryMovesTheUnshardedActiveSetIntoItsShards(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// A saga left running by an orchestrator of the earlier version: its
	// record has no lease, its lease expired in the one active set.
	createRunning(t, f.store, "old")
	f.rdb.HDel(t.Context(), RecordKey("old"), fieldLease)
	f.rdb.ZRem(t.Context(), ActiveKey("old"), "old")
	f.rdb.ZAdd(t.Context(), legacyActiveKey, redis.Z{Score: 1, Member: "old"})
	n, err := f.store.migrateLegacyIndex(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("migrateLegacyIndex = %d, %v; want 1 moved", n, err)
	}
	if f.rdb.Exists(t.Context(), legacyActiveKey).Val() != 0 {
		t.Error("the unsharded set is still there")
	}
	c, err := f.store.recoverClaim(t.Context(), indexEntry{key: "old", score: 1}, "B", time.Now())
	if err != nil || c == nil {
		t.Fatalf("recoverClaim of the moved saga = %v, %v; want it claimed", c, err)
	}
}

// TestRecoveryScansTheShardsThatAnswer: one shard of the active index that
// cannot be read (its Cluster node down, or a key of the wrong type) must
// not keep recovery from the sagas of the other shards.
func TestRecoveryScansTheShardsThatAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := f.replica(t, "A", testLease, Options{})
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	// A hands it off without driving it: its lease ends now.
	if n, err := a.Handoff(t.Context()); n != 1 || err != nil {
		t.Fatalf("Handoff = %d, %v; want 1", n, err)
	}
	broken := ""
	for _, k := range ActiveShardKeys() {
		if k != ActiveKey("m") {
			broken = k
			break
		}
	}
	if err := f.rdb.Set(t.Context(), broken, "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := f.replica(t, "B", testLease, Options{})
	var n int
	var err error
	await(t, "B to claim the expired saga", func() bool {
		n, err = b.recoverOnce(t.Context(), RecoveryOptions{}.withDefaults())
		return n == 1
	})
	if err == nil || !strings.Contains(err.Error(), broken) {
		t.Errorf("recoverOnce error = %v, want one naming %s", err, broken)
	}
	await(t, "the recovered saga to complete", func() bool {
		rec, err := f.store.Load(t.Context(), "m")
		return err == nil && rec.State == Completed && rec.Owner == "B"
	})
}

// TestRenewalRestoresALostIndexEntry: the index entry of a running saga is
// on another Cluster node than its record, so a failover of that node may
// lose the entry (written before the create, acknowledged, not yet
// replicated) while the record survives. The owner's renewals put it back:
// otherwise the saga is unfinished and unindexed, and no recovery would
// find it if its owner died.
func TestRenewalRestoresALostIndexEntry(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	f := newFixture(t, map[string]behaviour{"b": {act: func(_ context.Context, x *Exec) error {
		close(started)
		<-release
		return nil
	}}})
	a := f.replica(t, "A", testLease, Options{})
	t.Cleanup(unblock) // before A's Handoff, which waits for the run
	if _, _, err := a.Start(t.Context(), "m", "s", nil); err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "A to call step b")
	if err := f.rdb.ZRem(t.Context(), ActiveKey("m"), "m").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, "a renewal to index the running saga again", func() bool {
		return f.rdb.ZScore(t.Context(), ActiveKey("m"), "m").Err() == nil
	})
	unblock()
	if r := awaitRunResult(t, done); r.err != nil || r.rec.State != Completed {
		t.Fatalf("Run = %v, %v; want completed", r.rec, r.err)
	}
}

// TestEndingRestoresALostMissionIndexEntry: on a Redis Cluster the mission
// index is on another node than a saga's record, so a failover of that
// node may lose the entry the create wrote while the saga runs on (make
// chaos-cluster lost a capacity charge that way), and the mission would
// stay out of ListMissions for good. The ending write's round trip puts
// it back, at the creation time. On a
// Cluster of its own whatever the run's mode: on one Redis no failover
// loses it, and the ending sends nothing more.
func TestEndingRestoresALostMissionIndexEntry(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	f := newFixtureOn(t, redistest.StartCluster(t), map[string]behaviour{"b": {act: func(_ context.Context, x *Exec) error {
		close(started)
		<-release
		return nil
	}}})
	a := f.engine(t, Options{})
	t.Cleanup(unblock) // before the engine's Handoff, which waits for the run
	rec, _, err := a.Start(t.Context(), "m", "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := runInBackground(a, "m")
	awaitClosed(t, started, "the run to call step b")
	if err := f.rdb.ZRem(t.Context(), MissionsKey, "m").Err(); err != nil {
		t.Fatal(err)
	}
	unblock()
	if r := awaitRunResult(t, done); r.err != nil || r.rec.State != Completed {
		t.Fatalf("Run = %v, %v; want completed", r.rec, r.err)
	}
	score, err := f.rdb.ZScore(t.Context(), MissionsKey, "m").Result()
	if err != nil || int64(score) != rec.CreatedAt.UnixMilli() {
		t.Errorf("mission-index entry after the ending write: %v, %v; want the creation time %d", score, err, rec.CreatedAt.UnixMilli())
	}
	recs, _, err := f.store.List(t.Context(), "", 10)
	if err != nil || len(recs) != 1 || recs[0].Key != "m" {
		t.Errorf("List = %v, %v; want the mission", recs, err)
	}
}

// slowPipelines holds every pipeline back for a while before it is sent, as
// a process paused between building a create and sending it.
type slowPipelines struct{ d time.Duration }

func (slowPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (slowPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h slowPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		time.Sleep(h.d)
		return next(ctx, cmds)
	}
}

// A create refused as late takes back the mission-index entry it wrote, so
// that GetMission does not call a mission never created expired (found by
// a review: 158 such entries after one chaos run, each for the retention).
func TestLateCreateTakesBackItsMissionIndexEntry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	rdb := f.srv.Universal(t)
	rdb.AddHook(slowPipelines{d: 150 * time.Millisecond})
	store := NewStore(rdb, streamSink{}, 30*time.Millisecond)
	rec := fullRecord("late")
	rec.State = Running
	_, _, err := store.Create(t.Context(), rec)
	if !errors.Is(err, ErrLate) {
		t.Fatalf("create held back past its deadline = %v, want ErrLate", err)
	}
	if err := f.rdb.ZScore(t.Context(), MissionsKey, "late").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("the refused create's mission is still in the mission index (%v)", err)
	}
	if vanished, err := store.Vanished(t.Context(), "late"); err != nil || vanished {
		t.Errorf("Vanished = %v, %v; want a mission never created, not an expired one", vanished, err)
	}
}
