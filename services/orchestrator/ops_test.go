package orchestrator_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
	"github.com/slammesh/slammesh/services/localization"
)

// restartable is a localization service on a fixed address, which a test
// stops (listener closed, as a process exiting) and starts again on the
// same port, as a rolling restart does.
type restartable struct {
	t    *testing.T
	st   *stack
	addr string
	stop func()
}

// newRestartable starts a localization service on a free port of the
// stack's Redis; it is stopped when the test ends.
func newRestartable(t *testing.T, st *stack) *restartable {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, st: st, addr: lis.Addr().String()}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
	})
	return r
}

// start serves localization on r.addr.
func (r *restartable) start() {
	t := r.t
	tel, err := telemetry.Setup(context.Background(), localization.ServiceName, telemetry.Options{})
	if err != nil {
		t.Error(err)
		return
	}
	log := telemetry.NewLogger(discard{}, localization.ServiceName, 0)
	rdb := r.st.redisSrv.Universal(t)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: log})
	srv, err := grpcserver.New(grpcserver.Config{Service: localization.ServiceName, GRPCAddr: r.addr, HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: log, UnaryInterceptors: []grpc.UnaryServerInterceptor{
			progressgrpc.UnaryServerInterceptor(pub, localization.ServiceName, localization.ActionMethods...),
		}})
	if err != nil {
		t.Errorf("restart localization on %s: %v", r.addr, err)
		return
	}
	s, err := localization.NewServer(localization.Config{}, rdb, barrier.New(rdb), log)
	if err != nil {
		t.Error(err)
		return
	}
	s.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("localization serve: %v", err)
		}
		_ = tel.Shutdown(context.Background())
		r.stop = nil
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// withLocalization starts another orchestrator on the stack whose
// localization service is at addr, and returns a client of it.
func (st *stack) withLocalization(t *testing.T, addr string, cfg stackConfig) orchestratorv1.OrchestratorServiceClient {
	t.Helper()
	other := *st
	other.stepAddrs[1] = addr
	_, client := other.startOrchestrator(t, cfg)
	return client
}

// The restart case of issue 7: localization is stopped, a mission starts
// and waits, localization comes back 3 s later on the same port: the
// mission completes (its step retried through the outage), nothing fails.
func TestStepServiceRestartMissionCompletes(t *testing.T) {
	st := startStack(t, stackConfig{})
	loc := newRestartable(t, st)
	client := st.withLocalization(t, loc.addr, stackConfig{})
	loc.stop()
	back := make(chan struct{})
	go func() {
		defer close(back)
		time.Sleep(3 * time.Second)
		loc.start()
	}()
	resp, err := client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{
		Scenario: &typesv1.Scenario{Seed: 7, Agents: 3}, Wait: true,
	})
	<-back
	if err != nil {
		t.Fatalf("StartMission: %v", err)
	}
	m := resp.GetMission()
	if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("state %v, error %v; want COMPLETED once localization is back", m.GetState(), m.GetError())
	}
	if n := m.GetSteps()[1].GetAttempts(); n < 2 {
		t.Errorf("localize_agents took %d attempts: the mission did not meet the outage", n)
	}
	if n := countType(st.events(t, m.GetMissionId()), progress.StepRetrying); n == 0 {
		t.Error("no step.retrying event: the mission did not meet the outage")
	}
}

// A mission started right after a service came back from a long outage
// (during which its client connection kept failing) does not compensate:
// the connection is back within about a second, well inside a retry budget
// of a few seconds, where gRPC's default back-off (up to 120 s) would have
// kept it failing.
func TestMissionRightAfterServiceReturnsDoesNotCompensate(t *testing.T) {
	st := startStack(t, stackConfig{})
	loc := newRestartable(t, st)
	client := st.withLocalization(t, loc.addr, stackConfig{policy: saga.Policy{RetryBudget: 2500 * time.Millisecond}})
	loc.stop()
	// A mission during the outage: its step gives up after the budget and
	// its compensation keeps calling the absent service.
	during, err := client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{Scenario: small(21)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	loc.start()
	time.Sleep(10 * time.Millisecond)
	resp, err := client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{Scenario: small(22), Wait: true})
	if err != nil {
		t.Fatalf("StartMission: %v", err)
	}
	if m := resp.GetMission(); m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("mission started 10ms after the service came back: state %v, error %v; want COMPLETED", m.GetState(), m.GetError())
	}
	resp, err = client.StartMission(ctxT(t), &orchestratorv1.StartMissionRequest{MissionId: during.GetMission().GetMissionId(), Scenario: small(21), Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetMission(); m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		t.Errorf("mission during the outage: state %v, error %v; want COMPENSATED (its compensation outlived the outage)", m.GetState(), m.GetError())
	}
}

// A step slower than its attempt deadline on every attempt fails the
// mission with a reason that says so, naming the step and its deadline.
func TestSlowStepReasonNamesDeadline(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, policy: saga.Policy{
		RetryBudget:  time.Second,
		StepTimeouts: map[string]time.Duration{"localize_agents": 300 * time.Millisecond},
	}})
	m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: small(23), Wait: true, Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "localize_agents", Kind: typesv1.FaultKind_FAULT_KIND_STALL, Times: 100}},
	}}).GetMission()
	if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		t.Fatalf("state %v, want COMPENSATED", m.GetState())
	}
	e := m.GetError()
	if e.GetReason() != saga.ReasonStepDeadlineExceeded || e.GetCode() != "DEADLINE_EXCEEDED" {
		t.Fatalf("error %v, want DEADLINE_EXCEEDED %s", e, saga.ReasonStepDeadlineExceeded)
	}
	for _, want := range []string{"localize_agents", "300ms", "attempts", "--step-timeout"} {
		if !strings.Contains(e.GetMessage(), want) {
			t.Errorf("message %q lacks %q", e.GetMessage(), want)
		}
	}
}

// stalledRequest is the StartMission of stalledMission: a repeat of it (a
// wait) must send the same request, since a mission id is an idempotency
// key.
func stalledRequest(seed uint64) *orchestratorv1.StartMissionRequest {
	return &orchestratorv1.StartMissionRequest{MissionId: fmt.Sprint("stalled-", seed), Scenario: small(seed), Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_STALL, Times: 1000}},
	}}
}

// stalledMission starts a mission whose merge stalls on every attempt, so
// it stays RUNNING for the test; cancel compensates it.
func (st *stack) stalledMission(t *testing.T, seed uint64) (id string, cancel func()) {
	t.Helper()
	m := st.start(t, stalledRequest(seed)).GetMission()
	st.awaitEvent(t, m.GetMissionId(), func(e progress.Event) bool { return e.Type == progress.StepStarted && e.Step == "merge_maps" })
	return m.GetMissionId(), func() {
		if _, err := st.client.CancelMission(ctxT(t), &orchestratorv1.CancelMissionRequest{MissionId: m.GetMissionId(), Wait: true}); err != nil {
			t.Errorf("cancel the stalled mission: %v", err)
		}
	}
}

// openWatch opens WatchMission and returns a channel of its events and one of
// how it ended (nil for a clean end).
func openWatch(ctx context.Context, client orchestratorv1.OrchestratorServiceClient, id, from string) (<-chan *orchestratorv1.WatchMissionResponse, <-chan error) {
	events := make(chan *orchestratorv1.WatchMissionResponse, 1000)
	ended := make(chan error, 1)
	go func() {
		defer close(events)
		stream, err := client.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: id, FromStreamId: from})
		if err != nil {
			ended <- err
			return
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if status.Code(err) == codes.OK || err.Error() == "EOF" {
					err = nil
				}
				ended <- err
				return
			}
			events <- resp
		}
	}()
	return events, ended
}

// median returns the median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// missionLatencies runs n small missions one after another and returns how
// long each StartMission with wait took.
func (st *stack) missionLatencies(t *testing.T, n int, seed uint64) []time.Duration {
	t.Helper()
	out := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		m := st.start(t, &orchestratorv1.StartMissionRequest{MissionId: fmt.Sprintf("lat-%d-%d", seed, i), Scenario: small(seed + uint64(i)), Wait: true}).GetMission()
		out[i] = time.Since(start)
		if m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
			t.Fatalf("mission %s: %v %v", m.GetMissionId(), m.GetState(), m.GetError())
		}
	}
	return out
}

// 100 watchers (more than the orchestrator's Redis pool of 20 connections)
// leave mission latency within 2× of none, and no lease is lost: watchers
// share one blocking read, so saga writes and lease renewals never wait for
// a connection. Rounds alternate missions without and with the watchers, so
// that a change of the machine's load hits both medians alike.
func TestHundredWatchersDoNotStarveMissions(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true})
	st.missionLatencies(t, 2, 100) // warm up connections and caches
	id, cancelStalled := st.stalledMission(t, 31)
	const watchers, rounds, perRound = 100, 4, 3
	var quiet, busy []time.Duration
	for round := range rounds {
		quiet = append(quiet, st.missionLatencies(t, perRound, uint64(200+10*round))...)
		ctx, stopWatchers := context.WithCancel(ctxT(t))
		var ends []<-chan error
		for range watchers {
			events, ended := openWatch(ctx, st.client, id, "")
			ends = append(ends, ended)
			select {
			case <-events: // the watcher is following
			case err := <-ended:
				t.Fatalf("watcher ended early: %v", err)
			case <-time.After(callTimeout):
				t.Fatal("a watcher got no event")
			}
		}
		busy = append(busy, st.missionLatencies(t, perRound, uint64(300+10*round))...)
		stopWatchers()
		for _, ended := range ends {
			<-ended
		}
	}
	q, b := median(quiet), median(busy)
	t.Logf("median mission latency: %v with no watcher, %v with %d watchers", q, b, watchers)
	// 2× as the issue says, plus 250 ms for the load spikes of a shared
	// 2-core CI machine running the race detector: missions starved by
	// watchers take seconds (or never end), far past it.
	if limit := 2*q + 250*time.Millisecond; b > limit {
		t.Errorf("with %d watchers the median mission took %v, over 2× the %v without (limit %v)", watchers, b, q, limit)
	}
	cancelStalled()
	// No lease was lost: a lost lease shows as a mission resumed by recovery
	// (a mission.started event "resumed by ...").
	for round := range rounds {
		for i := range perRound {
			for _, base := range []int{200, 300} {
				mid := fmt.Sprintf("lat-%d-%d", base+10*round, i)
				if n := len(missionStartedWith(st.events(t, mid), saga.MessageResumedPrefix)); n != 0 {
					t.Errorf("mission %s was resumed %d times: its lease was lost", mid, n)
				}
			}
		}
	}
	if n := len(missionStartedWith(st.events(t, id), saga.MessageResumedPrefix)); n != 0 {
		t.Errorf("the watched mission was resumed %d times: its lease was lost", n)
	}
}

// A poison entry in a running mission's stream is skipped: WatchMission
// (from the start and from the last good id) and a StartMission wait on
// another replica deliver every good event and end with the mission.
func TestPoisonEntrySkippedByWatchers(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true})
	_, replica := st.startOrchestrator(t, stackConfig{allowFaults: true, owner: "replica"})
	id, cancelStalled := st.stalledMission(t, 41)
	stream := progress.MissionStream(id)
	good := st.events(t, id)
	lastGood := good[len(good)-1].ID
	poison := func() {
		if err := st.rdb.XAdd(ctxT(t), &redis.XAddArgs{Stream: stream, Values: []string{"v", "2", "type", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	poison()

	fromStart, endStart := openWatch(ctxT(t), st.client, id, "")
	fromGood, endGood := openWatch(ctxT(t), st.client, id, lastGood)
	waited := make(chan *orchestratorv1.StartMissionResponse, 1)
	waitErr := make(chan error, 1)
	go func() {
		req := stalledRequest(41)
		req.Wait = true
		resp, err := replica.StartMission(ctxT(t), req)
		waited <- resp
		waitErr <- err
	}()
	time.Sleep(500 * time.Millisecond) // the waits are following
	poison()
	cancelStalled()

	all := st.events(t, id) // Range skips the poison too
	// The watches end with the mission; the stalled merge call's
	// step.failed, written by the merge service once its call ends, may
	// come after that.
	for i, e := range all {
		if e.Type.Terminal() {
			all = all[:i+1]
			break
		}
	}
	for name, w := range map[string]struct {
		events <-chan *orchestratorv1.WatchMissionResponse
		ended  <-chan error
		want   int
	}{"from start": {fromStart, endStart, len(all)}, "from the last good id": {fromGood, endGood, len(all) - len(good)}} {
		var got []*orchestratorv1.WatchMissionResponse
		for e := range w.events {
			got = append(got, e)
		}
		if err := <-w.ended; err != nil {
			t.Errorf("watch %s ended with %v, want a clean end", name, err)
		}
		if len(got) != w.want || got[len(got)-1].GetEvent().GetType().String() != "EVENT_TYPE_MISSION_COMPENSATED" {
			t.Errorf("watch %s got %d events (last %v), want %d ending with mission.compensated", name, len(got), got[len(got)-1].GetEvent().GetType(), w.want)
		}
	}
	resp, err := <-waited, <-waitErr
	if err != nil || resp.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		t.Errorf("StartMission wait on the replica = %v, %v; want the COMPENSATED mission", resp.GetMission().GetState(), err)
	}
}

// TestWatchOfALostMissionEnds: when Redis loses a running mission (a
// restart without persistence, FLUSHALL; here its record), no terminal event
// will ever come. The watch ends NOT_FOUND, as GetMission answers, instead
// of waiting forever on a watcher slot, and the slot serves the next watch.
func TestWatchOfALostMissionEnds(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, maxWatchers: 1, lostCheck: 100 * time.Millisecond,
		policy: saga.Policy{AttemptTimeout: 5 * time.Second}})
	id, _ := st.stalledMission(t, 61)
	events, ended := openWatch(ctxT(t), st.client, id, "")
	<-events
	if err := st.rdb.Del(ctxT(t), saga.RecordKey(id)).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "Redis lost it") {
			t.Fatalf("watch of a lost mission ended with %v, want NOT_FOUND saying Redis lost it", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch of a lost mission still open 10 s after Redis lost it")
	}
	next, cancel := st.stalledMission(t, 62)
	defer cancel()
	events, ended = openWatch(ctxT(t), st.client, next, "")
	select {
	case e := <-events:
		if e == nil {
			t.Fatalf("the next watch got no slot: %v", <-ended)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the next watch got nothing in 10 s")
	}
}

// TestWaitOnALostMissionSaysSo: a StartMission wait on a mission whose
// record Redis loses meanwhile ends NOT_FOUND saying Redis lost it, as a
// watch does (found by a review: it answered "mission not found", as for
// a mission never heard of).
func TestWaitOnALostMissionSaysSo(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, policy: saga.Policy{AttemptTimeout: 2 * time.Second}})
	req := stalledRequest(63)
	req.Wait = true
	waitErr := make(chan error, 1)
	go func() {
		_, err := st.client.StartMission(ctxT(t), req)
		waitErr <- err
	}()
	// The waiting call started the mission, so it is waiting on it once
	// its merge has begun (and finds its run either way).
	st.awaitEvent(t, req.GetMissionId(), func(e progress.Event) bool { return e.Type == progress.StepStarted && e.Step == "merge_maps" })
	if err := st.rdb.Del(ctxT(t), saga.RecordKey(req.GetMissionId())).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waitErr:
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "Redis lost it") {
			t.Fatalf("wait on a lost mission ended with %v, want NOT_FOUND saying Redis lost it", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait on a lost mission still open 30 s after Redis lost it")
	}
}

// Past MaxWatchers a watch fails RESOURCE_EXHAUSTED; a drain ends the open
// watches and a StartMission wait at once with UNAVAILABLE, long before the
// mission (whose merge attempt is held for seconds) ends.
func TestWatcherCapAndDrainEndsWatches(t *testing.T) {
	st := startStack(t, stackConfig{allowFaults: true, maxWatchers: 2, policy: saga.Policy{AttemptTimeout: 5 * time.Second}})
	req := &orchestratorv1.StartMissionRequest{Scenario: small(51), Faults: &typesv1.FaultPlan{
		Faults: []*typesv1.Fault{{Step: "merge_maps", Kind: typesv1.FaultKind_FAULT_KIND_STALL}},
	}}
	m := st.start(t, req).GetMission()
	id := m.GetMissionId()
	st.awaitEvent(t, id, func(e progress.Event) bool { return e.Type == progress.StepStarted && e.Step == "merge_maps" })
	var ends []<-chan error
	for range 2 {
		events, ended := openWatch(ctxT(t), st.client, id, "")
		<-events
		ends = append(ends, ended)
	}
	_, third := openWatch(ctxT(t), st.client, id, "")
	err := <-third
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third watcher: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Two watchers of one mission: the message counts watchers, the thing
	// --max-watchers caps, not missions.
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "2 watchers") {
		t.Errorf("third watcher's message %q does not say 2 watchers are served", msg)
	}
	waitErr := make(chan error, 1)
	go func() {
		req.MissionId, req.Wait = id, true
		_, err := st.client.StartMission(ctxT(t), req)
		waitErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // the wait is waiting
	var once sync.Once
	shutdown := make(chan error, 1)
	start := time.Now()
	once.Do(func() { go func() { shutdown <- st.orch.Shutdown(ctxT(t)) }() })
	for _, ended := range append(ends, waitErr) {
		select {
		case err := <-ended:
			if status.Code(err) != codes.Unavailable {
				t.Errorf("open call ended with %v at the drain, want UNAVAILABLE", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("an open watch or wait outlived the start of the drain by 3s")
		}
	}
	t.Logf("open calls ended %v after the drain began", time.Since(start).Round(time.Millisecond))
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
