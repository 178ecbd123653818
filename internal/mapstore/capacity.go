package mapstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The capacity accounting of the mapping service. Its keys are global, and
// share one Redis Cluster slot through the hash tag {mapping}; like every
// key of slammesh they start with "slammesh:", so one ACL key pattern
// (~slammesh:*) covers them (docs/security.md).
//
//	slammesh:{mapping}:capacity          cells of every map held (in flight and retained)
//	slammesh:{mapping}:maps              sorted set: charge -> cells of its map, every map held
//	slammesh:{mapping}:retained          sorted set: charge -> unix ms its map was retained
//	slammesh:{mapping}:retained-cells    cells of the retained maps
//	slammesh:{mapping}:reserved          sorted set: charge -> unix ms of a charge whose map
//	                                     the janitor has not yet seen
//
// A charge is the map of one saga of a mission (Charge, "<mission>/<saga>"
// in the sorted sets), not of the mission id alone: a mission deleted and
// started again under the same id runs another saga, and a late write about
// the first one's map (the janitor dropping the charge of a map it found
// gone, a late or refused allocation, a release) must not uncharge the
// second one's.
//
// A map is charged before it is created, by a reservation (Reserve): one
// script on these keys checks the in-flight budget and charges the saga's
// map, once (the sorted set of maps held is the guard, so a retry or a
// concurrent attempt of the same saga charges nothing more). Only then
// does the allocation's barrier script, on the mission's own slot, create
// the map: on a Redis Cluster the two are in different slots and cannot
// commit together. So a charge may exist without its map, for three
// reasons, each settled:
//   - the barrier answered the allocation "forbidden" (the step was
//     compensated first), or refused it (the mission has ended, or belongs
//     to another saga) while the mission holds no map of this saga: the
//     allocation drops the charge right away;
//   - the process died, or the barrier call failed, in between: the charge
//     stays marked reserved, and the mapping janitor drops it once it is
//     older than a grace period (longer than an attempt) and the step's
//     barrier has no action mark — the map never appeared — or at once
//     when the saga's record is gone and the barrier checks it
//     (services/mapping's janitor);
//   - the map appeared and is gone since (released, evicted, expired with
//     its mission, or replaced by another saga's): dropped as before (Drop,
//     by the release or the janitor).
//
// A duplicate allocation keeps the charge: it is the saga's one charge,
// for the map the first attempt created. The map is in flight until its
// mission completes; the mapping janitor then retains it (Retain): its cells
// leave the in-flight budget for the retained budget, where the oldest are
// evicted when that budget is full. The janitor also clears the reserved
// mark of a charge whose map it finds (Confirm). The sorted set of every
// map held is what the counters are checked against and recomputed from
// (Recount): a counter is never trusted blindly.
const (
	// CapacityKey counts the cells of every map held.
	CapacityKey      = "slammesh:{mapping}:capacity"
	mapsKey          = "slammesh:{mapping}:maps"
	retainedKey      = "slammesh:{mapping}:retained"
	retainedCellsKey = "slammesh:{mapping}:retained-cells"
	reservedKey      = "slammesh:{mapping}:reserved"
)

// ErrCorrupt says the capacity counters contradict themselves (a negative
// count, more cells retained than held): Recount repairs them.
var ErrCorrupt = errors.New("mapstore: capacity counters are inconsistent")

// Usage is the state of the capacity budgets, in cells.
type Usage struct {
	// Held counts the cells of every map held; Retained those of finished
	// missions' maps.
	Held, Retained int64
}

// InFlight is the cells of the maps of missions not finished.
func (u Usage) InFlight() int64 { return u.Held - u.Retained }

// usageKeys are the keys ReadUsage reads.
var usageKeys = []string{CapacityKey, retainedCellsKey}

// ReadUsage reads the counters; ErrCorrupt (wrapped, with the values) when
// they contradict themselves.
func ReadUsage(ctx context.Context, r redis.Cmdable) (Usage, error) {
	vals, err := r.MGet(ctx, usageKeys...).Result()
	if err != nil {
		return Usage{}, fmt.Errorf("read capacity: %w", err)
	}
	var u Usage
	for i, dst := range []*int64{&u.Held, &u.Retained} {
		s, _ := vals[i].(string)
		if s == "" {
			continue
		}
		if *dst, err = strconv.ParseInt(s, 10, 64); err != nil {
			return u, fmt.Errorf("%w: %s = %q", ErrCorrupt, usageKeys[i], s)
		}
	}
	if u.Held < 0 || u.Retained < 0 || u.Retained > u.Held {
		return u, fmt.Errorf("%w: %s = %d, %s = %d", ErrCorrupt, CapacityKey, u.Held, retainedCellsKey, u.Retained)
	}
	return u, nil
}

// reserveScript checks the in-flight budget and charges a saga's map,
// once. KEYS: accountKeys. ARGV[1] the charge's member, ARGV[2] cells, ARGV[3] the
// in-flight budget, ARGV[4] unix ms. Returns {code, cells left in flight}:
// code 1 charged now, 0 charged already (nothing done), -1 the counters are
// corrupt, -2 the budget is full (nothing done).
var reserveScript = redis.NewScript(`
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
local ret = tonumber(redis.call('GET', KEYS[4]) or '0')
if not held or not ret or held < 0 or ret < 0 or ret > held then return {-1, 0} end
local budget, cells = tonumber(ARGV[3]), tonumber(ARGV[2])
local inflight = held - ret
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {0, math.max(budget - inflight, 0)} end
if inflight > budget or cells > budget - inflight then return {-2, math.max(budget - inflight, 0)} end
redis.call('ZADD', KEYS[2], cells, ARGV[1])
redis.call('INCRBY', KEYS[1], cells)
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
return {1, budget - inflight - cells}
`)

// ErrFull is Reserve's answer when the map does not fit in the in-flight
// budget; Reservation.Left says how many cells do.
var ErrFull = errors.New("mapstore: the in-flight capacity budget is full")

// Reservation is the answer of Reserve.
type Reservation struct {
	// New is true when this call charged the map, false when the mission
	// was charged already (a retry, or a concurrent attempt).
	New bool
	// Left is the cells left in the in-flight budget after the charge (for
	// ErrFull: before it).
	Left uint64
}

// Reserve charges the map of c, cells, against the in-flight budget
// capacity (cells), at time at, once: a saga charged already is charged
// nothing more. ErrFull when the map does not fit (nothing charged),
// ErrCorrupt when the counters contradict themselves.
func Reserve(ctx context.Context, rdb redis.Scripter, c Charge, cells, capacity uint64, at time.Time) (Reservation, error) {
	v, err := reserveScript.Run(ctx, rdb, accountKeys, c.member(), cells, capacity, at.UnixMilli()).Int64Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("answer %v", v)
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve %s: %w", c, err)
	}
	r := Reservation{New: v[0] == 1, Left: uint64(max(v[1], 0))}
	switch v[0] {
	case -1:
		return r, fmt.Errorf("reserve %s: %w", c, ErrCorrupt)
	case -2:
		return r, fmt.Errorf("reserve %s (%d cells, %d left): %w", c, cells, r.Left, ErrFull)
	}
	return r, nil
}

// Confirm clears the reserved mark of charge c, once its map was seen (a
// repeat does nothing).
func Confirm(ctx context.Context, rdb redis.Cmdable, c Charge) error {
	if err := rdb.ZRem(ctx, reservedKey, c.member()).Err(); err != nil {
		return fmt.Errorf("confirm %s: %w", c, err)
	}
	return nil
}

// dropScript uncharges a saga's map, once: the sorted set of maps held is
// the guard, so a repeated or concurrent Drop changes nothing.
// KEYS: accountKeys. ARGV[1] the charge's member.
// Returns the cells uncharged (0 when the map was not charged).
var dropScript = redis.NewScript(`
redis.call('ZREM', KEYS[5], ARGV[1])
local c = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not c then return 0 end
c = tonumber(c)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DECRBY', KEYS[1], c)
if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then
  redis.call('DECRBY', KEYS[4], c)
end
return c
`)

// retainScript moves a charged map from the in-flight budget to the
// retained one, once (ZADD NX is the guard). KEYS as dropScript; ARGV[1]
// the charge's member, ARGV[2] unix ms. Returns the cells retained (0: not charged, or
// retained already).
var retainScript = redis.NewScript(`
local c = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not c then return 0 end
if redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[4], tonumber(c))
return tonumber(c)
`)

// recountScript recomputes both counters from the sorted set of maps held,
// and drops retained and reserved entries of maps not held: idempotent, and correct
// whatever the counters said. KEYS as dropScript. Returns {held, retained}.
var recountScript = redis.NewScript(`
local held, retained = 0, 0
local maps = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #maps, 2 do held = held + tonumber(maps[i + 1]) end
local ret = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, m in ipairs(ret) do
  local c = redis.call('ZSCORE', KEYS[2], m)
  if c then retained = retained + tonumber(c) else redis.call('ZREM', KEYS[3], m) end
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[2], m) then redis.call('ZREM', KEYS[5], m) end
end
redis.call('SET', KEYS[1], held)
redis.call('SET', KEYS[4], retained)
return {held, retained}
`)

// accountKeys are the keys of every accounting script, in this order.
var accountKeys = []string{CapacityKey, mapsKey, retainedKey, retainedCellsKey, reservedKey}

// Scripts returns the Lua scripts of the package, for a test that runs every
// script against a Redis Cluster (each touches keys of one slot).
func Scripts() []*redis.Script {
	return []*redis.Script{reserveScript, dropScript, retainScript, recountScript, loadScript, evictScript}
}

// Drop uncharges the map of c; call it once the map is deleted (a repeat
// does nothing). It returns the cells uncharged.
func Drop(ctx context.Context, rdb redis.Cmdable, c Charge) (int64, error) {
	n, err := dropScript.Run(ctx, rdb, accountKeys, c.member()).Int64()
	if err != nil {
		return 0, fmt.Errorf("uncharge %s: %w", c, err)
	}
	return n, nil
}

// Retain moves the charged map of c to the retained budget at time at (a
// repeat does nothing). It returns the cells retained by this call.
func Retain(ctx context.Context, rdb redis.Cmdable, c Charge, at time.Time) (int64, error) {
	n, err := retainScript.Run(ctx, rdb, accountKeys, c.member(), at.UnixMilli()).Int64()
	if err != nil {
		return 0, fmt.Errorf("retain %s: %w", c, err)
	}
	return n, nil
}

// QueueConfirm queues Confirm in p, for a caller settling many charges in
// one round trip (the mapping janitor).
func QueueConfirm(ctx context.Context, p redis.Pipeliner, c Charge) {
	p.ZRem(ctx, reservedKey, c.member())
}

// QueueDrop queues Drop in p; CellsOf reads its answer. It goes as EVAL: a
// pipeline cannot fall back on NOSCRIPT, and Redis caches the compiled
// script either way.
func QueueDrop(ctx context.Context, p redis.Pipeliner, c Charge) *redis.Cmd {
	return dropScript.Eval(ctx, p, accountKeys, c.member())
}

// QueueRetain queues Retain in p, as QueueDrop does Drop.
func QueueRetain(ctx context.Context, p redis.Pipeliner, c Charge, at time.Time) *redis.Cmd {
	return retainScript.Eval(ctx, p, accountKeys, c.member(), at.UnixMilli())
}

// CellsOf reads the answer of QueueDrop or QueueRetain for charge c: the
// cells uncharged or retained by it.
func CellsOf(cmd *redis.Cmd, c Charge) (int64, error) {
	n, err := cmd.Int64()
	if err != nil {
		return 0, fmt.Errorf("settle %s: %w", c, err)
	}
	return n, nil
}

// QueueCharges queues in p the read of the cells of each of charges, in
// order (0 for a map not charged).
func QueueCharges(ctx context.Context, p redis.Pipeliner, charges []Charge) *redis.FloatSliceCmd {
	members := make([]string, len(charges))
	for i, c := range charges {
		members[i] = c.member()
	}
	return p.ZMScore(ctx, mapsKey, members...)
}

// Recount recomputes the counters from the maps held (see recountScript).
// Call it after the maps no longer in Redis were dropped, so that the
// result counts only maps actually held.
func Recount(ctx context.Context, rdb redis.Cmdable) (Usage, error) {
	v, err := recountScript.Run(ctx, rdb, accountKeys).Int64Slice()
	if err != nil || len(v) != 2 {
		return Usage{}, fmt.Errorf("recount capacity: %v %w", v, err)
	}
	return Usage{Held: v[0], Retained: v[1]}, nil
}

// Charged is one map held, as the accounting knows it.
type Charged struct {
	Charge
	Cells int64
	// Retained is when the map was retained; zero while in flight.
	Retained time.Time
	// Reserved is when the map was charged, while the janitor has not yet
	// seen it (Confirm); zero after.
	Reserved time.Time
}

// ListCharged returns up to count maps held, from rank start of the sorted
// set (smallest maps first; ranks shift as maps come and go, which a
// janitor pass tolerates).
func ListCharged(ctx context.Context, rdb redis.Cmdable, start, count int64) ([]Charged, error) {
	zs, err := rdb.ZRangeWithScores(ctx, mapsKey, start, start+count-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list maps held: %w", err)
	}
	return chargedOf(ctx, rdb, zs)
}

// ListInFlight returns every map held that is not retained (in flight: its
// mission has not completed, or the janitor has not yet seen it complete),
// in one round trip of ZDIFF and one of the marks: the charges a janitor
// pass for a refused allocation settles, however many retained maps are
// held besides (Redis 6.2's ZDIFF; both keys share the {mapping} slot).
func ListInFlight(ctx context.Context, rdb redis.Cmdable) ([]Charged, error) {
	zs, err := rdb.ZDiffWithScores(ctx, mapsKey, retainedKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list maps in flight: %w", err)
	}
	return chargedOf(ctx, rdb, zs)
}

// chargedOf reads, in one round trip, when each map held of zs (members of
// the maps' sorted set, with their cells) was retained and reserved.
func chargedOf(ctx context.Context, rdb redis.Cmdable, zs []redis.Z) ([]Charged, error) {
	if len(zs) == 0 {
		return nil, nil
	}
	out := make([]Charged, len(zs))
	members := make([]string, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = Charged{Charge: chargeOf(m), Cells: int64(z.Score)}
		members[i] = m
	}
	var retained, reserved *redis.FloatSliceCmd
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		retained = p.ZMScore(ctx, retainedKey, members...)
		reserved = p.ZMScore(ctx, reservedKey, members...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list retained and reserved maps: %w", err)
	}
	for i := range out {
		if at := retained.Val(); i < len(at) && at[i] != 0 {
			out[i].Retained = time.UnixMilli(int64(at[i]))
		}
		if at := reserved.Val(); i < len(at) && at[i] != 0 {
			out[i].Reserved = time.UnixMilli(int64(at[i]))
		}
	}
	return out, nil
}

// OldestRetained returns up to n charges whose maps were retained first,
// skipping the start oldest.
func OldestRetained(ctx context.Context, rdb redis.Cmdable, start, n int64) ([]Charge, error) {
	ms, err := rdb.ZRange(ctx, retainedKey, start, start+n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("oldest retained maps: %w", err)
	}
	out := make([]Charge, len(ms))
	for i, m := range ms {
		out[i] = chargeOf(m)
	}
	return out, nil
}
