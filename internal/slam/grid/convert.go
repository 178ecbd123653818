package grid

import (
	"fmt"
	"math"
)

// The int8 ↔ log-odds conversions run once per cell whenever a grid crosses
// the wire (every step of every mission), so they are table lookups rather
// than a math.Exp or math.Log per cell. The tables are built at start-up
// from the exact formulas below, and the tests check that the lookups give
// the same result as the formulas for every int8 and for every float32 log-
// odds value (exhaustively on request, see convert_test.go).

// LogOddsToInt8 converts one cell; see ToInt8. It equals
// logOddsToInt8Exact for every float32, by a lookup in int8Buckets.
func LogOddsToInt8(l float32) int8 {
	switch {
	case l == 0 || l != l: // unknown (NaN never gets stored, but must not export as occupied)
		return -1
	case l >= Clamp:
		return 100
	case l <= -Clamp:
		return 0
	}
	b := &int8Buckets[bucketOf(l)]
	if l >= b.next {
		return b.base + 1
	}
	return b.base
}

// Int8ToLogOdds converts one ROS cell value to log-odds; it reports false for
// values outside -1..100. It equals int8ToLogOddsExact, by a lookup.
func Int8ToLogOdds(v int8) (float32, bool) {
	if uint8(v+1) > 101 { // outside -1..100
		return 0, false
	}
	return int8LogOdds[uint8(v+1)], true
}

// logOddsToInt8Exact is the definition of LogOddsToInt8: -1 for unknown,
// 0 and 100 at the clamps, else the occupancy probability 1/(1+e^-l) in
// whole percent.
func logOddsToInt8Exact(l float32) int8 {
	switch {
	case l == 0 || l != l:
		return -1
	case l >= Clamp:
		return 100
	case l <= -Clamp:
		return 0
	}
	return percent(l)
}

// percent is the occupancy of log-odds l in whole percent, rounded half
// away from zero; non-decreasing in l.
func percent(l float32) int8 {
	p := 1 / (1 + math.Exp(-float64(l)))
	return int8(math.Round(p * 100))
}

// int8ToLogOddsExact is the definition of Int8ToLogOdds: -1 (unknown) is
// 0, 0 and 100 are the clamps, 50 is fromInt8Fifty, and any other percent
// p the log-odds ln(p/(1-p)).
func int8ToLogOddsExact(v int8) (float32, bool) {
	switch {
	case v == -1:
		return 0, true
	case v < 0 || v > 100:
		return 0, false
	case v == 0:
		return -Clamp, true
	case v == 100:
		return Clamp, true
	case v == 50:
		return fromInt8Fifty, true
	}
	p := float64(v) / 100
	return float32(math.Log(p / (1 - p))), true
}

// int8LogOdds[v+1] is int8ToLogOddsExact(v) for v in -1..100.
var int8LogOdds = func() (t [102]float32) {
	for v := -1; v <= 100; v++ {
		t[v+1], _ = int8ToLogOddsExact(int8(v))
	}
	return t
}()

// Buckets of LogOddsToInt8 over the open interval (-Clamp, Clamp): bucket
// i holds the log-odds l with bucketOf(l) = i. They are narrower (1/102.4
// ≈ 0.0098) than the closest two steps of percent, 0.04 apart at 50 %
// (the slope of the logistic is at most 1/4, so one percent needs at least
// 0.04 of log-odds): a bucket holds at most one step.
const (
	numBuckets  = 1024
	bucketScale = float32(numBuckets / (2 * Clamp))
)

// bucketOf is non-decreasing in l (float32 addition and multiplication by
// a positive constant are monotonic) and in [0, numBuckets] on (-Clamp,
// Clamp), so every bucket is one contiguous run of float32 values.
func bucketOf(l float32) int { return int((l + Clamp) * bucketScale) }

// int8Bucket says what percent takes in one bucket: base from its first
// value up to (not including) next, base+1 from next on.
type int8Bucket struct {
	base int8
	next float32 // +Inf when percent does not change within the bucket
}

var int8Buckets = buildInt8Buckets()

// buildInt8Buckets finds, by bisection over the float32 values in order,
// where percent steps up to each value and where each bucket starts (a few
// thousand math.Exp at start-up). It panics
// (at start-up, on a change of Clamp or of the bucket count) if a bucket
// holds two steps.
func buildInt8Buckets() (t [numBuckets + 1]int8Bucket) {
	lo, hi := f32Key(-Clamp)+1, f32Key(Clamp)-1 // the open interval
	// first returns the least key in [lo, hi] whose value satisfies ok (a
	// predicate that is false then true along the keys), or hi+1.
	first := func(ok func(float32) bool) int32 {
		a, b := int64(lo), int64(hi)+1 // int64: the interval spans more than 2^31 keys
		for a < b {
			m := a + (b-a)/2
			if ok(f32FromKey(int32(m))) {
				b = m
			} else {
				a = m + 1
			}
		}
		return int32(a)
	}
	// steps[k] is the first key at which percent reaches k (hi+1: never).
	var steps [102]int32
	for k := range steps {
		steps[k] = first(func(l float32) bool { return percent(l) >= int8(k) })
	}
	inBucket := func(k int, i int) bool {
		return k < len(steps) && steps[k] <= hi && bucketOf(f32FromKey(steps[k])) == i
	}
	for i := range t {
		t[i] = int8Bucket{next: float32(math.Inf(1))}
		start := first(func(l float32) bool { return bucketOf(l) >= i })
		if start > hi || bucketOf(f32FromKey(start)) != i {
			continue // no float32 falls in this bucket
		}
		t[i].base = percent(f32FromKey(start))
		if k := int(t[i].base) + 1; inBucket(k, i) {
			t[i].next = f32FromKey(steps[k])
			if inBucket(k+1, i) {
				panic(fmt.Sprintf("grid: log-odds bucket %d holds two percent steps", i))
			}
		}
	}
	return t
}

// f32Key maps float32 values (not NaN) to int32 keys in the same order,
// consecutive floats to consecutive keys (-0 just below +0).
func f32Key(f float32) int32 {
	k := int32(math.Float32bits(f))
	if k < 0 {
		k ^= math.MaxInt32
	}
	return k
}

// f32FromKey inverts f32Key.
func f32FromKey(k int32) float32 {
	if k < 0 {
		k ^= math.MaxInt32
	}
	return math.Float32frombits(uint32(k))
}
