package gctune_test

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/gctune"
)

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gcPercent is the GOGC in effect; heapGoal the collector's heap goal.
func gcPercent() uint64 { return readMetric("/gc/gogc:percent") }
func heapGoal() uint64  { return readMetric("/gc/heap/goal:bytes") }
func gcCycles() uint64  { return readMetric("/gc/cycles/total:gc-cycles") }

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

// waitGoal collects and waits (at most 10 s, polling) until ok holds: the
// cleanup that sets GOGC after a collection runs on its own goroutine, and
// until it has, the goal is the previous GOGC's for the new live heap.
func waitGoal(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// near reports whether the heap goal is the floor: within 2 % below it
// (GOGC is a whole percent) and not above it by more than 1 %.
func near(floor uint64) bool {
	g := heapGoal()
	return g >= floor-floor/50 && g <= floor+floor/100
}

// TestFloorCutsCollectionsOfASmallHeap: churning 512 MiB through a live
// heap of a few MiB, a 256 MiB floor collects a fraction as often as the
// default GOGC; the heap goal is the floor while the live heap is small,
// GOGC is back to 100 once the live heap passes half the floor, and stop
// restores the GOGC it found. Counts and goals, not times.
func TestFloorCutsCollectionsOfASmallHeap(t *testing.T) {
	if p := gcPercent(); p != 100 {
		t.Fatalf("GOGC is %d before the test, want the default 100 (is GOGC set?)", p)
	}
	runtime.GC()
	without := churn(512 << 20)

	const floor = 256 << 20
	stop := gctune.Start(floor)
	if waitGoal(t, func() bool { return near(floor) }); !near(floor) {
		t.Fatalf("with a 256 MiB floor and a small live heap the heap goal is %d MiB (GOGC %d)", heapGoal()>>20, gcPercent())
	}
	with := churn(512 << 20)
	t.Logf("512 MiB of garbage: %d collections by default, %d with a 256 MiB floor", without, with)
	if with*4 > without {
		t.Errorf("%d collections with the floor, %d without: want at most a quarter", with, without)
	}

	// Another Start while a floor is kept changes nothing.
	gctune.Start(1 << 40)()
	if waitGoal(t, func() bool { return near(floor) }); !near(floor) {
		t.Errorf("after a second Start the heap goal is %d MiB", heapGoal()>>20)
	}

	live := make([]byte, 160<<20) // past half the floor
	if waitGoal(t, func() bool { return gcPercent() == 100 }); gcPercent() != 100 {
		t.Errorf("with 160 MiB live under a 256 MiB floor, GOGC = %d, want 100", gcPercent())
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

// TestSmallFloorIsTheGoal: a floor under the runtime's minimum heap at a
// high GOGC (4 MiB × GOGC/100) is still the goal: GOGC stops where that
// minimum reaches the floor.
func TestSmallFloorIsTheGoal(t *testing.T) {
	const floor = 8 << 20
	stop := gctune.Start(floor)
	defer stop()
	if waitGoal(t, func() bool { return near(floor) }); !near(floor) {
		t.Errorf("with an 8 MiB floor the heap goal is %d MiB (GOGC %d)", heapGoal()>>20, gcPercent())
	}
}

// TestFloorLeavesTheCollectorOff: with GOGC off, Start keeps nothing.
func TestFloorLeavesTheCollectorOff(t *testing.T) {
	debug.SetGCPercent(-1)
	defer debug.SetGCPercent(100)
	stop := gctune.Start(64 << 20)
	defer stop()
	runtime.GC()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("Start turned the collector back on: GOGC %d", p)
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
