package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// cmdBench starts n missions with wait=true from c concurrent callers and
// reports throughput and latency; every mission must complete.
func cmdBench(ctx context.Context, c *clients, _ global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench [flags]", stderr)
	n := fs.Int("n", 500, "missions to run")
	conc := fs.Int("c", 1, "concurrent callers")
	agents := fs.Uint("agents", 1, "agents per mission")
	width := fs.Float64("width", 10, "world width in metres (at least 10)")
	height := fs.Float64("height", 8, "world height in metres (at least 8)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *conc < 1 {
		return fmt.Errorf("%w: -n and -c must be at least 1", errUsage)
	}
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	prefix := "bench-" + hex.EncodeToString(tag[:])

	latencies := make([]time.Duration, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				resp, err := c.orchestrator.StartMission(ctx, &orchestratorv1.StartMissionRequest{
					MissionId: fmt.Sprintf("%s-%d", prefix, i),
					Scenario:  &typesv1.Scenario{Seed: uint64(i), Agents: uint32(*agents), WidthM: *width, HeightM: *height},
					Wait:      true,
				})
				latencies[i] = time.Since(t0)
				if err == nil && resp.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
					err = fmt.Errorf("mission %s ended %s", resp.GetMission().GetMissionId(), resp.GetMission().GetState())
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
	done := int(min(next.Load(), int64(*n)))
	lat := slices.Clone(latencies[:done])
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	fmt.Fprintf(stdout, "missions %d  concurrency %d  agents %d  world %.0fx%.0f m\n", done, *conc, *agents, *width, *height)
	fmt.Fprintf(stdout, "elapsed  %s  throughput %.1f missions/s\n", elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds())
	fmt.Fprintf(stdout, "latency  p50 %s  p90 %s  p99 %s  max %s\n", pct(0.50).Round(10*time.Microsecond),
		pct(0.90).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d missions did not complete; first: %w", f, done, firstErr)
	}
	return ctx.Err()
}
