package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// teardownConcurrency bounds the CancelMission calls in flight while a bench
// tears its missions down: enough to finish hundreds in a second or two,
// few enough not to swamp the orchestrator the next measurement runs on.
const teardownConcurrency = 16

// benchRun is the outcome of one bench mission.
type benchRun struct {
	started bool
	latency time.Duration
	// state is the mission's state as StartMission answered it;
	// MISSION_STATE_UNSPECIFIED when the call failed.
	state orchestratorv1.MissionState
}

// holdsResources reports whether the mission may still hold a map (and the
// other effects of its steps), so that the bench must tear it down: it
// completed, or its call failed and it may have run anyway. A compensated
// mission has released everything, and a failed one needs an operator.
func (r benchRun) holdsResources() bool {
	switch r.state {
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATED, orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return false
	}
	return r.started
}

// cmdBench starts n missions with wait=true from c concurrent callers and
// reports throughput and latency; every mission must complete. Then, outside
// the timed part, it tears its missions down with CancelMission (unless
// -keep): a completed mission keeps its data (map included) for the
// orchestrator's retention, so a benchmark cleans up after itself. Kept
// missions expire at the end of the retention; their maps leave the mapping
// service's capacity budget for its retained-maps budget, where the oldest
// are evicted, so they never block later missions.
func cmdBench(ctx context.Context, c *clients, _ global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench [flags]", stderr)
	n := fs.Int("n", 300, "missions to run")
	conc := fs.Int("c", 1, "concurrent callers")
	agents := fs.Uint("agents", 1, "agents per mission")
	width := fs.Float64("width", 10, "world width in metres (at least 10)")
	height := fs.Float64("height", 8, "world height in metres (at least 8)")
	keep := fs.Bool("keep", false, "keep the missions (and their maps) instead of tearing them down afterwards")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *conc < 1 {
		return fmt.Errorf("%w: -n and -c must be at least 1", errUsage)
	}
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	prefix := "bench-" + hex.EncodeToString(tag[:])
	id := func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }

	runs := make([]benchRun, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				t0 := time.Now()
				resp, err := c.orchestrator.StartMission(ctx, &orchestratorv1.StartMissionRequest{
					MissionId: id(i),
					Scenario:  &typesv1.Scenario{Seed: uint64(i), Agents: uint32(*agents), WidthM: *width, HeightM: *height},
					Wait:      true,
				})
				runs[i] = benchRun{started: true, latency: time.Since(t0), state: resp.GetMission().GetState()}
				if err == nil && runs[i].state != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
					err = fmt.Errorf("mission %s ended %s", id(i), runs[i].state)
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var lat []time.Duration
	var teardown []string
	for i, r := range runs {
		if r.started {
			lat = append(lat, r.latency)
		}
		if r.holdsResources() {
			teardown = append(teardown, id(i))
		}
	}
	done := len(lat)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	fmt.Fprintf(stdout, "missions %d  concurrency %d  agents %d  world %.0fx%.0f m  ids %s-*\n", done, *conc, *agents, *width, *height, prefix)
	fmt.Fprintf(stdout, "elapsed  %s  throughput %.1f missions/s\n", elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds())
	fmt.Fprintf(stdout, "latency  p50 %s  p90 %s  p99 %s  max %s\n", pct(0.50).Round(10*time.Microsecond),
		pct(0.90).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))

	var benchErr error
	if f := failed.Load(); f > 0 {
		benchErr = fmt.Errorf("%d of %d missions did not complete; first: %w", f, done, firstErr)
	}
	if *keep {
		fmt.Fprintf(stdout, "kept     %d missions (-keep): they expire at the end of the retention; their maps count against the retained-maps budget, oldest evicted first\n", len(teardown))
		return errors.Join(benchErr, ctx.Err())
	}
	return errors.Join(benchErr, tearDown(ctx, c, teardown, stdout))
}

// tearDown cancels the missions ids with wait, teardownConcurrency at a
// time, which compensates every step of a completed mission: its map is
// released and its cells return to the capacity budget. It prints how many
// were torn down; a mission that does not exist (its StartMission failed
// before the orchestrator recorded it) needs nothing.
func tearDown(ctx context.Context, c *clients, ids []string, stdout io.Writer) error {
	t0 := time.Now()
	var tornDown, absent, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	g := new(errgroup.Group)
	g.SetLimit(teardownConcurrency)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			resp, err := c.orchestrator.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{
				MissionId: id, Reason: "slamctl bench teardown", Wait: true,
			})
			switch st := resp.GetMission().GetState(); {
			case status.Code(err) == codes.NotFound:
				absent.Add(1)
				return nil
			case err == nil && st == orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
				tornDown.Add(1)
				return nil
			case err == nil:
				err = fmt.Errorf("mission %s ended %s", id, st)
			default:
				err = rpcError("cancel mission "+id, err)
			}
			failed.Add(1)
			errOnce.Do(func() { firstErr = err })
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through the counters
	fmt.Fprintf(stdout, "teardown %d missions torn down in %s (-keep keeps them)\n", tornDown.Load(), time.Since(t0).Round(time.Millisecond))
	left := int64(len(ids)) - tornDown.Load() - absent.Load()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("teardown interrupted: %d of %d missions not torn down: %w", left, len(ids), ctx.Err())
	case failed.Load() > 0:
		return fmt.Errorf("teardown: %d of %d missions not torn down; first: %w", left, len(ids), firstErr)
	}
	return nil
}
