//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/saga"
)

// The saga steps, in order (docs/architecture.md, "Saga steps").
var steps = []string{"allocate_map", "localize_agents", "merge_maps"}

// category is a family of fault plans; its share of the missions and what
// it builds are in categories.
type category struct {
	name   string
	weight float64
	// faults builds the plan of one mission.
	faults func(r *rand.Rand) []*typesv1.Fault
}

// categories is the fault mix. Every kind of fault the services can inject
// appears, on actions and on compensations; the weights sum to 1 and the
// rounding remainder goes to "clean". Stalls cost a full attempt deadline
// (10 s: the orchestrator has no flag to shorten it), so there are few.
var categories = []category{
	{name: "clean", weight: 0.28, faults: func(*rand.Rand) []*typesv1.Fault { return nil }},
	{name: "transient", weight: 0.15, faults: func(r *rand.Rand) []*typesv1.Fault {
		return []*typesv1.Fault{fault(anyStep(r), typesv1.FaultKind_FAULT_KIND_TRANSIENT, times(r), false)}
	}},
	{name: "drop-reply", weight: 0.15, faults: func(r *rand.Rand) []*typesv1.Fault {
		return []*typesv1.Fault{fault(anyStep(r), typesv1.FaultKind_FAULT_KIND_DROP_REPLY, times(r), false)}
	}},
	{name: "transient+drop-reply", weight: 0.09, faults: func(r *rand.Rand) []*typesv1.Fault {
		i := r.IntN(len(steps))
		j := (i + 1 + r.IntN(len(steps)-1)) % len(steps)
		return []*typesv1.Fault{
			fault(steps[i], typesv1.FaultKind_FAULT_KIND_TRANSIENT, times(r), false),
			fault(steps[j], typesv1.FaultKind_FAULT_KIND_DROP_REPLY, 1, false),
		}
	}},
	{name: "stall", weight: 0.03, faults: func(r *rand.Rand) []*typesv1.Fault {
		return []*typesv1.Fault{fault(anyStep(r), typesv1.FaultKind_FAULT_KIND_STALL, 1, false)}
	}},
	{name: "business@allocate_map", weight: 0.06, faults: businessAt(0)},
	{name: "business@localize_agents", weight: 0.06, faults: businessAt(1)},
	{name: "business@merge_maps", weight: 0.06, faults: businessAt(2)},
	// A business failure at step k, and a transient failure or a lost reply
	// in the compensation of a step j <= k: still COMPENSATED.
	{name: "business+compensation-fault", weight: 0.08, faults: func(r *rand.Rand) []*typesv1.Fault {
		k := 1 + r.IntN(len(steps)-1)
		j := r.IntN(k + 1)
		kind := typesv1.FaultKind_FAULT_KIND_TRANSIENT
		if r.IntN(2) == 0 {
			kind = typesv1.FaultKind_FAULT_KIND_DROP_REPLY
		}
		return []*typesv1.Fault{
			fault(steps[k], typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, 1, false),
			fault(steps[j], kind, times(r), true),
		}
	}},
	// A compensation that can never succeed: the only planned FAILED.
	{name: "compensation-impossible", weight: 0.02, faults: func(r *rand.Rand) []*typesv1.Fault {
		k := 1 + r.IntN(len(steps)-1)
		j := r.IntN(k + 1)
		return []*typesv1.Fault{
			fault(steps[k], typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, 1, false),
			fault(steps[j], typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, 1, true),
		}
	}},
}

func fault(step string, kind typesv1.FaultKind, n uint32, compensation bool) *typesv1.Fault {
	return &typesv1.Fault{Step: step, Kind: kind, Times: n, Compensation: compensation}
}

func anyStep(r *rand.Rand) string { return steps[r.IntN(len(steps))] }

// times is 1 or 2: below the saga's 5 attempts, so the step still succeeds.
func times(r *rand.Rand) uint32 { return 1 + r.Uint32N(2) }

func businessAt(i int) func(*rand.Rand) []*typesv1.Fault {
	return func(*rand.Rand) []*typesv1.Fault {
		return []*typesv1.Fault{fault(steps[i], typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR, 1, false)}
	}
}

// plan is one mission of the run and the outcome its faults dictate.
type plan struct {
	id       string
	category string
	agents   int
	req      *orchestratorv1.StartMissionRequest
	want     orchestratorv1.MissionState
}

// expectedState derives a mission's outcome from its faults alone: a
// business error on an action compensates; a business error on the
// compensation of a step at or before the failed one (every attempted step
// is compensated, the failed one included) cannot be undone: FAILED.
// Transient failures, lost replies and stalls are retried away.
func expectedState(faults []*typesv1.Fault) orchestratorv1.MissionState {
	failedAt := -1
	for _, f := range faults {
		if !f.GetCompensation() && f.GetKind() == typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR {
			failedAt = stepIndex(f.GetStep())
		}
	}
	if failedAt < 0 {
		return orchestratorv1.MissionState_MISSION_STATE_COMPLETED
	}
	for _, f := range faults {
		if f.GetCompensation() && f.GetKind() == typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR && stepIndex(f.GetStep()) <= failedAt {
			return orchestratorv1.MissionState_MISSION_STATE_FAILED
		}
	}
	return orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
}

func stepIndex(name string) int {
	for i, s := range steps {
		if s == name {
			return i
		}
	}
	return -1
}

// makePlans draws n missions from seed: small worlds (10–14 × 8–10 m, the
// generator's minimum is 10 × 8) with 1–3 agents, in a shuffled fault mix.
func makePlans(seed uint64, n int) []plan {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	counts := make([]int, len(categories))
	total := 0
	for i := 1; i < len(categories); i++ {
		counts[i] = int(math.Round(categories[i].weight * float64(n)))
		total += counts[i]
	}
	counts[0] = max(n-total, 0)
	var cats []int
	for i, c := range counts {
		for range c {
			cats = append(cats, i)
		}
	}
	cats = cats[:n]
	r.Shuffle(len(cats), func(i, j int) { cats[i], cats[j] = cats[j], cats[i] })
	plans := make([]plan, n)
	for i, ci := range cats {
		c := categories[ci]
		faults := c.faults(r)
		agents := 1 + r.IntN(3)
		req := &orchestratorv1.StartMissionRequest{
			MissionId: fmt.Sprintf("chaos-%d-%03d", seed, i),
			Scenario: &typesv1.Scenario{
				Seed:    r.Uint64N(1_000_000),
				Agents:  uint32(agents),
				WidthM:  float64(10 + r.IntN(5)),
				HeightM: float64(8 + r.IntN(3)),
			},
		}
		if len(faults) > 0 {
			req.Faults = &typesv1.FaultPlan{Faults: faults}
		}
		plans[i] = plan{id: req.GetMissionId(), category: c.name, agents: agents, req: req, want: expectedState(faults)}
	}
	return plans
}

// startOutcome is how one mission's StartMission went.
type startOutcome struct {
	// calls counts StartMission calls; more than one means a retry.
	calls int
	// created is the answer of the call that succeeded: false when an
	// earlier call, whose reply was lost, had created the mission already.
	created bool
	replica string
	// traceID is the mission's trace id as the successful call returned it.
	traceID string
	err     error
	// took is from the first call to the last answer; failures are the
	// codes of the calls that were retried.
	took     time.Duration
	failures []codes.Code
}

// startTimeout bounds one StartMission call (wait is false: it returns as
// soon as the record exists).
const startTimeout = 5 * time.Second

// startMission starts p on replica first, and retries on the other replica
// while the answer is UNAVAILABLE or DEADLINE_EXCEEDED: StartMission is
// idempotent on mission_id, so a retry after a lost reply returns the same
// mission. A mission created by a replica teaches the test that
// incarnation's saga owner name.
func (m *mesh) startMission(ctx context.Context, p plan, first int) (out startOutcome) {
	begin := time.Now()
	defer func() { out.took = time.Since(begin) }()
	wait := 50 * time.Millisecond
	for i := first; ; i++ {
		r := m.replicas[i%2]
		_, inc := r.current()
		out.calls++
		cctx, cancel := context.WithTimeout(ctx, startTimeout)
		resp, err := r.rpc().StartMission(cctx, p.req)
		cancel()
		if err == nil {
			out.created, out.replica, out.traceID = resp.GetCreated(), r.name, resp.GetMission().GetTraceId()
			if resp.GetCreated() {
				if owner, err := m.rdb.HGet(ctx, saga.RecordKey(p.id), "owner").Result(); err == nil {
					if _, now := r.current(); now == inc {
						r.learnOwner(inc, owner)
					}
				}
			}
			return out
		}
		out.failures = append(out.failures, status.Code(err))
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded:
		default:
			out.err = fmt.Errorf("StartMission %s on %s: %w", p.id, r.name, err)
			return out
		}
		if ctx.Err() != nil || out.calls >= 40 {
			out.err = fmt.Errorf("StartMission %s: gave up after %d calls: %w", p.id, out.calls, err)
			return out
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			out.err = fmt.Errorf("StartMission %s: %w", p.id, ctx.Err())
			return out
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// startAll starts the plans in bursts spread evenly over window, every
// mission of a burst at once, alternating the first replica tried. It
// returns when every StartMission has returned.
func (m *mesh) startAll(ctx context.Context, plans []plan, bursts int, window time.Duration, log *reporter) []startOutcome {
	out := make([]startOutcome, len(plans))
	var wg sync.WaitGroup
	per := (len(plans) + bursts - 1) / bursts
	begin := time.Now()
	for b := 0; b*per < len(plans); b++ {
		if b > 0 {
			at := begin.Add(time.Duration(b) * window / time.Duration(bursts))
			t := time.NewTimer(time.Until(at))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		lo, hi := b*per, min((b+1)*per, len(plans))
		for i := lo; i < hi; i++ {
			wg.Go(func() { out[i] = m.startMission(ctx, plans[i], i) })
		}
		log.printf("burst %d: started missions %d..%d", b+1, lo, hi-1)
	}
	wg.Wait()
	return out
}
