package grid

import (
	"flag"
	"math"
	"runtime"
	"sync"
	"testing"
)

var exhaustive = flag.Bool("grid.exhaustive", false, "check LogOddsToInt8 against its formula on every float32 (about a minute per core)")

func TestInt8ToLogOddsEqualsFormulaForEveryInt8(t *testing.T) {
	t.Parallel()
	for i := range 256 {
		v := int8(i)
		got, gotOK := Int8ToLogOdds(v)
		want, wantOK := int8ToLogOddsExact(v)
		if gotOK != wantOK || math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("Int8ToLogOdds(%d) = %v, %v; the formula gives %v, %v", v, got, gotOK, want, wantOK)
		}
	}
}

func TestLogOddsToInt8EqualsFormula(t *testing.T) {
	t.Parallel()
	check := func(l float32) {
		if got, want := LogOddsToInt8(l), logOddsToInt8Exact(l); got != want {
			t.Fatalf("LogOddsToInt8(%v [bits %#x]) = %d, the formula gives %d", l, math.Float32bits(l), got, want)
		}
	}
	inf := float32(math.Inf(1))
	for _, l := range []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), inf, -inf, Clamp, -Clamp,
		math.Nextafter32(Clamp, 0), math.Nextafter32(-Clamp, 0), math.Nextafter32(Clamp, inf), 1e30, -1e30,
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, fromInt8Fifty, LogOddsHit, LogOddsMiss} {
		check(l)
	}
	// Around every bucket edge and every step of the percent: where a
	// table can be off by one.
	near := func(l float32) {
		k := f32Key(l)
		for d := int32(-64); d <= 64; d++ {
			check(f32FromKey(k + d))
		}
	}
	for k := int32(-1); k <= 101; k++ {
		for _, l := range []float32{float32(math.Log(float64(k)+0.5) - math.Log(100-float64(k)-0.5))} {
			if !math.IsNaN(float64(l)) && !math.IsInf(float64(l), 0) {
				near(l)
			}
		}
	}
	for i := range numBuckets + 1 {
		near(float32(i)/bucketScale - Clamp)
		if b := int8Buckets[i]; !math.IsInf(float64(b.next), 1) {
			near(b.next)
		}
	}
	// Every 97th float32 of the open interval (-Clamp, Clamp), 22 million
	// values in all; -grid.exhaustive checks all of them.
	stride := int32(97)
	if *exhaustive {
		stride = 1
	}
	lo, hi := f32Key(-Clamp), f32Key(Clamp)
	workers := int32(runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	errs := make(chan float32, workers)
	for w := range workers {
		wg.Go(func() {
			for k := lo + w*stride; k <= hi; k += workers * stride {
				if l := f32FromKey(k); LogOddsToInt8(l) != logOddsToInt8Exact(l) {
					errs <- l
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for l := range errs {
		check(l)
	}
}

func TestPercentIsMonotonic(t *testing.T) {
	t.Parallel()
	// The table relies on it; every 1009th float32 of the open interval.
	prev := int8(0)
	for k := f32Key(-Clamp) + 1; k < f32Key(Clamp); k += 1009 {
		p := percent(f32FromKey(k))
		if p < prev {
			t.Fatalf("percent(%v) = %d after %d", f32FromKey(k), p, prev)
		}
		prev = p
	}
}

func TestF32KeyOrder(t *testing.T) {
	t.Parallel()
	vals := []float32{float32(math.Inf(-1)), -Clamp, -1, -math.SmallestNonzeroFloat32, float32(math.Copysign(0, -1)), 0, math.SmallestNonzeroFloat32, 1, Clamp, float32(math.Inf(1))}
	for i, v := range vals {
		if back := f32FromKey(f32Key(v)); math.Float32bits(back) != math.Float32bits(v) {
			t.Errorf("f32FromKey(f32Key(%v)) = %v", v, back)
		}
		if i > 0 && f32Key(vals[i-1]) >= f32Key(v) {
			t.Errorf("key(%v) = %d not below key(%v) = %d", vals[i-1], f32Key(vals[i-1]), v, f32Key(v))
		}
	}
	if f32Key(0)-f32Key(float32(math.Copysign(0, -1))) != 1 || f32Key(math.Nextafter32(1, 2))-f32Key(1) != 1 {
		t.Error("neighbouring floats do not get neighbouring keys")
	}
}
