package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
)

// teardownConcurrency bounds the CancelMission calls in flight while a bench
// tears its missions down: enough to finish hundreds in a second or two,
// few enough not to swamp the orchestrator the next measurement runs on.
const teardownConcurrency = 16

// Bounds of a bench by duration: -d runs at most maxBenchDuration, and at
// most maxBenchMissions missions unless -n says fewer, so that a bench
// against a mesh far faster than expected still ends and fits in memory.
const (
	maxBenchDuration = time.Hour
	maxBenchMissions = 1_000_000
)

// benchWorkload is what each bench mission asks the mesh to do.
type benchWorkload struct {
	name string
	// agents, width and height shape a scenario mission (width and height
	// in metres). Unused by overhead.
	agents        uint
	width, height float64
}

// benchWorkloads are the --workload choices with their defaults.
var benchWorkloads = map[string]benchWorkload{
	// overhead: one anchor agent whose 2×2 m submap is sent inline, on a
	// 2×2 m map at 0.05 m: the orchestration with nearly no SLAM work, the
	// same shape as DTM's empty 3-branch saga in ../shared/bench.
	"overhead": {name: "overhead"},
	// tiny: the historical default, one agent in a 10×8 m scenario world.
	"tiny": {name: "tiny", agents: 1, width: 10, height: 8},
	// office: three agents in a 20×15 m office, the scenario default.
	"office": {name: "office", agents: 3, width: 20, height: 15},
}

// overheadSubmap is the overhead workload's anchor submap: 40×40 cells of
// 0.05 m (2×2 m), an occupied one-cell border around free floor. It is
// built once and shared by every request (the client only reads it).
var overheadSubmap = func() *typesv1.OccupancyGrid {
	const n = 40
	data := make([]byte, n*n)
	for r := range n {
		for c := range n {
			if r == 0 || c == 0 || r == n-1 || c == n-1 {
				data[r*n+c] = 100
			}
		}
	}
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: n, Height: n, Origin: &typesv1.Pose2D{}},
		Data: data,
	}
}()

// request builds the StartMission call of mission i, with id and wait.
// Scenario workloads take a new seed per mission, so no two missions share
// a world.
func (w benchWorkload) request(id string, i int) *orchestratorv1.StartMissionRequest {
	req := &orchestratorv1.StartMissionRequest{MissionId: id, Wait: true}
	if w.name == "overhead" {
		req.Agents = []*typesv1.Agent{{AgentId: "anchor", Submap: overheadSubmap, InitialGuess: &typesv1.Pose2D{}, Anchor: true}}
		req.Map = &typesv1.MapSpec{WidthM: 2, HeightM: 2, Resolution: 0.05}
		return req
	}
	req.Scenario = &typesv1.Scenario{Seed: uint64(i), Agents: uint32(w.agents), WidthM: w.width, HeightM: w.height}
	return req
}

// benchConfig is a parsed bench command line.
type benchConfig struct {
	n        int           // most missions to run
	duration time.Duration // 0: run exactly n
	conc     int
	workload benchWorkload
	keep     bool
	redisURL string // empty: no Redis figures
	// redisClusterURL names a Redis Cluster (ParseClusterURL form); it wins
	// over redisURL, and the figures are summed over its masters.
	redisClusterURL string
	// redisPasswordFile holds the password of that Redis when its URL has
	// none (found by a review: only a password in the URL worked).
	redisPasswordFile string
	// stepSample is how many missions' events are read for the time per step.
	stepSample int
}

// parseBench parses bench's flags; getenv supplies REDIS_URL.
func parseBench(args []string, getenv func(string) string, stderr io.Writer) (benchConfig, error) {
	fs := newFlags("bench", "bench [flags]", stderr)
	n := fs.Int("n", 300, fmt.Sprintf("missions to run; with -d, the most to run (default then %d)", maxBenchMissions))
	d := fs.Duration("d", 0, fmt.Sprintf("run for this long instead of -n missions (at most %s)", maxBenchDuration))
	conc := fs.Int("c", 1, "concurrent callers")
	wl := fs.String("workload", "tiny", "overhead (one anchor, 2x2 m submap inline: orchestration only), tiny (1 agent, 10x8 m scenario) or office (3 agents, 20x15 m)")
	agents := fs.Uint("agents", 0, "agents per mission (0: the workload's; scenario workloads only)")
	width := fs.Float64("width", 0, "world width in metres, at least 10 (0: the workload's; scenario workloads only)")
	height := fs.Float64("height", 0, "world height in metres, at least 8 (0: the workload's; scenario workloads only)")
	keep := fs.Bool("keep", false, "keep the missions (and their maps) instead of tearing them down and deleting them afterwards")
	redisURL := fs.String("redis-url", getenv("REDIS_URL"), "the mesh's Redis, to count commands and round trips per mission (env REDIS_URL; empty: not counted)")
	clusterURL := fs.String("redis-cluster-url", getenv("REDIS_CLUSTER_URL"), "the mesh's Redis Cluster, redis://host:port?addr=host2:port&addr=…: the counts are summed over its masters (env REDIS_CLUSTER_URL; wins over --redis-url)")
	passwordFile := fs.String("redis-password-file", getenv("REDIS_PASSWORD_FILE"), "file holding the password of that Redis, as the services take it (env REDIS_PASSWORD_FILE; a password in the URL wins)")
	sample := fs.Int("step-sample", 50, "missions whose events give the time per step (0: none)")
	if err := parse(fs, args); err != nil {
		return benchConfig{}, err
	}
	if fs.NArg() != 0 {
		return benchConfig{}, fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	w, ok := benchWorkloads[*wl]
	if !ok {
		return benchConfig{}, fmt.Errorf("%w: unknown -workload %q (overhead, tiny, office)", errUsage, *wl)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if w.name == "overhead" && (*agents != 0 || *width != 0 || *height != 0) {
		return benchConfig{}, fmt.Errorf("%w: -agents, -width and -height shape scenario workloads, not overhead", errUsage)
	}
	if *agents != 0 {
		w.agents = *agents
	}
	if *width != 0 {
		w.width = *width
	}
	if *height != 0 {
		w.height = *height
	}
	cfg := benchConfig{n: *n, duration: *d, conc: *conc, workload: w, keep: *keep, redisURL: *redisURL, redisClusterURL: *clusterURL, redisPasswordFile: *passwordFile, stepSample: *sample}
	switch {
	case *d < 0 || *d > maxBenchDuration:
		return cfg, fmt.Errorf("%w: -d must be in [0, %s], got %s", errUsage, maxBenchDuration, *d)
	case *d > 0 && !set["n"]:
		cfg.n = maxBenchMissions
	}
	if cfg.n < 1 || cfg.n > maxBenchMissions || cfg.conc < 1 || cfg.stepSample < 0 {
		return cfg, fmt.Errorf("%w: -n must be in [1, %d], -c at least 1, -step-sample at least 0", errUsage, maxBenchMissions)
	}
	return cfg, nil
}

// benchRun is the outcome of one bench mission.
type benchRun struct {
	id      string
	latency time.Duration
	// state is the mission's state as StartMission answered it;
	// MISSION_STATE_UNSPECIFIED when the call failed.
	state orchestratorv1.MissionState
}

// leftBehind reports whether the bench cleans the mission up (tears it
// down, then deletes it): it completed, was compensated (which released its
// map, but its record stays for the retention; found by a review: such
// missions piled up), or its call failed and it may have run anyway. A
// FAILED mission needs an operator, and is only reported.
func (r benchRun) leftBehind() bool {
	return r.state != orchestratorv1.MissionState_MISSION_STATE_FAILED
}

// cmdBench starts missions with wait=true from c concurrent callers (-n of
// them, or as many as fit in -d) and reports throughput, latency, the time
// per step (from the events of a sample of missions) and, given the mesh's
// Redis, the commands and round trips per mission; every mission must
// complete. Then, outside the timed part, it tears its missions down with
// CancelMission and deletes them (unless -keep): a completed mission keeps
// its data (map included) for the orchestrator's retention, so a benchmark
// cleans up after itself. Kept missions expire at the end of the
// retention; their maps leave the mapping service's capacity budget for
// its retained-maps budget, where the oldest are evicted, so they never
// block later missions.
func cmdBench(ctx context.Context, c *clients, _ global, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseBench(args, getenv, stderr)
	if err != nil {
		return err
	}
	// One call before the load: a mesh this client cannot reach, or that
	// refuses it, ends the bench at once (found by a review: against a TLS
	// orchestrator without --cacert it tore down for 13 s the mission it
	// never started, and only then said why).
	if _, err := c.orchestrator.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: 1}); err != nil {
		return rpcError("bench", err)
	}
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	prefix := "bench-" + hex.EncodeToString(tag[:])

	probe := newRedisProbe(ctx, cfg.redisURL, cfg.redisClusterURL, cfg.redisPasswordFile, stdout)
	defer probe.close()
	before := probe.snapshot(ctx)

	perWorker := make([][]benchRun, cfg.conc)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.conc {
		wg.Go(func() {
			for ctx.Err() == nil && (cfg.duration == 0 || time.Since(start) < cfg.duration) {
				i := int(next.Add(1)) - 1
				if i >= cfg.n {
					return
				}
				id := fmt.Sprintf("%s-%d", prefix, i)
				t0 := time.Now()
				resp, err := c.orchestrator.StartMission(ctx, cfg.workload.request(id, i))
				refused := err != nil
				r := benchRun{id: id, latency: time.Since(t0), state: resp.GetMission().GetState()}
				perWorker[w] = append(perWorker[w], r)
				if err == nil && r.state != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
					err = fmt.Errorf("mission %s ended %s", id, missionfmt.State(r.state))
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					// Calls refused at once (the orchestrator down, a
					// bad token) would otherwise spin through every id.
					if refused {
						select {
						case <-ctx.Done():
						case <-time.After(benchRetryPause):
						}
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := probe.snapshot(ctx)

	runs := slices.Concat(perWorker...)
	lat := make([]time.Duration, 0, len(runs))
	var teardown, completed, failedIDs []string
	for _, r := range runs {
		if r.leftBehind() {
			teardown = append(teardown, r.id)
		} else {
			failedIDs = append(failedIDs, r.id)
		}
		// Throughput and latency are the completed missions': a call
		// refused at once is neither.
		if r.state == orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
			completed = append(completed, r.id)
			lat = append(lat, r.latency)
		}
	}
	done := len(runs)
	slices.Sort(lat)
	w := cfg.workload
	shape := fmt.Sprintf("agents %d  world %.0fx%.0f m", w.agents, w.width, w.height)
	if w.name == "overhead" {
		shape = "1 anchor, 2x2 m submap inline"
	}
	fmt.Fprintf(stdout, "missions %d  concurrency %d  workload %s (%s)  ids %s-*\n", done, cfg.conc, w.name, shape, prefix)
	fmt.Fprintf(stdout, "elapsed  %s  throughput %.1f missions/s  (%d completed)\n", elapsed.Round(time.Millisecond),
		float64(len(completed))/elapsed.Seconds(), len(completed))
	if len(lat) == 0 {
		fmt.Fprintln(stdout, "latency  no completed mission")
	} else {
		fmt.Fprintf(stdout, "latency  p50 %s  p90 %s  p99 %s  max %s\n", roundDur(percentile(lat, 0.50)),
			roundDur(percentile(lat, 0.90)), roundDur(percentile(lat, 0.99)), roundDur(percentile(lat, 1)))
	}
	if before != nil && after != nil {
		printRedisDelta(stdout, after.sub(*before), len(completed))
	}
	if cfg.stepSample > 0 && len(completed) > 0 {
		printStepTimes(stdout, stepTimes(ctx, c, sampleEvenly(completed, cfg.stepSample)))
	}

	var benchErr error
	if f := failed.Load(); f > 0 {
		benchErr = fmt.Errorf("%d of %d missions did not complete; first: %w", f, done, firstErr)
	}
	if len(failedIDs) > 0 {
		fmt.Fprintf(stdout, "failed   %d missions ended FAILED (a compensation gave up) and stay, never expiring, until resumed or deleted: slamctl resume %s (and the others)\n", len(failedIDs), failedIDs[0])
	}
	if cfg.keep {
		unsure := ""
		if n := len(teardown) - len(completed); n > 0 {
			// A start that failed may or may not have created its mission
			// (found by a review: refused starts were counted as kept).
			unsure = fmt.Sprintf(" (%d of them did not complete: compensated, or started with an error and may not exist)", n)
		}
		fmt.Fprintf(stdout, "kept     %d missions%s (-keep): they expire at the end of the retention; their maps count against the retained-maps budget, oldest evicted first\n", len(teardown), unsure)
		return errors.Join(benchErr, ctx.Err())
	}
	return errors.Join(benchErr, tearDown(ctx, c, teardown, stdout))
}

// benchRetryPause is how long a bench worker waits after a failed
// StartMission call before its next mission.
const benchRetryPause = 100 * time.Millisecond

// roundDur rounds a latency for printing.
func roundDur(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// percentile returns the p-quantile (p in [0, 1]) of sorted by the nearest
// rank at or above p·len (p = 1 is the maximum); 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// sampleEvenly returns at most k of ids, spread evenly over them (all of
// them when there are no more than k), so that a sample covers the warm-up
// and the steady state alike.
func sampleEvenly(ids []string, k int) []string {
	if len(ids) <= k {
		return ids
	}
	out := make([]string, k)
	for j := range k {
		out[j] = ids[j*len(ids)/k]
	}
	return out
}

// redisProbe reads the mesh's Redis counters around the timed part of a
// bench over connections of its own: one to the server, or one to each
// master of a Redis Cluster, whose counters are summed. A nil probe
// measures nothing.
type redisProbe struct {
	rdb     *redis.Client
	cluster *redis.ClusterClient
}

// newRedisProbe connects to clusterURL, else url, with the password in
// passwordFile when the URL has none; it says why on stdout and returns nil
// when both are empty, or the one used is malformed or cannot be read: the
// bench runs without Redis figures then.
func newRedisProbe(ctx context.Context, url, clusterURL, passwordFile string, stdout io.Writer) *redisProbe {
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	password := func(p *string) bool {
		if *p != "" || passwordFile == "" {
			return true
		}
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			fmt.Fprintf(stdout, "redis    not counted: password file: %v\n", err)
			return false
		}
		*p = strings.TrimRight(string(b), "\r\n")
		return true
	}
	if clusterURL != "" {
		opts, err := redis.ParseClusterURL(clusterURL)
		if err != nil {
			fmt.Fprintf(stdout, "redis    not counted: %v\n", err)
			return nil
		}
		if !password(&opts.Password) {
			return nil
		}
		// One connection per node, so that the probe's own traffic is one
		// INFO per master and snapshot.
		opts.PoolSize, opts.MinIdleConns, opts.MaxRetries = 1, 0, -1
		c := redis.NewClusterClient(opts)
		if err := c.ForEachMaster(pingCtx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
			fmt.Fprintf(stdout, "redis    not counted: cluster %v: %v\n", opts.Addrs, err)
			_ = c.Close()
			return nil
		}
		return &redisProbe{cluster: c}
	}
	if url == "" {
		fmt.Fprintln(stdout, "redis    not counted (no --redis-url, REDIS_URL, --redis-cluster-url or REDIS_CLUSTER_URL)")
		return nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		fmt.Fprintf(stdout, "redis    not counted: %v\n", err)
		return nil
	}
	if !password(&opts.Password) {
		return nil
	}
	// One connection, opened before the first snapshot, so that the probe's
	// own traffic is exactly one INFO per snapshot.
	opts.PoolSize, opts.MinIdleConns, opts.MaxRetries = 1, 0, -1
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		fmt.Fprintf(stdout, "redis    not counted: %s: %v\n", opts.Addr, err)
		_ = rdb.Close()
		return nil
	}
	return &redisProbe{rdb: rdb}
}

func (p *redisProbe) close() {
	switch {
	case p == nil:
	case p.cluster != nil:
		_ = p.cluster.Close()
	default:
		_ = p.rdb.Close()
	}
}

// snapshot reads INFO server, stats and commandstats (of every master, summed, on
// a Cluster); nil when p is nil or a read fails (a bench is not failed for
// its Redis figures).
func (p *redisProbe) snapshot(ctx context.Context) *redisCounters {
	if p == nil {
		return nil
	}
	if p.cluster == nil {
		c, err := readCounters(ctx, p.rdb)
		if err != nil {
			return nil
		}
		return &c
	}
	var mu sync.Mutex
	sum := redisCounters{calls: map[string]int64{}}
	err := p.cluster.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		c, err := readCounters(ctx, n)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		sum.add(c)
		return nil
	})
	if err != nil {
		return nil
	}
	return &sum
}

// readCounters reads one server's counters.
func readCounters(ctx context.Context, rdb *redis.Client) (redisCounters, error) {
	s, err := rdb.Info(ctx, "server", "stats", "commandstats").Result()
	if err != nil {
		return redisCounters{}, err
	}
	return parseRedisInfo(s)
}

// teardownOutage is how long a tear-down's cancel or delete is retried
// while the mesh answers UNAVAILABLE: a Redis failover (about 5 s) or an orchestrator
// restarting (found by a review: the teardown stopped at the first
// UNAVAILABLE of a failover).
const teardownOutage = 15 * time.Second

// throughOutage calls call again while it answers UNAVAILABLE, for up to
// teardownOutage: the tear-down's calls are idempotent (a cancel answers a
// mission compensating or compensated as it is; a delete of a deleted
// mission answers NOT_FOUND).
func throughOutage[T any](ctx context.Context, call func() (T, error)) (T, error) {
	deadline := time.Now().Add(teardownOutage)
	pause := 200 * time.Millisecond
	for {
		resp, err := call()
		if status.Code(err) != codes.Unavailable || time.Now().Add(pause).After(deadline) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// tearDown cancels the missions ids with wait, teardownConcurrency at a
// time, which compensates every step of a completed mission: its map is
// released and its cells return to the capacity budget. Then it deletes
// each (DeleteMission): a compensated mission keeps its record and events
// for the retention (7 days by default, about 15 KB each), which a long
// bench would pile up in Redis (found by a review). It prints how many
// were torn down and deleted; a mission that does not exist (its
// StartMission failed before the orchestrator recorded it) needs nothing,
// and one it may not delete (DeleteMission needs role admin) is left to
// the retention, which the line says.
func tearDown(ctx context.Context, c *clients, ids []string, stdout io.Writer) error {
	t0 := time.Now()
	var tornDown, deleted, absent, failed, turnedFailed, skipped, unsure atomic.Int64
	// stop is set by the first tear-down that ends FAILED or finds the mesh
	// unavailable: the others would fail alike, and each would turn a
	// COMPLETED mission into a FAILED one that never expires (found by a
	// review: a bench whose merge service was down left hundreds).
	var stop atomic.Bool
	var firstErr, deleteErr error
	var errOnce, deleteOnce sync.Once
	g := new(errgroup.Group)
	g.SetLimit(teardownConcurrency)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if stop.Load() {
				skipped.Add(1)
				return nil
			}
			resp, err := throughOutage(ctx, func() (*orchestratorv1.CancelMissionResponse, error) {
				return c.orchestrator.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{
					MissionId: id, Reason: "slamctl bench teardown", Wait: true,
				})
			})
			switch st := resp.GetMission().GetState(); {
			case status.Code(err) == codes.NotFound:
				absent.Add(1)
				return nil
			case err == nil && st == orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
				tornDown.Add(1)
				_, err := throughOutage(ctx, func() (*orchestratorv1.DeleteMissionResponse, error) {
					return c.orchestrator.DeleteMission(ctx, &orchestratorv1.DeleteMissionRequest{MissionId: id})
				})
				if status.Code(err) == codes.NotFound {
					// A delete whose reply an outage lost, sent again.
					err = nil
				}
				if err != nil {
					deleteOnce.Do(func() { deleteErr = rpcError("delete mission "+id, err) })
				} else {
					deleted.Add(1)
				}
				return nil
			case err == nil && st == orchestratorv1.MissionState_MISSION_STATE_FAILED:
				turnedFailed.Add(1)
				stop.Store(true)
				err = fmt.Errorf("mission %s ended FAILED: its tear-down gave up", id)
			case err == nil:
				err = fmt.Errorf("mission %s is %s", id, missionfmt.State(st))
			default:
				if status.Code(err) == codes.Unavailable {
					stop.Store(true)
					unsure.Add(1)
				}
				err = rpcError("cancel mission "+id, err)
			}
			failed.Add(1)
			errOnce.Do(func() { firstErr = err })
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through the counters
	fmt.Fprintf(stdout, "teardown %d missions torn down and %d deleted in %s (-keep keeps them)\n", tornDown.Load(), deleted.Load(), time.Since(t0).Round(time.Millisecond))
	if kept := tornDown.Load() - deleted.Load(); kept > 0 {
		fmt.Fprintf(stdout, "         %d torn-down missions left to the retention: %v\n", kept, deleteErr)
	}
	if n := absent.Load(); n > 0 {
		// Found by a review: missions Redis lost went unmentioned.
		fmt.Fprintf(stdout, "         %d missions not found: their start failed before creating them, or their data is gone (deleted, expired, or lost by Redis)\n", n)
	}
	if n := turnedFailed.Load(); n > 0 {
		fmt.Fprintf(stdout, "         %d missions ended FAILED: their tear-down gave up, and they stay, never expiring, until resumed (slamctl resume, once the fault is repaired) or deleted\n", n)
	}
	if n := unsure.Load(); n > 0 {
		// Found by a review: such a cancel may have landed before the
		// outage, and its mission compensated unseen.
		fmt.Fprintf(stdout, "         %d missions whose cancel found the mesh unavailable for %v: each may have been cancelled all the same (slamctl get tells)\n", n, teardownOutage)
	}
	if n := skipped.Load(); n > 0 {
		fmt.Fprintf(stdout, "         %d missions left as they were after a tear-down failed (cancel and delete them once the mesh is whole)\n", n)
	}
	left := int64(len(ids)) - tornDown.Load() - absent.Load()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("teardown interrupted: %d of %d missions not torn down (the cancels already sent go on compensating on the server): %w", left, len(ids), ctx.Err())
	case failed.Load() > 0:
		return fmt.Errorf("teardown: %d of %d missions not torn down; first: %w", left, len(ids), firstErr)
	}
	return nil
}
