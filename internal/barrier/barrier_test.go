package barrier

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// business is a fake service effect: a counter per mission that the action
// increments and the compensation decrements, so "effect left behind" and
// "effect twice" are both visible in its value.
type business struct {
	rdb   redis.UniversalClient
	b     *Barrier
	calls atomic.Int32 // callback invocations
}

func newBusiness(t *testing.T) *business {
	t.Helper()
	rdb := redistest.Start(t).Universal(t)
	return &business{rdb: rdb, b: New(rdb)}
}

// eachCommit runs test on a business whose barrier commits alone and on one
// whose barrier commits through a group commit: concurrent calls then share
// round trips, and the guarantees must not change.
func eachCommit(t *testing.T, test func(t *testing.T, s *business)) {
	t.Run("alone", func(t *testing.T) { test(t, newBusiness(t)) })
	t.Run("group commit", func(t *testing.T) {
		rdb := redistest.Start(t).Universal(t)
		g := groupcommit.New(rdb, groupcommit.Options{})
		test(t, &business{rdb: rdb, b: New(rdb, WithGroupCommit(g))})
	})
}

func counterKey(key string) string { return "slammesh:{" + key + "}:counter" }

// sameSlot returns n mission ids whose keys share one Redis Cluster slot
// (CRC16 of the hash tag mod 16384, as Redis Cluster computes it), so that
// a test may have several missions write one shared key on a cluster too.
func sameSlot(n int) []string {
	var ids []string
	want := -1
	for i := 0; len(ids) < n; i++ {
		id := "m" + strconv.Itoa(i)
		slot := int(crc16(id) % 16384)
		if want < 0 {
			want = slot
		}
		if slot == want {
			ids = append(ids, id)
		}
	}
	return ids
}

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func (s *business) action(ctx context.Context, id ID, result string) ([]byte, Outcome, error) {
	return s.b.Action(ctx, id, func(ctx context.Context, tx *Tx) ([]byte, error) {
		s.calls.Add(1)
		tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey(id.Key)) })
		return []byte(result), nil
	})
}

// compensate undoes the action and records the result it was handed.
func (s *business) compensate(ctx context.Context, id ID, got *[]byte) (Outcome, error) {
	return s.b.Compensate(ctx, id, func(ctx context.Context, tx *Tx, res []byte) error {
		s.calls.Add(1)
		*got = res
		tx.Write(func(p redis.Pipeliner) { p.Decr(ctx, counterKey(id.Key)) })
		return nil
	})
}

func (s *business) counter(t *testing.T, key string) int64 {
	t.Helper()
	n, err := s.rdb.Get(t.Context(), counterKey(key)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *business) effects(t *testing.T, key string) map[string]int64 {
	t.Helper()
	e, err := s.b.Effects(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFaults(t *testing.T) {
	t.Parallel()
	type call struct {
		op      string // "action" or "compensate"
		outcome Outcome
		err     error
	}
	tests := []struct {
		name    string
		calls   []call
		counter int64
		effects map[string]int64
		ran     int32
		// fields is what the barrier hash holds at the end: a compensated
		// action's result is gone, its marks stay.
		fields []string
	}{
		{
			name:    "duplicate action returns the first result, no second effect",
			calls:   []call{{"action", Applied, nil}, {"action", Duplicate, nil}, {"action", Duplicate, nil}},
			counter: 1,
			effects: map[string]int64{"step:action": 1},
			ran:     1,
			fields:  []string{"action", "result", "saga"},
		},
		{
			name:    "null compensation does nothing and forbids the action",
			calls:   []call{{"compensate", Null, nil}, {"action", 0, ErrActionForbidden}, {"compensate", Duplicate, nil}},
			counter: 0,
			effects: map[string]int64{},
			ran:     0,
			fields:  []string{"compensation", "saga"},
		},
		{
			name:    "hanging action after a compensation is rejected",
			calls:   []call{{"action", Applied, nil}, {"compensate", Applied, nil}, {"action", 0, ErrActionForbidden}},
			counter: 0,
			effects: map[string]int64{"step:action": 1, "step:compensation": 1},
			ran:     2,
			fields:  []string{"action", "compensation", "saga"},
		},
		{
			name:    "compensation twice undoes once",
			calls:   []call{{"action", Applied, nil}, {"compensate", Applied, nil}, {"compensate", Duplicate, nil}},
			counter: 0,
			effects: map[string]int64{"step:action": 1, "step:compensation": 1},
			ran:     2,
			fields:  []string{"action", "compensation", "saga"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBusiness(t)
			id := ID{Key: "m", SagaID: "s", Step: "step"}
			for i, c := range tt.calls {
				var outcome Outcome
				var err error
				switch c.op {
				case "action":
					var res []byte
					// Each attempt offers a different result: a duplicate must
					// get the first one back.
					res, outcome, err = s.action(t.Context(), id, "result-"+strconv.Itoa(i))
					if err == nil && string(res) != "result-0" {
						t.Errorf("call %d: action result %q, want the first one, result-0", i, res)
					}
				case "compensate":
					var got []byte
					outcome, err = s.compensate(t.Context(), id, &got)
					if outcome == Applied && string(got) != "result-0" {
						t.Errorf("call %d: compensation was handed %q, want the action's result-0", i, got)
					}
				}
				if !errors.Is(err, c.err) || outcome != c.outcome {
					t.Errorf("call %d %s = %v, %v; want %v, %v", i, c.op, outcome, err, c.outcome, c.err)
				}
			}
			if n := s.counter(t, "m"); n != tt.counter {
				t.Errorf("business counter = %d, want %d", n, tt.counter)
			}
			if e := s.effects(t, "m"); !maps.Equal(e, tt.effects) {
				t.Errorf("effects = %v, want %v", e, tt.effects)
			}
			if n := s.calls.Load(); n != tt.ran {
				t.Errorf("business callbacks ran %d times, want %d", n, tt.ran)
			}
			fields, err := s.rdb.HKeys(t.Context(), Key("m", "step")).Result()
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(fields); !slices.Equal(fields, tt.fields) {
				t.Errorf("barrier fields = %v, want %v", fields, tt.fields)
			}
			// Marks must outlive any call that could still arrive.
			if ttl := s.rdb.TTL(t.Context(), Key("m", "step")).Val(); ttl != -1 {
				t.Errorf("barrier TTL = %v, want none", ttl)
			}
		})
	}
}

func TestFailedCallbackWritesNothing(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	id := ID{Key: "m", SagaID: "s", Step: "step"}
	errBusiness := errors.New("insufficient overlap")
	_, _, err := s.b.Action(t.Context(), id, func(ctx context.Context, tx *Tx) ([]byte, error) {
		tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey("m")) })
		return nil, errBusiness
	})
	if !errors.Is(err, errBusiness) {
		t.Fatalf("Action = %v, want the callback's error", err)
	}
	if n := s.rdb.Exists(t.Context(), Key("m", "step"), counterKey("m"), EffectsKey("m")).Val(); n != 0 {
		t.Fatalf("a failed action wrote %d keys", n)
	}
	// Not marked: a retry may still act.
	if _, outcome, err := s.action(t.Context(), id, "ok"); err != nil || outcome != Applied {
		t.Fatalf("retry = %v, %v; want applied", outcome, err)
	}
	_, err = s.b.Compensate(t.Context(), id, func(context.Context, *Tx, []byte) error { return errBusiness })
	if !errors.Is(err, errBusiness) {
		t.Fatalf("Compensate = %v, want the callback's error", err)
	}
	var got []byte
	if outcome, err := s.compensate(t.Context(), id, &got); err != nil || outcome != Applied {
		t.Fatalf("compensation retry = %v, %v; want applied", outcome, err)
	}
	if n := s.counter(t, "m"); n != 0 {
		t.Errorf("business counter = %d, want 0", n)
	}
}

func TestConcurrentDuplicateActionsHaveOneEffect(t *testing.T) {
	t.Parallel()
	eachCommit(t, func(t *testing.T, s *business) {
		id := ID{Key: "m", SagaID: "s", Step: "step"}
		const n = 50
		results := make([]string, n)
		outcomes := make([]Outcome, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, outcome, err := s.action(t.Context(), id, "result-"+strconv.Itoa(i))
				if err != nil {
					t.Errorf("action %d: %v", i, err)
				}
				results[i], outcomes[i] = string(res), outcome
			})
		}
		wg.Wait()
		applied := 0
		for i := range n {
			if outcomes[i] == Applied {
				applied++
			}
			if results[i] != results[0] {
				t.Errorf("action %d got %q, action 0 got %q: want one result for all", i, results[i], results[0])
			}
		}
		if applied != 1 {
			t.Errorf("%d actions applied, want 1", applied)
		}
		if e := s.effects(t, "m"); e["step:action"] != 1 {
			t.Errorf("effects = %v, want one action", e)
		}
		if c := s.counter(t, "m"); c != 1 {
			t.Errorf("business counter = %d, want 1", c)
		}
	})
}

func TestCompensationRacingItsAction(t *testing.T) {
	t.Parallel()
	eachCommit(t, func(t *testing.T, s *business) {
		const rounds = 200
		var histories [2]int // [0]: action then undo, [1]: null compensation then forbidden
		for r := range rounds {
			key := "m" + strconv.Itoa(r)
			id := ID{Key: key, SagaID: "s", Step: "step"}
			var (
				wg                sync.WaitGroup
				actOut, compOut   Outcome
				actErr, compErr   error
				compensatedResult []byte
			)
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				_, actOut, actErr = s.action(t.Context(), id, "r")
			})
			wg.Go(func() {
				<-start
				compOut, compErr = s.compensate(t.Context(), id, &compensatedResult)
			})
			close(start)
			wg.Wait()
			if compErr != nil {
				t.Fatalf("round %d: compensation: %v", r, compErr)
			}
			effects := s.effects(t, key)
			switch {
			case actErr == nil && actOut == Applied && compOut == Applied:
				histories[0]++
				if !maps.Equal(effects, map[string]int64{"step:action": 1, "step:compensation": 1}) {
					t.Errorf("round %d: action then compensation, effects %v", r, effects)
				}
			case errors.Is(actErr, ErrActionForbidden) && compOut == Null:
				histories[1]++
				if len(effects) != 0 {
					t.Errorf("round %d: null compensation then forbidden action, effects %v", r, effects)
				}
			default:
				t.Errorf("round %d: impossible history: action %v %v, compensation %v", r, actOut, actErr, compOut)
			}
			if c := s.counter(t, key); c != 0 {
				t.Errorf("round %d: effect left behind: counter %d (action %v %v, compensation %v)", r, c, actOut, actErr, compOut)
			}
		}
		t.Logf("histories over %d rounds: action-then-undo %d, null-then-forbidden %d", rounds, histories[0], histories[1])
	})
}

// TestWatchedBusinessKeyKeepsABudget: many missions allocate from one
// capacity counter; the check (a precondition on the value read) and the
// increment must not interleave. (The missions are chosen in the counter's
// Redis Cluster slot, so that this runs on a cluster too; the mapping
// service, whose counter is global, reserves capacity in a script of its
// own instead, internal/mapstore.)
func TestWatchedBusinessKeyKeepsABudget(t *testing.T) {
	t.Parallel()
	eachCommit(t, func(t *testing.T, s *business) {
		const (
			budget   = 100
			cells    = 10
			missions = 25
		)
		ids := sameSlot(missions)
		capacityKey := "slammesh:{" + ids[0] + "}:capacity"
		errFull := errors.New("capacity exhausted")
		var wg sync.WaitGroup
		var granted, refused atomic.Int32
		for i := range missions {
			wg.Go(func() {
				id := ID{Key: ids[i], SagaID: "s", Step: "allocate_map"}
				_, _, err := s.b.Action(t.Context(), id, func(ctx context.Context, tx *Tx) ([]byte, error) {
					raw, err := tx.Reader().Get(ctx, capacityKey).Result()
					switch {
					case errors.Is(err, redis.Nil):
						tx.ExpectMissing(capacityKey, "")
					case err != nil:
						return nil, err
					default:
						tx.Expect(capacityKey, "", raw)
					}
					used, _ := strconv.Atoi(raw)
					if used+cells > budget {
						return nil, errFull
					}
					tx.Write(func(p redis.Pipeliner) { p.IncrBy(ctx, capacityKey, cells) })
					return nil, nil
				})
				switch {
				case err == nil:
					granted.Add(1)
				case errors.Is(err, errFull):
					refused.Add(1)
				default:
					t.Errorf("mission %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		used, err := s.rdb.Get(t.Context(), capacityKey).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if used != budget || granted.Load() != budget/cells || refused.Load() != missions-budget/cells {
			t.Errorf("capacity used %d, granted %d, refused %d; want %d, %d, %d",
				used, granted.Load(), refused.Load(), budget, budget/cells, missions-budget/cells)
		}
	})
}

func TestIDChecks(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	if _, _, err := s.action(t.Context(), ID{Key: "m", SagaID: "s1", Step: "step"}, "r"); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if _, err := s.compensate(t.Context(), ID{Key: "m", SagaID: "s2", Step: "step"}, &got); !errors.Is(err, ErrSagaMismatch) {
		t.Errorf("compensation by another saga: %v, want ErrSagaMismatch", err)
	}
	for _, id := range []ID{{SagaID: "s", Step: "x"}, {Key: "m", Step: "x"}, {Key: "m", SagaID: "s"}, {Key: "a{b}", SagaID: "s", Step: "x"}} {
		if _, _, err := s.action(t.Context(), id, "r"); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Action(%+v) = %v, want ErrInvalidID", id, err)
		}
	}
	if n := s.counter(t, "m"); n != 1 {
		t.Errorf("business counter = %d, want 1", n)
	}
}

// Commands carried with a commit go out in its pipeline whatever the
// commit answers, also when Redis had to be given the script again.
func TestCarriedCommandsRideWithTheCommit(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	ctx := t.Context()
	id := ID{Key: "m", SagaID: "s", Step: "step"}
	carried := 0
	commit := func() Outcome {
		t.Helper()
		tx := s.b.NewTx()
		tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey("m")) })
		tx.Carry(func(p redis.Pipeliner) func() {
			p.Incr(ctx, "slammesh:carried")
			return func() { carried++ }
		})
		_, outcome, err := s.b.Commit(ctx, id, tx, []byte("r"))
		if err != nil {
			t.Fatal(err)
		}
		return outcome
	}
	if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if out := commit(); out != Applied {
		t.Errorf("first commit after SCRIPT FLUSH: %v, want applied", out)
	}
	if out := commit(); out != Duplicate {
		t.Errorf("second commit: %v, want duplicate", out)
	}
	if n, _ := s.rdb.Get(ctx, "slammesh:carried").Int(); n != 2 || carried != 2 {
		t.Errorf("carried commands ran %d times, done called %d times; want 2, 2", n, carried)
	}
	if n := s.counter(t, "m"); n != 1 {
		t.Errorf("business counter = %d, want 1", n)
	}
}

// A plan whose commit failed before it reached Redis commits whole when
// it is committed again: its writes and announcements are still there.
func TestFailedCommitKeepsItsPlan(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	ctx := t.Context()
	id := ID{Key: "m", SagaID: "s", Step: "step"}
	tx := s.b.NewTx()
	tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey("m")) })
	tx.Announce(func(p redis.Pipeliner) { p.Incr(ctx, "slammesh:{m}:announced") })
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.b.Commit(gone, id, tx, []byte("r")); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit on a cancelled context: %v, want context.Canceled", err)
	}
	if _, out, err := s.b.Commit(ctx, id, tx, []byte("r")); err != nil || out != Applied {
		t.Fatalf("second commit = %v, %v; want applied", out, err)
	}
	if n := s.counter(t, "m"); n != 1 {
		t.Errorf("business counter = %d, want 1", n)
	}
	if n, _ := s.rdb.Get(ctx, "slammesh:{m}:announced").Int(); n != 1 {
		t.Errorf("announcement ran %d times, want 1", n)
	}
}

// TestRepeatedExpectationIsCheckedOnce: a precondition stated twice is sent
// to the script once, and the commit applies when it holds; a second
// precondition on the same field with another value stays, so the commit
// goes stale.
func TestRepeatedExpectationIsCheckedOnce(t *testing.T) {
	t.Parallel()
	bz := newBusiness(t)
	ctx := context.Background()
	key := "slammesh:{m-exp}:map"
	if err := bz.rdb.HSet(ctx, key, "map_id", "map-1").Err(); err != nil {
		t.Fatal(err)
	}
	tx := bz.b.NewTx()
	tx.Expect(key, "map_id", "map-1")
	tx.Expect(key, "map_id", "map-1")
	tx.ExpectMissing(key, "gone")
	tx.ExpectMissing(key, "gone")
	if len(tx.expects) != 2 {
		t.Fatalf("%d preconditions, want 2: %+v", len(tx.expects), tx.expects)
	}
	tx.Write(func(p redis.Pipeliner) { p.HSet(ctx, key, "v2", "x") })
	if _, outcome, err := bz.b.Commit(ctx, ID{Key: "m-exp", SagaID: "s1", Step: "merge"}, tx, nil); err != nil || outcome != Applied {
		t.Fatalf("commit = %v, %v; want applied", outcome, err)
	}

	tx = bz.b.NewTx()
	tx.Expect(key, "map_id", "map-1")
	tx.Expect(key, "map_id", "map-2")
	if _, _, err := bz.b.Commit(ctx, ID{Key: "m-exp", SagaID: "s1", Step: "other"}, tx, nil); !errors.Is(err, ErrStale) {
		t.Fatalf("commit with contradicting preconditions = %v, want ErrStale", err)
	}
}

// TestPreconditionsReadEachHashOnce: preconditions on two hashes and a
// string key commit when every one holds and go stale (writing nothing)
// when any one does not; the script reads each run of fields stated one
// after another on a hash with one HMGET, the string with one GET, and
// checks in the order stated, so a read that fails after a broken
// precondition is not reached.
func TestPreconditionsReadEachHashOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.StartServer(t).Client(t)
	b := New(rdb)
	ctx := context.Background()
	mapKey, locKey, strKey := "slammesh:{m-hm}:map", "slammesh:{m-hm}:localization", "slammesh:{m-hm}:capacity"
	if err := rdb.HSet(ctx, mapKey, "map_id", "map-1", "current", "2", "meta", "m").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, locKey, "anchor", "a1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, strKey, "7", 0).Err(); err != nil {
		t.Fatal(err)
	}
	type pre struct {
		key, field, value string
		present           bool
	}
	holding := []pre{
		{mapKey, "map_id", "map-1", true},
		{mapKey, "current", "2", true},
		{strKey, "", "7", true},
		{locKey, "anchor", "a1", true},
		{mapKey, "gone", "", false},
		{mapKey, "meta", "m", true},
	}
	plan := func(pres []pre) *Tx {
		tx := b.NewTx()
		for _, p := range pres {
			if p.present {
				tx.Expect(p.key, p.field, p.value)
			} else {
				tx.ExpectMissing(p.key, p.field)
			}
		}
		tx.Write(func(p redis.Pipeliner) { p.HIncrBy(ctx, mapKey, "writes", 1) })
		return tx
	}
	for i := range holding {
		broken := slices.Clone(holding)
		if broken[i].present {
			broken[i].value += "x"
		} else {
			broken[i].field = "map_id"
		}
		step := "broken-" + strconv.Itoa(i)
		if _, _, err := b.Commit(ctx, ID{Key: "m-hm", SagaID: "s1", Step: step}, plan(broken), nil); !errors.Is(err, ErrStale) {
			t.Errorf("precondition %d (%+v) broken: commit = %v, want ErrStale", i, holding[i], err)
		}
	}
	if n, _ := rdb.HGet(ctx, mapKey, "writes").Int(); n != 0 {
		t.Fatalf("stale commits wrote %d times", n)
	}

	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, outcome, err := b.Commit(ctx, ID{Key: "m-hm", SagaID: "s1", Step: "merge"}, plan(holding), nil); err != nil || outcome != Applied {
		t.Fatalf("commit = %v, %v; want applied", outcome, err)
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := func(cmd string) int {
		_, rest, ok := strings.Cut(stats, "cmdstat_"+cmd+":calls=")
		if !ok {
			return 0
		}
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		return n
	}
	// One HMGET reads the barrier's marks, one each run of hash fields.
	if hm, hg, g := calls("hmget"), calls("hget"), calls("get"); hm != 4 || hg != 0 || g != 1 {
		t.Errorf("the commit read with %d HMGET, %d HGET, %d GET; want 4, 0, 1", hm, hg, g)
	}

	// The string key read as a hash (WRONGTYPE) fails the commit when it
	// comes before the broken precondition on current, and the commit is
	// stale when it comes after: as when each field was read alone.
	tx := b.NewTx()
	tx.Expect(mapKey, "map_id", "map-1")
	tx.Expect(strKey, "field", "x")
	tx.Expect(mapKey, "current", "3")
	if _, _, err := b.Commit(ctx, ID{Key: "m-hm", SagaID: "s1", Step: "order-1"}, tx, nil); err == nil || errors.Is(err, ErrStale) {
		t.Errorf("a string key read as a hash before a broken precondition: commit = %v, want the WRONGTYPE error", err)
	}
	tx = b.NewTx()
	tx.Expect(mapKey, "current", "3")
	tx.Expect(strKey, "field", "x")
	if _, _, err := b.Commit(ctx, ID{Key: "m-hm", SagaID: "s1", Step: "order-2"}, tx, nil); !errors.Is(err, ErrStale) {
		t.Errorf("a broken precondition before a string key read as a hash: commit = %v, want ErrStale", err)
	}

	// More fields on one hash than Lua's unpack takes at once.
	tx = b.NewTx()
	for i := range 9000 {
		tx.ExpectMissing(locKey, "f"+strconv.Itoa(i))
	}
	if _, outcome, err := b.Commit(ctx, ID{Key: "m-hm", SagaID: "s1", Step: "many"}, tx, nil); err != nil || outcome != Applied {
		t.Errorf("9,000 preconditions on one hash: commit = %v, %v; want applied", outcome, err)
	}
}

// resendFirst sends the first call of stepScript twice, as go-redis does
// when the reply of a call that landed times out (a Redis stall beyond the
// read timeout): the caller gets the second reply.
type resendFirst struct{ done atomic.Bool }

func isStepCall(cmd redis.Cmder) bool {
	args := cmd.Args()
	return cmd.Name() == "evalsha" && len(args) > 1 && args[1] == stepScript.Hash()
}

func (h *resendFirst) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *resendFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isStepCall(cmd) && h.done.CompareAndSwap(false, true) {
			_ = next(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}

func (h *resendFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, isStepCall) && h.done.CompareAndSwap(false, true) {
			_ = next(ctx, cmds)
		}
		return next(ctx, cmds)
	}
}

// TestResentCommitAnnouncesOnce: a commit that go-redis sends twice writes
// its announcements (the step's events) once, and is answered as the
// duplicate of itself; a later call of the step announces again.
func TestResentCommitAnnouncesOnce(t *testing.T) {
	t.Parallel()
	eachCommit(t, func(t *testing.T, s *business) {
		ctx := t.Context()
		if err := stepScript.Load(ctx, s.rdb).Err(); err != nil { // no NOSCRIPT round
			t.Fatal(err)
		}
		s.rdb.AddHook(&resendFirst{})
		id := ID{Key: "m", SagaID: "s", Step: "step"}
		stream := "slammesh:{m}:events"
		commit := func() Outcome {
			t.Helper()
			tx := s.b.NewTx()
			tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey("m")) })
			tx.Announce(func(p redis.Pipeliner) {
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "step.completed"}})
			})
			res, outcome, err := s.b.Commit(ctx, id, tx, []byte("r"))
			if err != nil || string(res) != "r" {
				t.Fatalf("Commit = %q, %v", res, err)
			}
			return outcome
		}
		if out := commit(); out != Duplicate {
			t.Errorf("resent commit answered %v, want duplicate (of its first send)", out)
		}
		if n := s.rdb.XLen(ctx, stream).Val(); n != 1 {
			t.Errorf("events after the resent commit: %d, want 1", n)
		}
		if out := commit(); out != Duplicate {
			t.Errorf("second call: %v, want duplicate", out)
		}
		if n := s.rdb.XLen(ctx, stream).Val(); n != 2 {
			t.Errorf("events after a second call: %d, want 2", n)
		}
		if n := s.counter(t, "m"); n != 1 {
			t.Errorf("business counter = %d, want 1", n)
		}
	})
}

// replayFirst records the first call of stepScript, to send it again later
// by hand: the copy go-redis sent after a timeout, run by Redis only after
// a later call of the step (the orchestrator's retry).
type replayFirst struct {
	mu   sync.Mutex
	args []any
}

func (h *replayFirst) keep(cmd redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.args == nil && isStepCall(cmd) {
		h.args = slices.Clone(cmd.Args())
	}
}

func (h *replayFirst) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *replayFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.keep(cmd)
		return next(ctx, cmd)
	}
}

func (h *replayFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.keep(c)
		}
		return next(ctx, cmds)
	}
}

// TestLateResentCommitAnnouncesOnce: the copy of a commit that Redis runs
// after a later call of the step (which announced its own events) finds its
// token among the barrier's and announces nothing.
func TestLateResentCommitAnnouncesOnce(t *testing.T) {
	t.Parallel()
	eachCommit(t, func(t *testing.T, s *business) {
		ctx := t.Context()
		if err := stepScript.Load(ctx, s.rdb).Err(); err != nil { // no NOSCRIPT round
			t.Fatal(err)
		}
		h := &replayFirst{}
		s.rdb.AddHook(h)
		id := ID{Key: "m", SagaID: "s", Step: "step"}
		stream := "slammesh:{m}:events"
		commit := func() {
			t.Helper()
			tx := s.b.NewTx()
			tx.Write(func(p redis.Pipeliner) { p.Incr(ctx, counterKey("m")) })
			tx.Announce(func(p redis.Pipeliner) {
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "step.completed"}})
			})
			if _, _, err := s.b.Commit(ctx, id, tx, []byte("r")); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		}
		commit() // applied: 1 event
		for range 3 {
			commit() // later calls, duplicates that announce: 1 event each
		}
		h.mu.Lock()
		first := h.args
		h.mu.Unlock()
		if err := s.rdb.Do(ctx, first...).Err(); err != nil {
			t.Fatalf("the first commit sent again: %v", err)
		}
		if n := s.rdb.XLen(ctx, stream).Val(); n != 4 {
			t.Errorf("events after the first commit's late copy: %d, want 4 (one per call)", n)
		}
		if n := s.counter(t, "m"); n != 1 {
			t.Errorf("business counter = %d, want 1", n)
		}
		// The barrier keeps the tokens of the last 8 calls that announced.
		for range 8 {
			commit()
		}
		if calls := strings.Fields(s.rdb.HGet(ctx, Key("m", "step"), "call").Val()); len(calls) != 8 {
			t.Errorf("the barrier holds %d call tokens, want the last 8", len(calls))
		}
	})
}
