package gctune_test

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/gctune"
)

// gcPercent is the GOGC in effect.
func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sink keeps the garbage loop's allocations from being optimised away.
var sink []byte

// churn allocates total bytes of short-lived 1 MiB buffers and returns the
// collections that ran meanwhile.
func churn(total int) uint64 {
	before := gcCycles()
	for range total >> 20 {
		sink = make([]byte, 1<<20)
	}
	sink = nil
	return gcCycles() - before
}

// waitPercent waits (at most 10 s, polling) for the GOGC the floor sets
// after a collection: the cleanup that sets it runs on its own goroutine.
func waitPercent(t *testing.T, ok func(uint64) bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if p := gcPercent(); ok(p) || time.Now().After(deadline) {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFloorCutsCollectionsOfASmallHeap: churning 512 MiB through a live
// heap of a few MiB, a 256 MiB floor collects a fraction as often as the
// default GOGC; the GOGC it sets is high while the heap is small, back to
// 100 once the live heap passes half the floor, and stop restores the GOGC
// it found. Counts, not times: the collections the runtime ran.
func TestFloorCutsCollectionsOfASmallHeap(t *testing.T) {
	if p := gcPercent(); p != 100 {
		t.Fatalf("GOGC is %d before the test, want the default 100 (is GOGC set?)", p)
	}
	runtime.GC()
	without := churn(512 << 20)

	stop := gctune.Start(256 << 20)
	if p := waitPercent(t, func(p uint64) bool { return p > 1000 }); p <= 1000 {
		t.Fatalf("with a 256 MiB floor and a small live heap, GOGC = %d", p)
	}
	with := churn(512 << 20)
	t.Logf("512 MiB of garbage: %d collections by default, %d with a 256 MiB floor", without, with)
	if with*4 > without {
		t.Errorf("%d collections with the floor, %d without: want at most a quarter", with, without)
	}

	// Another Start while a floor is kept changes nothing.
	gctune.Start(1 << 40)()
	if p := gcPercent(); p > gctune.MaxPercent {
		t.Errorf("a second Start set GOGC %d", p)
	}

	live := make([]byte, 160<<20) // past half the floor
	if p := waitPercent(t, func(p uint64) bool { return p == 100 }); p != 100 {
		t.Errorf("with 160 MiB live under a 256 MiB floor, GOGC = %d, want 100", p)
	}
	runtime.KeepAlive(live)

	stop()
	if p := gcPercent(); p != 100 {
		t.Errorf("after stop, GOGC = %d, want the 100 it found", p)
	}
	runtime.GC()
	if p := gcPercent(); p != 100 {
		t.Errorf("a collection after stop set GOGC %d", p)
	}
}

// TestZeroFloorKeepsNothing: Start(0) leaves GOGC alone.
func TestZeroFloorKeepsNothing(t *testing.T) {
	stop := gctune.Start(0)
	defer stop()
	runtime.GC()
	if p := gcPercent(); p != 100 {
		t.Errorf("GOGC = %d, want 100", p)
	}
}
