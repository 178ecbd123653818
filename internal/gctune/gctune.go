// Package gctune keeps a heap floor: the garbage collector's heap goal
// never drops below a set size, however small the live heap is.
//
// With the default GOGC of 100 the collector runs each time the heap
// doubles its live size. A step service's live heap is a few MB, while
// one mission allocates grids of several MB that are garbage a moment
// later (an office mission about 19 MB), so the default collects on almost
// every mission, and its assists and background worker take the CPU the
// mission needs (an office mission, one at a time: p50 19–21 ms, 16–17 ms
// with a 64 MiB floor; docs/performance.md). Raising GOGC for good
// would instead multiply the heap of a process that holds large maps. A
// floor costs at most its own size: once the live heap passes half of it,
// GOGC is the default 100 again.
//
// The floor is kept by setting GOGC after every collection, from the
// cleanup of a sentinel object that each cycle frees: GOGC = 100 × (floor /
// live heap − 1), at least 100 and at most MaxPercent, so that the next
// heap goal, live × (1 + GOGC/100), is the floor. GOMEMLIMIT, when set,
// still bounds the heap: the runtime collects before it whatever GOGC says
// (A Guide to the Go Garbage Collector, go.dev/doc/gc-guide).
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// MaxPercent caps the GOGC a floor sets: with a live heap below
// Floor/(1+MaxPercent/100), the heap goal is 21 times the live heap rather
// than the floor.
const MaxPercent = 2000

// liveHeap is the runtime metric of the heap marked live by the last
// collection.
const liveHeap = "/gc/heap/live:bytes"

var (
	mu     sync.Mutex
	active *tuner // the floor kept, nil if none
)

type tuner struct {
	floor    uint64
	previous int // GOGC before Start
	stopped  atomic.Bool
	sample   [1]metrics.Sample
}

// sentinel is the object whose cleanup runs after each collection. It
// holds a pointer, so the tiny allocator never packs it with other
// objects (an object packed so may never be collected on its own).
type sentinel struct{ p *tuner }

// Start keeps the heap goal at least floor bytes until stop is called, and
// then restores the GOGC it found. The floor is process-wide: while one is
// kept, Start keeps it and returns a stop that does nothing. A floor of 0
// keeps nothing.
func Start(floor uint64) (stop func()) {
	mu.Lock()
	defer mu.Unlock()
	if floor == 0 || active != nil {
		return func() {}
	}
	t := &tuner{floor: floor}
	t.sample[0].Name = liveHeap
	t.previous = debug.SetGCPercent(t.percent())
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

// percent is the GOGC that makes the next heap goal the floor.
func (t *tuner) percent() int {
	metrics.Read(t.sample[:])
	live := t.sample[0].Value.Uint64()
	switch {
	case live == 0: // before the first collection
		return MaxPercent
	case live >= t.floor/2:
		return 100
	}
	return int(min(MaxPercent, t.floor*100/live-100))
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
