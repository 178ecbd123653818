//go:build chaos

package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/test/testproc"
)

var (
	flagBin      = flag.String("chaos.bin", "", "slammesh binary to run (empty: build cmd/slammesh into the test's temp dir)")
	flagSeed     = flag.Uint64("chaos.seed", 1, "seed of the missions, their faults and the kill moments")
	flagMissions = flag.Int("chaos.missions", 200, "missions to run")
	flagKills    = flag.Int("chaos.kills", 3, "SIGKILLs of the victim orchestrator (at least 3)")
	flagBursts   = flag.Int("chaos.bursts", 10, "bursts the missions are started in")
	flagWindow   = flag.Duration("chaos.window", 20*time.Second, "span over which the bursts and the kills are spread")
	flagSettle   = flag.Duration("chaos.settle", 2*time.Minute, "how long every mission may take to end after the last start and restart")
	flagBound    = flag.Duration("chaos.recovery-bound", 5*time.Second, "longest allowed time from a kill to the resumption of its last orphaned saga")
	flagOrphans  = flag.Int("chaos.orphans", 3, "sagas mid-step (running or compensating) the victim should drive when it is killed (it waits up to 15s for them, then kills anyway)")
	flagLogs     = flag.String("chaos.logs", "", "directory to write (and keep) the process logs in (empty: the test's temp dir, removed afterwards)")
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
	fmt.Printf("chaos %6.1fs  %s\n", time.Since(r.begin).Seconds(), fmt.Sprintf(format, args...))
}

// victimIdx is the replica the test kills; replicas[1-victimIdx] survives.
const victimIdx = 1

// TestChaos runs the missions against two orchestrators while killing one,
// then checks outcomes, effects, leftovers and recovery times.
func TestChaos(t *testing.T) {
	if *flagKills < 3 || *flagMissions < 1 || *flagBursts < 1 {
		t.Fatalf("want -chaos.kills >= 3, -chaos.missions >= 1, -chaos.bursts >= 1")
	}
	log := &reporter{begin: time.Now()}
	// A CI report shows the end of the output: the cleanup prints the
	// reason of a failure again after the process logs, so it is there.
	var (
		v      violations
		reason string
		// autopsy describes the missions left unfinished (postMortem).
		autopsy string
	)
	fatalf := func(format string, args ...any) {
		reason = fmt.Sprintf(format, args...)
		t.Fatal(reason)
	}
	ctx, cancel := runContext(t)
	defer cancel()

	dir := t.TempDir()
	logDir := *flagLogs
	if logDir == "" {
		logDir = dir + "/logs"
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if *flagBin == "" {
		log.printf("building cmd/slammesh")
	}
	bin, err := binary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	plans := makePlans(*flagSeed, *flagMissions)
	m, err := startMesh(ctx, meshConfig{bin: bin, logDir: logDir, capacityCells: 50_000_000, cluster: onCluster()})
	if err != nil {
		fmt.Print(testproc.TailLogs(logDir, 40, `"grpc.method":"ListMissions"`))
		fatalf("start the mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("\n==== process logs (tails), from %s\n%s", logDir, testproc.TailLogs(logDir, 30, `"grpc.method":"ListMissions"`))
			printFailure(reason, &v, autopsy)
		}
		m.close()
	})
	a, _ := m.replicas[0].current()
	b, _ := m.replicas[1].current()
	redisDesc := "redis-server"
	if m.redis != nil {
		redisDesc += " " + m.redis.Addr
	} else {
		redisDesc = "redis cluster " + strings.Join(m.cluster.Addrs(), ",")
	}
	log.printf("mesh up: %s, orchestrator-a pid %d at %s, orchestrator-b pid %d at %s (victim); seed %d, %d missions, %d kills",
		redisDesc, a.PID(), m.replicas[0].addr(), b.PID(), m.replicas[1].addr(), *flagSeed, len(plans), *flagKills)

	// The kills draw from their own stream, so the missions stay the same
	// whatever -chaos.kills says.
	killRand := rand.New(rand.NewPCG(*flagSeed, 0xdead))
	begin := time.Now()
	var (
		kills   []*kill
		killErr error
		rfaults []*redisFault
		rErr    error
		starts  []startOutcome
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		kills, killErr = m.killLoop(ctx, killRand, victimIdx, planIDs(plans), *flagKills, *flagOrphans, *flagWindow, *flagBound, begin, log)
	})
	if m.cluster != nil {
		wg.Go(func() { rfaults, rErr = m.redisFaultLoop(ctx, *flagWindow, begin, log) })
	}
	starts = m.startAll(ctx, plans, *flagBursts, *flagWindow, log)
	log.printf("all %d StartMission calls returned", len(plans))
	wg.Wait()
	if killErr != nil {
		fatalf("kill loop: %v", killErr)
	}
	if rErr != nil {
		fatalf("redis faults: %v", rErr)
	}
	log.printf("kills done; waiting up to %s for every mission to end", *flagSettle)

	missions, err := m.awaitTerminal(ctx, planIDs(plans), *flagSettle, log)
	if err != nil {
		fatalf("await the end of the missions: %v", err)
	}
	if err := measureRecovery(ctx, m.rdb, kills); err != nil {
		fatalf("measure recovery: %v", err)
	}
	if err := measureRedisRecovery(ctx, m.rdb, rfaults, planIDs(plans)); err != nil {
		fatalf("measure recovery from the redis faults: %v", err)
	}
	got := m.getMissions(ctx, planIDs(plans))
	lossy, err := accountingKilled(ctx, m.rdb, rfaults)
	if err != nil {
		fatalf("the map accounting's master: %v", err)
	}
	st, err := verify(ctx, m.rdb, plans, starts, missions, got, &v, lossy)
	if err != nil {
		fatalf("verify: %v", err)
	}
	checkRecovery(kills, rfaults, m, *flagBound, &v)
	if err := checkSlots(ctx, m, &v); err != nil {
		fatalf("slot watch: %v", err)
	}
	st.worldRefused = m.judgeOffPlan(ctx, st.offPlan, &v, log)
	autopsy = postMortem(ctx, m.rdb, st.unfinished)
	printSummary(plans, st, kills, m, &v, *flagBound, time.Since(log.begin))
	printRedisFaults(rfaults)
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

// awaitTerminal polls ListMissions (on whichever replica answers) until
// every mission of ids has ended or settle has passed, and returns the last
// listing.
func (m *mesh) awaitTerminal(ctx context.Context, ids []string, settle time.Duration, log *reporter) (map[string]*orchestratorv1.Mission, error) {
	ctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastReport := time.Now()
	var last map[string]*orchestratorv1.Mission
	for {
		missions, err := m.listMissions(ctx)
		if err == nil {
			last = missions
			open := map[string]int{}
			for _, id := range ids {
				if ms, ok := missions[id]; !ok || !terminalState(ms.GetState()) {
					open[stateName(ms.GetState())]++
				}
			}
			if len(open) == 0 {
				return last, nil
			}
			if time.Since(lastReport) >= 5*time.Second {
				log.printf("still unfinished: %v", open)
				lastReport = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, fmt.Errorf("no listing before the deadline: %w", err)
			}
			log.printf("settle deadline passed with missions unfinished")
			return last, nil
		case <-tick.C:
		}
	}
}

// listMissions pages through ListMissions on the first replica that answers.
func (m *mesh) listMissions(ctx context.Context) (map[string]*orchestratorv1.Mission, error) {
	var lastErr error
	for _, r := range m.replicas {
		out := make(map[string]*orchestratorv1.Mission)
		token := ""
		for {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := r.rpc().ListMissions(cctx, &orchestratorv1.ListMissionsRequest{PageSize: 1000, PageToken: token})
			cancel()
			if err != nil {
				lastErr = fmt.Errorf("ListMissions on %s: %w", r.name, err)
				break
			}
			for _, ms := range resp.GetMissions() {
				out[ms.GetMissionId()] = ms
			}
			if token = resp.GetNextPageToken(); token == "" {
				return out, nil
			}
		}
	}
	return nil, lastErr
}

// gotMission is one GetMission answer.
type gotMission struct {
	mission *orchestratorv1.Mission
	err     error
}

// getMissions reads every mission of ids with GetMission, on the first
// replica that answers.
func (m *mesh) getMissions(ctx context.Context, ids []string) map[string]gotMission {
	out := make(map[string]gotMission, len(ids))
	for _, id := range ids {
		var errs []error
		for _, r := range m.replicas {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := r.rpc().GetMission(cctx, &orchestratorv1.GetMissionRequest{MissionId: id})
			cancel()
			if err == nil {
				out[id] = gotMission{mission: resp.GetMission()}
				break
			}
			errs = append(errs, fmt.Errorf("GetMission on %s: %w", r.name, err))
		}
		if _, ok := out[id]; !ok {
			out[id] = gotMission{err: errors.Join(errs...)}
		}
	}
	return out
}

// checkRecovery wants the kills to have orphaned sagas (at least one kill
// must, or recovery was not exercised), every orphan to have been resumed —
// by the survivor when the victim stayed down — and each kill's last
// resumption within bound, plus the part of any Redis fault's outage that
// fell inside that time (see redisHold). A single kill may find the victim
// idle: on a cluster the last kill can come after a master failover has
// held the missions back and the workload has drained (its line says so).
func checkRecovery(kills []*kill, rfaults []*redisFault, m *mesh, bound time.Duration, v *violations) {
	survivor, _ := m.replicas[1-victimIdx].owner(0)
	orphaned := 0
	for _, kl := range kills {
		orphaned += len(kl.orphans)
	}
	if len(kills) > 0 && orphaned == 0 {
		v.add("recovery", "no kill of %d orphaned a saga: recovery was not exercised", len(kills))
	}
	for _, kl := range kills {
		for _, o := range kl.orphans {
			switch {
			case o.resumedAt.IsZero():
				v.add("recovery", "kill %d: %s (%s at the kill, owner %s) was never resumed", kl.n, o.id, o.state, kl.victim)
			case kl.failover && o.resumer != survivor:
				v.add("recovery", "kill %d: %s resumed as %q while only the survivor %s was up", kl.n, o.id, o.message, survivor)
			}
		}
		if hold := redisHold(kl, rfaults); kl.recovery > bound+hold {
			v.add("recovery", "kill %d: last orphan resumed %.2fs after the kill, bound %s + %s of Redis outage", kl.n, kl.recovery.Seconds(), bound, hold.Round(time.Millisecond))
		}
	}
}

// redisHold is how much of the Redis faults' outages fell between kill kl
// and its last resumption: an orphan whose record lives on a master being
// failed over or killed cannot be claimed until the mesh writes to its new
// master (redisFault.meshRecovery; the promotion when no mission wrote
// there after it).
func redisHold(kl *kill, rfaults []*redisFault) time.Duration {
	var hold time.Duration
	for _, f := range rfaults {
		out := f.promotedIn
		if f.writes {
			out = f.meshRecovery
		}
		from, to := f.at, f.at.Add(out)
		if kl.at.After(from) {
			from = kl.at
		}
		if end := kl.at.Add(kl.recovery); end.Before(to) {
			to = end
		}
		if to.After(from) {
			hold += to.Sub(from)
		}
	}
	return hold
}

func printSummary(plans []plan, st *stats, kills []*kill, m *mesh, v *violations, bound time.Duration, took time.Duration) {
	states := []orchestratorv1.MissionState{
		orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		orchestratorv1.MissionState_MISSION_STATE_FAILED,
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATING,
		orchestratorv1.MissionState_MISSION_STATE_RUNNING,
		orchestratorv1.MissionState_MISSION_STATE_PENDING,
	}
	fmt.Printf("\n==== chaos summary (seed %d, %d missions, %d kills, %.1fs)\n", *flagSeed, len(plans), len(kills), took.Seconds())
	var parts []string
	for _, s := range states {
		if n := st.byState[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", stateName(s), n))
		}
	}
	planned := 0
	for _, p := range plans {
		if p.want == orchestratorv1.MissionState_MISSION_STATE_FAILED {
			planned++
		}
	}
	fmt.Printf("missions by state:     %s (FAILED planned: %d)\n", strings.Join(parts, ", "), planned)
	if n := len(st.worldRefused); n > 0 {
		fmt.Printf("refused by their world: %d, without faults too, so not the chaos's doing: %s\n", n, strings.Join(st.worldRefused, ", "))
	}
	fmt.Printf("missions by fault plan:\n")
	for _, c := range categories {
		byState := st.byCategory[c.name]
		total := 0
		var ps []string
		for _, s := range states {
			if n := byState[s]; n > 0 {
				total += n
				ps = append(ps, fmt.Sprintf("%s %d", stateName(s), n))
			}
		}
		fmt.Printf("  %-28s %4d  %s\n", c.name, total, strings.Join(ps, ", "))
	}
	fmt.Printf("faults injected:       %s", fmtCounts(st.faults))
	fmt.Printf("\nStartMission:          answered by %s; %d missions needed a retry on the other replica, %d found already created by a call whose reply was lost; slowest %s\n",
		fmtCounts(st.startsBy), st.startRetries, st.startsFoundExisting, st.slowestStart)
	fmt.Printf("effects checked:       %d <step>:<op> counters over %d missions, max %d (want <= 1)\n", st.effectCounters, st.missionsChecked, st.effectMax)
	fmt.Printf("capacity:              %d cells in use, %d held by maps left in Redis\n", st.capacityUsed, st.capacityHeld)
	if len(st.chargesLost) > 0 {
		fmt.Printf("charges lost with the SIGKILLed master of the map accounting (documented: the maps are held uncharged until they go): %v\n", st.chargesLost)
	}
	fmt.Printf("takeovers:             %d missions resumed by another owner, %d takeovers in all (epochs checked)\n", st.resumedMissions, st.takeovers)
	fmt.Printf("trace ids:             %d/%d missions with one valid trace id on all their events, the one StartMission, GetMission and ListMissions return\n",
		len(st.oneTrace), len(plans))

	survivor := m.replicas[1-victimIdx]
	survivorOwner, _ := survivor.owner(0)
	victim := m.replicas[victimIdx]
	var worst time.Duration
	fmt.Printf("recovery (bound %s; survivor %s owner %s):\n", bound, survivor.name, survivorOwner)
	for _, kl := range kills {
		bySurvivor, byRestarted, other, never := 0, 0, 0, 0
		restartedOwner, _ := victim.owner(kl.restartInc)
		for _, o := range kl.orphans {
			switch {
			case o.resumedAt.IsZero():
				never++
			case o.resumer == survivorOwner:
				bySurvivor++
			case o.resumer == restartedOwner:
				byRestarted++
			default:
				other++
			}
		}
		worst = max(worst, kl.recovery)
		learned := ""
		if !kl.learned {
			learned = " (assumed hostname:pid)"
		}
		last := fmt.Sprintf("%.2fs", kl.recovery.Seconds())
		if never > 0 || len(kl.orphans) == 0 {
			last = "n/a"
		}
		moved := ""
		if kl.moved != nil {
			moved = fmt.Sprintf(" (%s was taken: moved to %s)", kl.moved.from, kl.moved.to)
		}
		fmt.Printf("  kill %d (%s) %.1fs into the workload, pid %d owner %s%s: %d orphans; resumed by survivor %d, by restarted victim %d, other/unnamed %d, never %d; last resume %s after the kill; restart healthy in %.2fs%s\n",
			kl.n, kl.mode(), kl.offset.Seconds(), kl.victimPID, kl.victim, learned, len(kl.orphans), bySurvivor, byRestarted, other, never,
			last, kl.healthyIn.Seconds(), moved)
		for _, o := range kl.orphans {
			if !o.resumedAt.IsZero() {
				fmt.Printf("      %s (%s at the kill): +%.2fs %q\n", o.id, o.state, o.resumedAt.Sub(kl.at).Seconds(), o.message)
			}
		}
	}
	fmt.Printf("  max recovery %.2fs\n", worst.Seconds())
	// The missions a kill orphaned and another run resumed after it; a
	// mission orphaned by two kills counts once.
	resumed := make(map[string]bool)
	for _, kl := range kills {
		for _, o := range kl.orphans {
			if !o.resumedAt.IsZero() {
				resumed[o.id] = true
			}
		}
	}
	oneTrace := 0
	for id := range resumed {
		if st.oneTrace[id] {
			oneTrace++
		}
	}
	fmt.Printf("resumed missions with one trace id: %d/%d (resumed after a SIGKILL; of every mission with a \"resumed by\" event: %d/%d)\n",
		oneTrace, len(resumed), st.resumedOneTrace, st.resumedMissions)

	n := v.count()
	fmt.Printf("violations:            %d", n)
	if n > 0 {
		fmt.Printf(" (%s)\n", fmtCounts(v.byKind))
		for _, line := range head(v.list, 60) {
			fmt.Printf("  - %s\n", line)
		}
		if n > 60 {
			fmt.Printf("  … and %d more\n", n-60)
		}
	} else {
		fmt.Println()
	}
}

// printFailure prints why the run failed: reason, the error that ended it,
// or else the first violations and the autopsy of the missions left
// unfinished.
func printFailure(reason string, v *violations, autopsy string) {
	fmt.Printf("\n==== TestChaos failed (seed %d): ", *flagSeed)
	if reason != "" {
		fmt.Println(reason)
		return
	}
	n := v.count()
	fmt.Printf("%d violations (%s)\n", n, fmtCounts(v.byKind))
	for _, line := range head(v.list, 10) {
		fmt.Printf("  - %s\n", line)
	}
	fmt.Print(autopsy)
}

// fmtCounts prints a count per name, names sorted.
func fmtCounts(c map[string]int) string {
	names := make([]string, 0, len(c))
	for k := range c {
		names = append(names, k)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

// binary returns -chaos.bin, or, when it is empty, cmd/slammesh built into
// dir, so the test runs the code it is checked out with rather than
// whatever bin/ holds.
func binary(ctx context.Context, dir string) (string, error) {
	if *flagBin != "" {
		return *flagBin, nil
	}
	return testproc.BuildSlammesh(ctx, dir)
}
