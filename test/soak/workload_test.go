//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
)

// kind is a family of scenario missions and the state it ends in when
// nothing cancels it.
type kind struct {
	name   string
	weight float64
	want   orchestratorv1.MissionState
	// scenario builds one mission's scenario. The worlds come from a few
	// seeds per kind, so the orchestrator's scenario cache spares most of
	// the generation; each (seed, size, agents, kind) is deterministic, and
	// these were checked to end as want.
	scenario func(r *rand.Rand) *typesv1.Scenario
}

var kinds = []kind{
	{name: "office", weight: 0.6, want: orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
		scenario: func(r *rand.Rand) *typesv1.Scenario {
			return &typesv1.Scenario{Seed: uint64(1 + r.IntN(8)), Agents: uint32(1 + r.IntN(3)), WidthM: 12, HeightM: 10,
				Kind: typesv1.ScenarioKind_SCENARIO_KIND_OFFICE}
		}},
	{name: "sealed-agent", weight: 0.2, want: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		scenario: func(r *rand.Rand) *typesv1.Scenario {
			return &typesv1.Scenario{Seed: uint64(3 + 4*r.IntN(2)), Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_SEALED_AGENT}
		}},
	{name: "changed-world", weight: 0.2, want: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		scenario: func(r *rand.Rand) *typesv1.Scenario {
			return &typesv1.Scenario{Seed: uint64(7 + 4*r.IntN(2)), Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD}
		}},
}

// mode is how the client drives a mission.
type mode string

const (
	// modePoll starts without wait and polls GetMission.
	modePoll mode = "poll"
	// modeWait starts with wait, calling again (idempotent on mission_id)
	// while the call fails transiently.
	modeWait mode = "wait"
	// modeWatch starts without wait and follows WatchMission, resuming
	// after the last event it got when the stream breaks.
	modeWatch mode = "watch"
	// modeCancel starts without wait and cancels after a random delay.
	modeCancel mode = "cancel"
)

var modes = []struct {
	m      mode
	weight float64
}{{modePoll, 0.3}, {modeWait, 0.25}, {modeWatch, 0.25}, {modeCancel, 0.2}}

// mission is one mission of the run and what happened to it, as its client
// saw it.
type mission struct {
	id      string
	kind    kind
	mode    mode
	replica int
	req     *orchestratorv1.StartMissionRequest
	// cancelAfter is how long after its start a modeCancel mission is
	// cancelled.
	cancelAfter time.Duration

	mu        sync.Mutex
	startedAt time.Time
	endedAt   time.Time
	startErr  error
	// startCalls counts StartMission calls; more than one means retries.
	startCalls int
	// cancelled: a CancelMission call was answered; cancelErr: none was.
	cancelled bool
	cancelErr error
	// final is the mission as last read; terminal unless it got stuck.
	final *orchestratorv1.Mission
	// effects is the mission's effects hash as read when it ended (before
	// it can expire); effectsErr when that read failed.
	effects    map[string]string
	effectsErr error
	// waitEnded: a wait call returned the mission ended.
	waitEnded bool
	// watch outcome: the terminal event type seen (empty: none), the
	// streams opened, and the errors that broke them, by code.
	watchTerminal string
	watchStreams  int
	watchErrs     map[codes.Code]int
	// transient counts calls that failed UNAVAILABLE/DEADLINE_EXCEEDED and
	// were retried, by RPC.
	transient map[string]int
}

// want is the state the mission must end in: its kind's, or COMPENSATED
// once a cancellation was accepted (a running mission compensates, an
// ended one is torn down).
func (ms *mission) want() orchestratorv1.MissionState {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.cancelled {
		return orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
	}
	return ms.kind.want
}

func (ms *mission) noteTransient(rpc string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.transient == nil {
		ms.transient = make(map[string]int)
	}
	ms.transient[rpc]++
}

// plan draws the next mission.
func plan(r *rand.Rand, n int) *mission {
	k := kinds[pick(r, len(kinds), func(i int) float64 { return kinds[i].weight })]
	md := modes[pick(r, len(modes), func(i int) float64 { return modes[i].weight })].m
	id := fmt.Sprintf("soak-%05d", n)
	ms := &mission{
		id: id, kind: k, mode: md, replica: n % 2,
		req:         &orchestratorv1.StartMissionRequest{MissionId: id, Scenario: k.scenario(r), Wait: md == modeWait},
		cancelAfter: time.Duration(r.IntN(250)) * time.Millisecond,
	}
	return ms
}

// pick draws an index by weight.
func pick(r *rand.Rand, n int, weight func(int) float64) int {
	x := r.Float64()
	for i := range n {
		if x -= weight(i); x < 0 {
			return i
		}
	}
	return n - 1
}

// transient reports whether a call that failed with err is worth another
// try: the service or Redis is briefly away.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// terminal reports whether a mission in state s has ended for good, for a
// client that cancelled it (a COMPLETED mission is then on its way to
// COMPENSATED) or not.
func terminal(s orchestratorv1.MissionState, cancelled bool) bool {
	switch s {
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATED, orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return true
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED:
		return !cancelled
	}
	return false
}

// driver runs missions against the mesh.
type driver struct {
	m   *mesh
	log *reporter
	// end bounds every mission's client: past it, an unfinished mission
	// counts as stuck.
	end context.Context
	// started counts missions whose client began, done those whose client
	// ended.
	started, done atomic.Int64
}

// run drives one mission from its start to its end (or until d.end) and
// reads its effects as it ends.
func (d *driver) run(ms *mission) {
	ctx := d.end
	d.started.Add(1)
	ms.mu.Lock()
	ms.startedAt = time.Now()
	ms.mu.Unlock()
	resp, err := d.start(ctx, ms)
	if err != nil {
		ms.mu.Lock()
		ms.startErr = err
		ms.mu.Unlock()
		return
	}
	var wg sync.WaitGroup
	switch ms.mode {
	case modeWait:
		if terminal(resp.GetMission().GetState(), false) {
			ms.mu.Lock()
			ms.waitEnded = true
			ms.mu.Unlock()
		}
	case modeWatch:
		wg.Go(func() { d.watch(ctx, ms) })
	case modeCancel:
		if sleep(ctx, ms.cancelAfter) == nil {
			d.cancel(ctx, ms)
		}
	}
	d.await(ctx, ms)
	wg.Wait()
	d.done.Add(1)
}

// start calls StartMission on the mission's replica, and while the answer
// is transient, again on the other (it is idempotent on mission_id; with
// wait it waits again).
func (d *driver) start(ctx context.Context, ms *mission) (*orchestratorv1.StartMissionResponse, error) {
	wait := 100 * time.Millisecond
	timeout := 10 * time.Second
	if ms.req.GetWait() {
		timeout = 2 * time.Minute
	}
	for i := ms.replica; ; i++ {
		ms.mu.Lock()
		ms.startCalls++
		ms.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := d.m.rpc(i).StartMission(cctx, ms.req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !transient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("StartMission on %s: %w", d.m.replicas[i%2].name, err)
		}
		ms.noteTransient("StartMission")
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("StartMission: %w", err)
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// cancel calls CancelMission (without wait) until one call is answered or
// the answer is not transient.
func (d *driver) cancel(ctx context.Context, ms *mission) {
	wait := 100 * time.Millisecond
	for i := ms.replica; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := d.m.rpc(i).CancelMission(cctx, &orchestratorv1.CancelMissionRequest{MissionId: ms.id, Reason: "soak"})
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			ms.mu.Lock()
			ms.cancelled, ms.cancelErr = err == nil, err
			ms.mu.Unlock()
			return
		}
		ms.noteTransient("CancelMission")
		if sleep(ctx, wait) != nil {
			return
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// await polls GetMission until the mission has ended (or ctx ends), then
// reads its effects.
func (d *driver) await(ctx context.Context, ms *mission) {
	ms.mu.Lock()
	cancelled := ms.cancelled
	ms.mu.Unlock()
	for i := ms.replica; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := d.m.rpc(i).GetMission(cctx, &orchestratorv1.GetMissionRequest{MissionId: ms.id})
		cancel()
		if err == nil {
			ms.mu.Lock()
			ms.final = resp.GetMission()
			ms.mu.Unlock()
			if terminal(resp.GetMission().GetState(), cancelled) {
				ms.mu.Lock()
				ms.endedAt = time.Now()
				ms.mu.Unlock()
				d.readEffects(ctx, ms)
				return
			}
		} else if transient(err) {
			ms.noteTransient("GetMission")
		}
		if sleep(ctx, 300*time.Millisecond) != nil {
			// Stuck: read what effects there are for the report.
			d.readEffects(context.WithoutCancel(ctx), ms)
			return
		}
	}
}

// readEffects reads the mission's effects hash, retrying while Redis is
// away (it may be restarting).
func (d *driver) readEffects(ctx context.Context, ms *mission) {
	var (
		h   map[string]string
		err error
	)
	for try := 0; try < 50; try++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err = d.m.rdb.HGetAll(cctx, barrier.EffectsKey(ms.id)).Result()
		cancel()
		if err == nil || errors.Is(err, redis.Nil) {
			err = nil
			break
		}
		if sleep(ctx, 200*time.Millisecond) != nil {
			break
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.effects, ms.effectsErr = h, err
}

// watch follows the mission's events with WatchMission until a terminal
// event, opening the stream again after the last event it got whenever it
// breaks (a restarting orchestrator or Redis), as a dashboard would.
func (d *driver) watch(ctx context.Context, ms *mission) {
	from := ""
	wait := 100 * time.Millisecond
	for i := ms.replica; ctx.Err() == nil; i++ {
		ms.mu.Lock()
		ms.watchStreams++
		ms.mu.Unlock()
		terminalType, last, err := d.watchOnce(ctx, d.m.rpc(i), ms.id, from)
		if last != "" {
			from = last
		}
		if terminalType != "" {
			ms.mu.Lock()
			ms.watchTerminal = terminalType
			ms.mu.Unlock()
			return
		}
		if err == nil {
			// The stream ended cleanly without a terminal event: also a
			// break, the watcher asks again.
			err = status.Error(codes.OK, "stream ended without a terminal event")
		}
		ms.mu.Lock()
		if ms.watchErrs == nil {
			ms.watchErrs = make(map[codes.Code]int)
		}
		ms.watchErrs[status.Code(err)]++
		ms.mu.Unlock()
		if sleep(ctx, wait) != nil {
			return
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// watchOnce reads one WatchMission stream until a terminal event or an
// error; it returns the terminal event's type, if any, and the stream id of
// the last event read.
func (d *driver) watchOnce(ctx context.Context, c orchestratorv1.OrchestratorServiceClient, id, from string) (terminalType, last string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: id, FromStreamId: from})
	if err != nil {
		return "", "", err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return "", last, nil
		}
		if err != nil {
			return "", last, err
		}
		e := resp.GetEvent()
		last = e.GetStreamId()
		switch t := e.GetType(); t {
		case eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED, eventsv1.EventType_EVENT_TYPE_MISSION_COMPENSATED, eventsv1.EventType_EVENT_TYPE_MISSION_FAILED:
			return t.String(), last, nil
		}
	}
}

// workload starts missions at rate per second until window has passed or
// count missions were started, never more than inflight at once, and
// returns them once every client has ended (each bounded by d.end).
func (d *driver) workload(ctx context.Context, r *rand.Rand, first, count int, rate float64, inflight int, window time.Duration) []*mission {
	var (
		out []*mission
		wg  sync.WaitGroup
	)
	slots := make(chan struct{}, inflight)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	stop := time.After(window)
loop:
	for n := first; n < first+count; n++ {
		select {
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		}
		ms := plan(r, n)
		out = append(out, ms)
		wg.Go(func() {
			defer func() { <-slots }()
			d.run(ms)
		})
	}
	d.log.printf("workload: %d missions started; waiting for their clients", len(out))
	wg.Wait()
	return out
}

// effectCounts parses an effects hash: <step>:<op> -> count.
func effectCounts(h map[string]string) (map[string]int64, error) {
	out := make(map[string]int64, len(h))
	for k, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("effect %s = %q: %w", k, v, err)
		}
		out[k] = n
	}
	return out, nil
}
