//go:build soak

package soak

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/slammesh/slammesh/test/testproc"
)

var (
	flagBin          = flag.String("soak.bin", "", "slammesh binary to run (empty: build cmd/slammesh into the test's temp dir)")
	flagSeed         = flag.Uint64("soak.seed", 1, "seed of the missions and the ports")
	flagDuration     = flag.Duration("soak.duration", 80*time.Second, "how long missions are started (the workload window); the faults are spread over it")
	flagMissions     = flag.Int("soak.missions", 100_000, "most missions to start")
	flagRate         = flag.Float64("soak.rate", 3, "missions started per second")
	flagInflight     = flag.Int("soak.inflight", 16, "most missions in flight at once")
	flagRetention    = flag.Duration("soak.retention", 15*time.Second, "retention of finished missions, given to every service as SLAMMESH_RETENTION")
	flagRestartEvery = flag.Duration("soak.restart-every", time.Minute, "period of the step service restarts (localization, mapping, merge in turn)")
	flagStepDown     = flag.Duration("soak.step-down", 3*time.Second, "how long a restarted step service stays down")
	flagRedisDown    = flag.Duration("soak.redis-down", time.Second, "how long Redis stays down at its restart")
	flagKillDown     = flag.Duration("soak.kill-down", time.Second, "how long the SIGKILLed orchestrator stays down")
	flagSample       = flag.Duration("soak.sample", 5*time.Second, "sampling period of the curve")
	flagSettle       = flag.Duration("soak.settle", time.Minute, "how long every mission may take to end after the workload window")
	flagExpiryGrace  = flag.Duration("soak.expiry-grace", 20*time.Second, "how long past the retention window the keys of the last mission may take to go")
	flagMaxKeys      = flag.Int64("soak.max-keys", 10, "most keys Redis may hold once every mission has expired (the global ones)")
	flagMemSlack     = flag.Int64("soak.mem-slack", 2<<20, "bytes Redis used_memory may grow over its baseline (before the first mission) once every mission has expired")
	flagGoroutines   = flag.Int64("soak.goroutine-slack", 40, "goroutines an idle orchestrator may have over its idle count after the warm-up")
	flagFDs          = flag.Int64("soak.fd-slack", 30, "open fds an idle orchestrator may have over its idle count after the warm-up (room for the Redis pool)")
	flagLogs         = flag.String("soak.logs", "", "directory to write (and keep) the process logs in (empty: the test's temp dir, removed afterwards)")
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// reporter prints progress lines with the time since the run began; stdout,
// not t.Log, so the summary reads as a report.
type reporter struct {
	begin time.Time
	mu    sync.Mutex
}

func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Printf("soak %7.1fs  %s\n", time.Since(r.begin).Seconds(), fmt.Sprintf(format, args...))
}

// victimIdx is the orchestrator the test SIGKILLs once.
const victimIdx = 1

// warmup is how many missions run (and end) before the figures the final
// checks compare with are taken.
const warmup = 8

// TestSoak runs the mixed missions through the faults, then checks
// outcomes, effects, and what the mesh holds once the retention window has
// passed.
func TestSoak(t *testing.T) {
	if *flagDuration <= 0 || *flagRate <= 0 || *flagInflight < 1 || *flagMissions < warmup {
		t.Fatalf("want positive -soak.duration and -soak.rate, -soak.inflight >= 1, -soak.missions >= %d", warmup)
	}
	log := &reporter{begin: time.Now()}
	ctx, cancel := runContext(t)
	defer cancel()
	dir := t.TempDir()
	logDir := *flagLogs
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := binary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	ports := rand.New(rand.NewPCG(*flagSeed, uint64(time.Now().UnixNano())))
	m, err := startMesh(ctx, meshConfig{bin: bin, logDir: logDir, retention: *flagRetention, ports: ports})
	if err != nil {
		fmt.Print(testproc.TailLogs(logDir, 40, `"grpc.method":"GetMission"`, `"grpc.method":"ListMissions"`))
		t.Fatalf("start the mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("\n==== process logs (tails), from %s\n%s", logDir, testproc.TailLogs(logDir, 25, `"grpc.method":"GetMission"`, `"grpc.method":"ListMissions"`))
		}
		m.close()
	})
	log.printf("mesh up: redis %s (AOF in %s), orchestrators %s and %s, retention %s; workload %s at %.1f/s, at most %d in flight",
		m.redis.addr, m.redis.dir, m.replicas[0].grpcAddr(), m.replicas[1].grpcAddr(), *flagRetention, *flagDuration, *flagRate, *flagInflight)

	missionRand := rand.New(rand.NewPCG(*flagSeed, 0x50a4))
	// Every client ends by then (the warm-up, the workload window, the
	// settle bound); a mission unfinished by then is stuck.
	endCtx, endCancel := context.WithTimeout(ctx, time.Minute+*flagDuration+*flagSettle)
	defer endCancel()
	d := &driver{m: m, log: log, end: endCtx}
	smp := newSampler(m, log.begin, d.started.Load, d.done.Load)
	base := smp.take(ctx)
	if base.keys == unknown || base.usedMemory == unknown {
		t.Fatalf("baseline sample incomplete: %+v", base)
	}

	// Warm-up: a few missions of every kind and mode, ended, so that the
	// idle figures the final ones are held to include the pools and
	// connections any mission makes.
	var missions []*mission
	for n := range warmup {
		ms := plan(missionRand, n)
		ms.mode = modes[n%len(modes)].m
		ms.req.Wait = ms.mode == modeWait
		missions = append(missions, ms)
	}
	var wg sync.WaitGroup
	for _, ms := range missions {
		wg.Go(func() { d.run(ms) })
	}
	wg.Wait()
	if err := sleep(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	warm := smp.take(ctx)
	for i, o := range warm.orch {
		if o.goroutines == unknown || o.fds == unknown {
			t.Fatalf("warm-up sample of %s incomplete: %+v", m.replicas[i].name, o)
		}
	}
	log.printf("warm-up: %d missions ended; idle: %s %d goroutines %d fds, %s %d goroutines %d fds; redis %d keys, used_memory %s (baseline %d keys, %s)",
		warmup, m.replicas[0].name, warm.orch[0].goroutines, warm.orch[0].fds, m.replicas[1].name, warm.orch[1].goroutines, warm.orch[1].fds,
		warm.keys, kib(warm.usedMemory), base.keys, kib(base.usedMemory))

	sampleCtx, stopSampling := context.WithCancel(ctx)
	var samplerDone sync.WaitGroup
	samplerDone.Go(func() { smp.loop(sampleCtx, *flagSample, log) })
	defer func() {
		stopSampling()
		samplerDone.Wait()
	}()

	begin := time.Now()
	var (
		faults   []fault
		faultErr error
	)
	wg.Go(func() {
		faults, faultErr = runFaults(ctx, m, smp, log, begin, schedule(*flagDuration, *flagRestartEvery))
	})
	missions = append(missions, d.workload(ctx, missionRand, warmup, *flagMissions-warmup, *flagRate, *flagInflight, *flagDuration)...)
	wg.Wait()
	if faultErr != nil {
		t.Fatalf("faults: %v", faultErr)
	}
	lastEnd := begin
	for _, ms := range missions {
		if ms.endedAt.After(lastEnd) {
			lastEnd = ms.endedAt
		}
	}
	log.printf("every client ended (%d missions); last mission ended %.1fs ago; waiting past the retention window (%s + up to %s)",
		len(missions), time.Since(lastEnd).Seconds(), *flagRetention, *flagExpiryGrace)
	left, err := awaitExpiry(ctx, m, lastEnd.Add(*flagRetention), *flagExpiryGrace, log)
	if err != nil {
		t.Fatalf("await expiry: %v", err)
	}
	stopSampling()
	samplerDone.Wait()
	final := smp.take(ctx)

	var v violations
	st := verifyMissions(missions, faults, &v)
	verifyAfterRetention(ctx, m, missions, left, base, warm, final, &v)
	printSummary(os.Stdout, st, missions, faults, base, warm, final, m, &v, time.Since(log.begin))
	fmt.Printf("\n==== curve (t since the start of the run; keys = DBSIZE; used_mem, dataset = INFO memory; g/fd = goroutines from /metrics, open fds from /proc, per orchestrator incarnation #n)\n")
	printCurve(os.Stdout, smp.all(), [2]string{m.replicas[0].name, m.replicas[1].name})
	if n := v.count(); n > 0 {
		t.Errorf("%d violations (listed above)", n)
	}
}

// runContext ends a while before the test's own deadline, so the cleanup
// that stops the processes always gets to run.
func runContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-30*time.Second))
	}
	return context.WithCancel(context.Background())
}

// fault is one fault the harness caused.
type fault struct {
	what string
	// at is the offset from the workload's start at which the fault began
	// (start), took how long until the process was back and healthy.
	at, took time.Duration
	start    time.Time
	detail   string
}

// plannedFault is a fault of the schedule.
type plannedFault struct {
	at   time.Duration
	kind string // "step", "redis", "kill"
	step string
}

// schedule spreads the faults over the workload window: a step service
// restart every restartEvery (the first a quarter period in, services in
// turn, none in the last 5 s), Redis restarted at 40 % of the window, the
// victim orchestrator SIGKILLed at 60 %.
func schedule(window, restartEvery time.Duration) []plannedFault {
	var out []plannedFault
	for i, at := 0, restartEvery/4; at < window-5*time.Second; i, at = i+1, at+restartEvery {
		out = append(out, plannedFault{at: at, kind: "step", step: stepServices[i%len(stepServices)]})
	}
	out = append(out, plannedFault{at: window * 4 / 10, kind: "redis"}, plannedFault{at: window * 6 / 10, kind: "kill"})
	slices.SortStableFunc(out, func(a, b plannedFault) int { return int(a.at - b.at) })
	return out
}

// runFaults carries out the schedule, one fault after the other, each at
// its offset from begin (or as soon as the previous one is over).
func runFaults(ctx context.Context, m *mesh, smp *sampler, log *reporter, begin time.Time, plan []plannedFault) ([]fault, error) {
	var out []fault
	for _, pf := range plan {
		if err := sleep(ctx, time.Until(begin.Add(pf.at))); err != nil {
			return out, err
		}
		t0 := time.Now()
		f := fault{at: t0.Sub(begin), start: t0}
		switch pf.kind {
		case "step":
			s := m.steps[pf.step]
			f.what = "restart " + pf.step
			clean, err := s.restart(ctx, *flagStepDown)
			if err != nil {
				return out, fmt.Errorf("%s: %w", f.what, err)
			}
			f.detail = fmt.Sprintf("SIGTERM (clean exit %v), down %s, same port %s", clean, *flagStepDown, s.grpcAddr())
		case "redis":
			f.what = "restart redis"
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			before, _ := m.rdb.DBSize(cctx).Result()
			cancel()
			clean, err := m.redis.restart(ctx, *flagRedisDown)
			if err != nil {
				return out, fmt.Errorf("%s: %w", f.what, err)
			}
			cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
			after, _ := m.rdb.DBSize(cctx).Result()
			cancel()
			f.detail = fmt.Sprintf("SIGTERM (clean exit %v), down %s, same port and AOF dir; keys %d before, %d after the reload", clean, *flagRedisDown, before, after)
		case "kill":
			r := m.replicas[victimIdx]
			p, inc, _ := r.current()
			f.what = "SIGKILL " + r.name
			if err := r.crash(ctx, *flagKillDown); err != nil {
				return out, fmt.Errorf("%s: %w", f.what, err)
			}
			f.detail = fmt.Sprintf("incarnation #%d pid %d killed, down %s, restarted on %s", inc, p.PID(), *flagKillDown, r.grpcAddr())
		}
		f.took = time.Since(t0)
		out = append(out, f)
		smp.note("%s", f.what)
		log.printf("fault: %s at +%.1fs, back in %.1fs: %s", f.what, f.at.Seconds(), f.took.Seconds(), f.detail)
	}
	return out, nil
}

// binary returns -soak.bin, or, when it is empty, cmd/slammesh built into
// dir, so the test runs the code it is checked out with rather than
// whatever bin/ holds.
func binary(ctx context.Context, dir string) (string, error) {
	if *flagBin != "" {
		return *flagBin, nil
	}
	return testproc.BuildSlammesh(ctx, dir)
}
