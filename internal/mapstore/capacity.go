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
//	slammesh:{mapping}:maps              sorted set: mission id -> cells of its map, every map held
//	slammesh:{mapping}:retained          sorted set: mission id -> unix ms its map was retained
//	slammesh:{mapping}:retained-cells    cells of the retained maps
//
// A map is charged when it is allocated (Charge, in the allocation's
// barrier transaction, under WATCH of the counters) and is in flight until
// its mission completes; the mapping janitor then retains it (Retain): its
// cells leave the in-flight budget for the retained budget, where the
// oldest are evicted when that budget is full. A map is uncharged (Drop)
// after it is deleted — released by the saga's compensation, evicted, or
// gone with its mission's expiry or deletion. The sorted set of every map
// held is what the counters are checked against and recomputed from
// (Recount): a counter is never trusted blindly.
const (
	// CapacityKey counts the cells of every map held.
	CapacityKey      = "slammesh:{mapping}:capacity"
	mapsKey          = "slammesh:{mapping}:maps"
	retainedKey      = "slammesh:{mapping}:retained"
	retainedCellsKey = "slammesh:{mapping}:retained-cells"
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

// UsageKeys are the keys ReadUsage reads: an allocation WATCHes them.
var UsageKeys = []string{CapacityKey, retainedCellsKey}

// ReadUsage reads the counters; ErrCorrupt (wrapped, with the values) when
// they contradict themselves.
func ReadUsage(ctx context.Context, r redis.Cmdable) (Usage, error) {
	vals, err := r.MGet(ctx, UsageKeys...).Result()
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
			return u, fmt.Errorf("%w: %s = %q", ErrCorrupt, UsageKeys[i], s)
		}
	}
	if u.Held < 0 || u.Retained < 0 || u.Retained > u.Held {
		return u, fmt.Errorf("%w: %s = %d, %s = %d", ErrCorrupt, CapacityKey, u.Held, retainedCellsKey, u.Retained)
	}
	return u, nil
}

// Charge queues the accounting of a new map of cells for the mission, for
// the barrier transaction that creates it.
func Charge(ctx context.Context, p redis.Pipeliner, missionID string, cells uint64) {
	p.IncrBy(ctx, CapacityKey, int64(cells))
	p.ZAdd(ctx, mapsKey, redis.Z{Score: float64(cells), Member: missionID})
}

// dropScript uncharges a mission's map, once: the sorted set of maps held
// is the guard, so a repeated or concurrent Drop changes nothing.
// KEYS: CapacityKey, mapsKey, retainedKey, retainedCellsKey. ARGV[1] mission.
// Returns the cells uncharged (0 when the map was not charged).
var dropScript = redis.NewScript(`
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
// mission, ARGV[2] unix ms. Returns the cells retained (0: not charged, or
// retained already).
var retainScript = redis.NewScript(`
local c = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not c then return 0 end
if redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[4], tonumber(c))
return tonumber(c)
`)

// recountScript recomputes both counters from the sorted set of maps held,
// and drops retained entries of maps not held: idempotent, and correct
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
redis.call('SET', KEYS[1], held)
redis.call('SET', KEYS[4], retained)
return {held, retained}
`)

var accountKeys = []string{CapacityKey, mapsKey, retainedKey, retainedCellsKey}

// Drop uncharges the mission's map; call it once the map is deleted (a
// repeat does nothing). It returns the cells uncharged.
func Drop(ctx context.Context, rdb redis.Cmdable, missionID string) (int64, error) {
	n, err := dropScript.Run(ctx, rdb, accountKeys, missionID).Int64()
	if err != nil {
		return 0, fmt.Errorf("uncharge map of mission %s: %w", missionID, err)
	}
	return n, nil
}

// Retain moves the mission's charged map to the retained budget at time at
// (a repeat does nothing). It returns the cells retained by this call.
func Retain(ctx context.Context, rdb redis.Cmdable, missionID string, at time.Time) (int64, error) {
	n, err := retainScript.Run(ctx, rdb, accountKeys, missionID, at.UnixMilli()).Int64()
	if err != nil {
		return 0, fmt.Errorf("retain map of mission %s: %w", missionID, err)
	}
	return n, nil
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
	MissionID string
	Cells     int64
	// Retained is when the map was retained; zero while in flight.
	Retained time.Time
}

// ListCharged returns up to count maps held, from rank start of the sorted
// set (smallest maps first; ranks shift as maps come and go, which a
// janitor pass tolerates).
func ListCharged(ctx context.Context, rdb redis.Cmdable, start, count int64) ([]Charged, error) {
	zs, err := rdb.ZRangeWithScores(ctx, mapsKey, start, start+count-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list maps held: %w", err)
	}
	if len(zs) == 0 {
		return nil, nil
	}
	out := make([]Charged, len(zs))
	members := make([]string, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = Charged{MissionID: m, Cells: int64(z.Score)}
		members[i] = m
	}
	at, err := rdb.ZMScore(ctx, retainedKey, members...).Result()
	if err != nil {
		return nil, fmt.Errorf("list retained maps: %w", err)
	}
	for i := range out {
		if i < len(at) && at[i] != 0 {
			out[i].Retained = time.UnixMilli(int64(at[i]))
		}
	}
	return out, nil
}

// OldestRetained returns up to n missions whose maps were retained first,
// skipping the start oldest.
func OldestRetained(ctx context.Context, rdb redis.Cmdable, start, n int64) ([]string, error) {
	ms, err := rdb.ZRange(ctx, retainedKey, start, start+n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("oldest retained maps: %w", err)
	}
	return ms, nil
}
