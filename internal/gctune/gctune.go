// Package gctune keeps a heap floor: the garbage collector's heap goal
// never drops below a set size, however small the live heap is.
//
// With the default GOGC of 100 the collector runs each time the heap
// doubles its live size. A step service's live heap is a few MB, while
// one mission allocates grids of several MB that are garbage a moment
// later (an office mission about 19 MB), so the default collects on almost
// every mission, and its assists and background worker take the CPU the
// mission needs (an office mission, one at a time: p50 19–21 ms, 15–16 ms
// with a 64 MiB floor; docs/performance.md). Raising GOGC for good
// would instead multiply the heap of a process that holds large maps. A
// floor costs at most its own size: the heap goal is the floor while the
// live heap is small, and GOGC is back where it was (100 by default) once
// the live heap passes about half of it.
//
// The floor is kept by setting GOGC after every collection, from the
// cleanup of a sentinel object that each cycle frees. The runtime's heap
// goal for a GOGC of g is the larger of its minimum heap, 4 MiB × g/100,
// and live + (live + stacks + globals) × g/100 (A Guide to the Go Garbage
// Collector, go.dev/doc/gc-guide; runtime/mgcpacer.go). The floor sets
//
//	g = min(100 × (floor − live) / (live + stacks + globals), 100 × floor / 4 MiB)
//
// and never less than the GOGC it found, so that the goal is the floor: the
// first term puts the second bound on it, the second keeps the minimum heap
// from passing it. Between a collection's end and its cleanup the previous
// cycle's GOGC still holds, for a moment. GOMEMLIMIT, when set, still
// bounds the heap: the runtime collects before it whatever GOGC says.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// minHeap is the runtime's minimum heap goal at GOGC 100 (its
// defaultHeapMinimum); at GOGC g it is minHeap × g/100.
const minHeap = 4 << 20

// The runtime metrics percent reads: the heap marked live by the last
// collection, and the stacks and globals the collector scans.
var metricNames = [...]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

var (
	mu     sync.Mutex
	active *tuner // the floor kept, nil if none
)

type tuner struct {
	floor    uint64
	previous int // GOGC before Start: the least GOGC the floor sets
	stopped  atomic.Bool
	samples  [len(metricNames)]metrics.Sample
}

// sentinel is the object whose cleanup runs after each collection. It
// holds a pointer, so the tiny allocator never packs it with other
// objects (an object packed so may never be collected on its own).
type sentinel struct{ p *tuner }

// Start keeps the heap goal at least floor bytes until stop is called, and
// then restores the GOGC it found. The floor is process-wide: while one is
// kept, Start keeps it and returns a stop that does nothing. A floor of 0
// keeps nothing, and neither does Start when the collector is off (a
// negative GOGC: no floor is lower than never collecting).
func Start(floor uint64) (stop func()) {
	mu.Lock()
	defer mu.Unlock()
	if floor == 0 || active != nil {
		return func() {}
	}
	previous := debug.SetGCPercent(100)
	if previous < 0 {
		debug.SetGCPercent(previous)
		return func() {}
	}
	t := &tuner{floor: floor, previous: previous}
	for i, name := range metricNames {
		t.samples[i].Name = name
	}
	debug.SetGCPercent(t.percent())
	active = t
	t.arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if active == t {
			t.stopped.Store(true)
			debug.SetGCPercent(t.previous)
			active = nil
		}
	}
}

// percent is the GOGC that makes the next heap goal the floor (see the
// package doc), computed in float64 so that no floor overflows it.
func (t *tuner) percent() int {
	metrics.Read(t.samples[:])
	live := float64(t.samples[0].Value.Uint64())
	scanned := live + float64(t.samples[1].Value.Uint64()) + float64(t.samples[2].Value.Uint64())
	floor := float64(t.floor)
	g := 100 * floor / minHeap
	if scanned > 0 {
		g = min(g, 100*(floor-live)/scanned)
	}
	// GOGC is an int32 inside the runtime; the goal is the floor long
	// before that bound matters.
	return int(max(float64(t.previous), min(g, 1<<31-1)))
}

// arm sets GOGC for the next cycle when the current one ends.
func (t *tuner) arm() {
	runtime.AddCleanup(&sentinel{p: t}, func(t *tuner) {
		mu.Lock()
		defer mu.Unlock()
		if t.stopped.Load() {
			return
		}
		debug.SetGCPercent(t.percent())
		t.arm()
	}, t)
}
