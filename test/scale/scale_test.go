//go:build scale

package scale

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/test/testproc"
)

var (
	flagBin       = flag.String("scale.bin", "", "slammesh binary to run (empty: build cmd/slammesh into the test's temp dir)")
	flagMissions  = flag.Int("scale.missions", 500, "missions of the three-orchestrator phase (with the kills)")
	flagBaseline  = flag.Int("scale.baseline", 200, "missions of the one-orchestrator phase and of the scaled phase without kills (0: skip both)")
	flagOrchs     = flag.Int("scale.orchestrators", 3, "orchestrators of the scaled phase (one is SIGKILLed)")
	flagReplicas  = flag.Int("scale.replicas", 2, "replicas of each step service (one mapping replica is SIGKILLed)")
	flagInflight  = flag.Int("scale.inflight", 32, "most missions in flight at once (concurrent clients)")
	flagKillAt    = flag.Float64("scale.kill-at", 0.4, "fraction of the scaled phase's missions ended when the kills happen")
	flagPhaseTime = flag.Duration("scale.phase-timeout", 5*time.Minute, "longest a phase may take")
	flagSingle    = flag.Bool("scale.single", false, "one redis-server instead of the 6-node Redis Cluster (for comparison)")
	flagLogs      = flag.String("scale.logs", "", "directory to write (and keep) the process logs in (empty: the test's temp dir)")
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestScale runs the one-orchestrator phase, the scaled phase without
// kills (the same missions count, for comparison), then the scaled phase
// with an orchestrator and a step replica SIGKILLed mid-run, on one mesh.
func TestScale(t *testing.T) {
	if *flagOrchs < 2 || *flagReplicas < 2 || *flagMissions < 1 || *flagInflight < 1 {
		t.Fatal("want -scale.orchestrators >= 2, -scale.replicas >= 2, -scale.missions >= 1, -scale.inflight >= 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(*flagPhaseTime)+2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logDir := *flagLogs
	if logDir == "" {
		logDir = dir + "/logs"
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := *flagBin
	if bin == "" {
		var err error
		if bin, err = testproc.BuildSlammesh(ctx, dir); err != nil {
			t.Fatal(err)
		}
	}
	m, err := startMesh(ctx, bin, logDir, *flagSingle, *flagReplicas)
	if err != nil {
		fmt.Print(testproc.TailLogs(logDir, 30))
		t.Fatalf("start the mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("\n==== process logs (tails), from %s\n%s", logDir, testproc.TailLogs(logDir, 25, `"grpc.method":"StartMission"`, `"grpc.method":"GetMission"`))
		}
		m.close()
	})
	redisDesc := "6-node Redis Cluster (3 masters, 3 replicas)"
	if *flagSingle {
		redisDesc = "one redis-server"
	}
	fmt.Printf("scale: %s; %d replicas of each step service: mapping %v, localization %v, merge %v\n",
		redisDesc, *flagReplicas, m.addrs["mapping"], m.addrs["localization"], m.addrs["merge"])

	var results []*phaseResult
	if *flagBaseline > 0 {
		results = append(results, m.runPhase(ctx, t, "1orch", 1, *flagBaseline, false))
		results = append(results, m.runPhase(ctx, t, fmt.Sprintf("%dorchclean", *flagOrchs), *flagOrchs, *flagBaseline, false))
	}
	results = append(results, m.runPhase(ctx, t, fmt.Sprintf("%dorch", *flagOrchs), *flagOrchs, *flagMissions, true))

	fmt.Printf("\n==== scale summary (%s, %d step replicas each, %d clients)\n", redisDesc, *flagReplicas, *flagInflight)
	for _, r := range results {
		fmt.Println(r)
	}
}

// outcome is how one mission went, seen from its client.
type outcome struct {
	state orchestratorv1.MissionState
	// latency is from the first StartMission call to the terminal reply.
	latency time.Duration
	calls   int
	err     error
}

// phaseResult is what a phase measured and found.
type phaseResult struct {
	name                    string
	orchestrators, missions int
	took                    time.Duration
	p50, p99, max           time.Duration
	completed, lost, stuck  int
	doubled, effectsChecked int
	retried                 int
	kills                   []string
}

func (r *phaseResult) String() string {
	kills := "no kills"
	if len(r.kills) > 0 {
		kills = "kills: " + strings.Join(r.kills, "; ")
	}
	return fmt.Sprintf("%-6s %d orchestrator(s): %d missions in %.1fs = %.1f missions/s; latency p50 %s p99 %s max %s; completed %d, lost %d, stuck %d, doubled effects %d (%d counters), %d missions retried on another orchestrator; %s",
		r.name, r.orchestrators, r.missions, r.took.Seconds(), float64(r.missions)/r.took.Seconds(),
		r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond),
		r.completed, r.lost, r.stuck, r.doubled, r.effectsChecked, r.retried, kills)
}

// runPhase starts n orchestrators, runs missions through them from
// -scale.inflight concurrent clients (with kill: SIGKILLs the last
// orchestrator and a mapping replica once -scale.kill-at of them ended),
// checks the outcome and stops the orchestrators.
func (m *mesh) runPhase(ctx context.Context, t *testing.T, name string, n, missions int, kill bool) *phaseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, *flagPhaseTime)
	defer cancel()
	o, err := m.startOrchestrators(ctx, name, n)
	if err != nil {
		t.Fatalf("%s: start orchestrators: %v", name, err)
	}
	defer o.close()
	res := &phaseResult{name: name, orchestrators: n, missions: missions}
	ids := make([]string, missions)
	for i := range ids {
		ids[i] = fmt.Sprintf("scale-%s-%04d", name, i)
	}
	var dead sync.Map // orchestrator index -> true once killed
	var ended atomic.Int64
	killAt := int64(float64(missions) * *flagKillAt)
	killed := make(chan struct{})
	if kill {
		go func() {
			defer close(killed)
			for ended.Load() < killAt && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			victim := len(o.procs) - 1
			dead.Store(victim, true)
			p := o.procs[victim]
			if err := p.Kill(); err == nil {
				res.kills = append(res.kills, fmt.Sprintf("SIGKILL %s pid %d after %d missions ended", p.Name, p.PID(), ended.Load()))
			}
			sp := m.steps["mapping"][len(m.steps["mapping"])-1]
			if err := sp.Kill(); err == nil {
				res.kills = append(res.kills, fmt.Sprintf("SIGKILL %s pid %d", sp.Name, sp.PID()))
			}
		}()
	} else {
		close(killed)
	}

	outs := make([]outcome, missions)
	sem := make(chan struct{}, *flagInflight)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range missions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = runMission(ctx, o, &dead, ids[i], i)
			ended.Add(1)
		})
	}
	wg.Wait()
	res.took = time.Since(begin)
	<-killed

	var lat []time.Duration
	for i, out := range outs {
		if out.calls > 1 {
			res.retried++
		}
		switch {
		case out.err != nil:
			res.lost++
			t.Errorf("%s: mission %s: %v", name, ids[i], out.err)
		case out.state != orchestratorv1.MissionState_MISSION_STATE_COMPLETED:
			res.lost++
			t.Errorf("%s: mission %s ended %s, want COMPLETED (no faults were planned)", name, ids[i], out.state)
		default:
			res.completed++
			lat = append(lat, out.latency)
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50, res.p99, res.max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	m.verify(ctx, t, o, &dead, ids, res)
	return res
}

// callTimeout bounds one StartMission call with wait.
const callTimeout = 2 * time.Minute

// runMission starts mission id with wait on orchestrator first, and on
// UNAVAILABLE, DEADLINE_EXCEEDED or CANCELED (the orchestrator died or
// drains) calls the next live one: StartMission is idempotent on the id,
// and with wait it waits for the existing mission to end.
func runMission(ctx context.Context, o *orchestrators, dead *sync.Map, id string, first int) outcome {
	req := &orchestratorv1.StartMissionRequest{
		MissionId: id,
		Scenario: &typesv1.Scenario{
			Seed: uint64(first + 1), Agents: uint32(1 + first%3), WidthM: float64(10 + first%5), HeightM: float64(8 + first%3),
		},
		Wait: true,
	}
	begin := time.Now()
	var out outcome
	for i := first; ; i++ {
		k := i % len(o.clients)
		if _, isDead := dead.Load(k); isDead {
			continue
		}
		out.calls++
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := o.clients[k].StartMission(cctx, req)
		cancel()
		if err == nil {
			out.state, out.latency = resp.GetMission().GetState(), time.Since(begin)
			return out
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		default:
			out.err = fmt.Errorf("StartMission on orchestrator %d: %w", k, err)
			return out
		}
		if ctx.Err() != nil || out.calls >= 20 {
			out.err = fmt.Errorf("gave up after %d calls: %w", out.calls, err)
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verify checks from Redis and the API that no effect happened twice and
// nothing is stuck: every mission terminal through GetMission, every step's
// action applied once, the active-lease index empty.
func (m *mesh) verify(ctx context.Context, t *testing.T, o *orchestrators, dead *sync.Map, ids []string, res *phaseResult) {
	t.Helper()
	var client orchestratorv1.OrchestratorServiceClient
	for k, c := range o.clients {
		if _, isDead := dead.Load(k); !isDead {
			client = c
			break
		}
	}
	steps := []string{"allocate_map", "localize_agents", "merge_maps"}
	for _, id := range ids {
		resp, err := client.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
		if err != nil {
			res.stuck++
			t.Errorf("%s: GetMission %s: %v", res.name, id, err)
			continue
		}
		switch resp.GetMission().GetState() {
		case orchestratorv1.MissionState_MISSION_STATE_COMPLETED, orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
			orchestratorv1.MissionState_MISSION_STATE_FAILED:
		default:
			res.stuck++
			t.Errorf("%s: mission %s is %s after the run", res.name, id, resp.GetMission().GetState())
		}
		eff, err := m.rdb.HGetAll(ctx, barrier.EffectsKey(id)).Result()
		if err != nil {
			t.Errorf("%s: effects of %s: %v", res.name, id, err)
			continue
		}
		for field, v := range eff {
			res.effectsChecked++
			if n, err := strconv.Atoi(v); err != nil || n > 1 {
				res.doubled++
				t.Errorf("%s: mission %s: effect %s applied %s times", res.name, id, field, v)
			}
		}
		if resp.GetMission().GetState() == orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
			for _, s := range steps {
				if eff[s+":action"] != "1" {
					t.Errorf("%s: completed mission %s: %s:action = %q, want 1", res.name, id, s, eff[s+":action"])
				}
			}
		}
	}
	// The active-lease index is a superset of the unfinished sagas: an
	// entry whose saga ended as its process died is dropped by the next
	// recovery scan of a survivor. Wait for that, bounded.
	var left []string
	deadline := time.Now().Add(activeWait)
	for {
		left = left[:0]
		for _, key := range saga.ActiveShardKeys() {
			members, err := m.rdb.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Errorf("%s: %s: %v", res.name, key, err)
				return
			}
			for _, k := range members {
				if strings.Contains(k, "scale-"+res.name+"-") {
					left = append(left, key+" "+k)
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range left {
		res.stuck++
		t.Errorf("%s: the active-lease index still lists %s %s after the run", res.name, l, activeWait)
	}
}

// activeWait bounds the wait for recovery to drop the active-index
// entries of sagas that ended as their orchestrator was killed.
const activeWait = time.Minute
