package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/redistest"
)

// TestMain keeps the in-process mesh's spans in process whatever the
// developer's shell exports, and fails the package on a leaked goroutine
// (a server not stopped).
func TestMain(m *testing.M) {
	if err := os.Setenv("OTEL_TRACES_EXPORTER", "none"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

// fakeOrchestrator answers StartMission with the state outcome picks for the
// mission's index (an error for UNSPECIFIED: the mission was never recorded)
// and records the CancelMission calls, holding each one at gate (when set)
// so that a test can see how many are in flight at once.
type fakeOrchestrator struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	outcome func(i int) orchestratorv1.MissionState
	gate    chan struct{}
	// work, when set, runs for every mission StartMission records (the
	// Redis traffic of a mission in the Redis counting test).
	work func(ctx context.Context) error

	// denyDelete answers DeleteMission PERMISSION_DENIED, as to an
	// operator's token.
	denyDelete bool

	mu        sync.Mutex
	recorded  map[string]bool
	cancelled []string
	deleted   []string
	// teardownGivesUp ends every tear-down FAILED, as with a step service
	// down for longer than the compensation retry budget.
	teardownGivesUp bool
	// outage answers the first so many cancels UNAVAILABLE, as during a
	// Redis failover; deleteOutage the first so many deletes.
	outage       int
	deleteOutage int
	inFlight     int
	maxFlight    int
}

// ListMissions answers the bench's first call, which checks that the mesh
// answers, with no mission.
func (f *fakeOrchestrator) ListMissions(context.Context, *orchestratorv1.ListMissionsRequest) (*orchestratorv1.ListMissionsResponse, error) {
	return &orchestratorv1.ListMissionsResponse{}, nil
}

// DeleteMission deletes a recorded mission (torn down: the bench deletes
// only what it compensated).
func (f *fakeOrchestrator) DeleteMission(_ context.Context, req *orchestratorv1.DeleteMissionRequest) (*orchestratorv1.DeleteMissionResponse, error) {
	if f.denyDelete {
		return nil, status.Error(codes.PermissionDenied, "DeleteMission needs role admin")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleteOutage > 0 {
		f.deleteOutage--
		return nil, status.Error(codes.Unavailable, "mission store (Redis) unavailable")
	}
	if !f.recorded[req.GetMissionId()] || !slices.Contains(f.cancelled, req.GetMissionId()) {
		return nil, status.Error(codes.FailedPrecondition, "not torn down")
	}
	f.deleted = append(f.deleted, req.GetMissionId())
	return &orchestratorv1.DeleteMissionResponse{Mission: &orchestratorv1.Mission{MissionId: req.GetMissionId(), State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED}}, nil
}

func (f *fakeOrchestrator) StartMission(_ context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	id := req.GetMissionId()
	i, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mission id %q", id)
	}
	st := f.outcome(i)
	if st == orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED {
		return nil, status.Error(codes.Unavailable, "draining")
	}
	if f.work != nil {
		if err := f.work(context.Background()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	f.mu.Lock()
	f.recorded[id] = true
	f.mu.Unlock()
	return &orchestratorv1.StartMissionResponse{Created: true, Mission: &orchestratorv1.Mission{MissionId: id, State: st}}, nil
}

func (f *fakeOrchestrator) CancelMission(ctx context.Context, req *orchestratorv1.CancelMissionRequest) (*orchestratorv1.CancelMissionResponse, error) {
	f.mu.Lock()
	if f.outage > 0 {
		f.outage--
		f.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "mission store (Redis) unavailable")
	}
	f.cancelled = append(f.cancelled, req.GetMissionId())
	recorded := f.recorded[req.GetMissionId()]
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !recorded {
		return nil, status.Error(codes.NotFound, "no such mission")
	}
	if !req.GetWait() {
		return nil, status.Error(codes.InvalidArgument, "bench must wait for its teardown")
	}
	st := orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
	if f.teardownGivesUp {
		st = orchestratorv1.MissionState_MISSION_STATE_FAILED
	}
	return &orchestratorv1.CancelMissionResponse{Mission: &orchestratorv1.Mission{MissionId: req.GetMissionId(), State: st}}, nil
}

func (f *fakeOrchestrator) snapshot() (cancelled []string, maxFlight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancelled), f.maxFlight
}

// serve runs f on a loopback port until the test ends and returns its address.
func serve(t *testing.T, f *fakeOrchestrator) string {
	t.Helper()
	_, addr := serveOn(t, "127.0.0.1:0", f)
	return addr
}

func TestBenchTearsItsMissionsDown(t *testing.T) {
	t.Parallel()
	completed := func(int) orchestratorv1.MissionState { return orchestratorv1.MissionState_MISSION_STATE_COMPLETED }
	// mixed: every third mission is compensated, every fourth never recorded.
	mixed := func(i int) orchestratorv1.MissionState {
		switch {
		case i%4 == 3:
			return orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED
		case i%3 == 2:
			return orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
		}
		return orchestratorv1.MissionState_MISSION_STATE_COMPLETED
	}
	tests := []struct {
		name    string
		args    []string
		outcome func(int) orchestratorv1.MissionState
		// gated holds cancels until teardownConcurrency are in flight.
		gated        bool
		denyDelete   bool
		givesUp      bool
		outage       int
		deleteOutage int
		// cancelledN, when set, is how many missions are cancelled, of
		// any ids (wantCancelled then unchecked).
		cancelledN int
		// wantCancelled are the indices of the missions cancelled.
		wantCancelled []int
		wantOut       []string
		wantErr       string
	}{
		{
			name: "every completed mission, at bounded concurrency", args: []string{"-n", "40", "-c", "4"},
			outcome: completed, gated: true, wantCancelled: seq(0, 40),
			wantOut: []string{"teardown 40 missions torn down and 40 deleted", "(40 completed)"},
		},
		{
			name: "left to the retention when deleting is not allowed", args: []string{"-n", "4", "-c", "2"},
			outcome: completed, denyDelete: true, wantCancelled: seq(0, 4),
			wantOut: []string{"teardown 4 missions torn down and 0 deleted", "4 torn-down missions left to the retention", "needs role admin"},
		},
		{
			// 0 1 2 3 4 5 6 7 8 9 10 11: 2, 5, 8 compensated; 3, 7, 11 failed to start.
			// The compensated ones are deleted too (found by a review: they
			// piled up for the retention).
			name: "the compensated ones deleted too", args: []string{"-n", "12", "-c", "3"},
			outcome: mixed, wantCancelled: seq(0, 12),
			wantOut: []string{"teardown 9 missions torn down and 9 deleted", "(6 completed)", "3 missions not found"}, wantErr: "6 of 12 missions did not complete",
		},
		{
			name: "a FAILED one reported, not torn down", args: []string{"-n", "3", "-c", "1"},
			outcome: func(i int) orchestratorv1.MissionState {
				if i == 1 {
					return orchestratorv1.MissionState_MISSION_STATE_FAILED
				}
				return orchestratorv1.MissionState_MISSION_STATE_COMPLETED
			},
			wantCancelled: []int{0, 2},
			wantOut:       []string{"failed   1 missions ended FAILED", "slamctl resume bench-", "teardown 2 missions torn down and 2 deleted"}, wantErr: "1 of 3 missions did not complete",
		},
		{
			// The first tear-down that gives up stops the others, which
			// would each turn a COMPLETED mission FAILED (found by a
			// review); those in flight end as they end.
			name: "stops after a tear-down gives up", args: []string{"-n", "40", "-c", "4"},
			outcome: completed, gated: true, givesUp: true, cancelledN: teardownConcurrency,
			wantOut: []string{"teardown 0 missions torn down", fmt.Sprintf("%d missions ended FAILED: their tear-down gave up", teardownConcurrency),
				fmt.Sprintf("%d missions left as they were after a tear-down failed", 40-teardownConcurrency)},
			wantErr: "teardown: 40 of 40 missions not torn down; first: mission bench-",
		},
		{
			// A failover's few seconds of UNAVAILABLE are waited out (found
			// by a review: the teardown stopped at the first).
			name: "through a short outage", args: []string{"-n", "4", "-c", "1"},
			outcome: completed, outage: 3, wantCancelled: seq(0, 4),
			wantOut: []string{"teardown 4 missions torn down and 4 deleted"},
		},
		{
			name: "deletes through a short outage", args: []string{"-n", "4", "-c", "1"},
			outcome: completed, deleteOutage: 3, wantCancelled: seq(0, 4),
			wantOut: []string{"teardown 4 missions torn down and 4 deleted"},
		},
		{
			name: "-keep keeps them", args: []string{"-n", "5", "-keep"},
			outcome: completed, wantOut: []string{"kept     5 missions (-keep)"},
		},
		{
			name: "-keep says which may not exist", args: []string{"-n", "12", "-c", "3", "-keep"},
			outcome: mixed, wantOut: []string{"kept     12 missions (6 of them did not complete: compensated, or started with an error and may not exist)"}, wantErr: "6 of 12 missions did not complete",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeOrchestrator{outcome: tt.outcome, recorded: map[string]bool{}, denyDelete: tt.denyDelete, teardownGivesUp: tt.givesUp, outage: tt.outage, deleteOutage: tt.deleteOutage}
			if tt.gated {
				f.gate = make(chan struct{})
			}
			addr := serve(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, append([]string{"--addr", addr, "bench"}, tt.args...), func(string) string { return "" }, &stdout, &stderr)
			}()
			if tt.gated {
				for {
					if _, n := f.snapshot(); n >= teardownConcurrency {
						break
					}
					select {
					case <-ctx.Done():
						t.Fatalf("never %d cancels in flight", teardownConcurrency)
					case <-time.After(time.Millisecond):
					}
				}
				close(f.gate)
			}
			err := <-errc
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("bench: %v\n%s", err, stderr.String())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("bench error = %v, want one saying %q", err, tt.wantErr)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output does not say %q:\n%s", want, stdout.String())
				}
			}
			cancelled, maxFlight := f.snapshot()
			var got []int
			for _, id := range cancelled {
				i, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
				got = append(got, i)
			}
			slices.Sort(got)
			if tt.cancelledN > 0 {
				if len(got) != tt.cancelledN {
					t.Errorf("%d missions cancelled (%v), want %d", len(got), got, tt.cancelledN)
				}
			} else if !slices.Equal(got, tt.wantCancelled) {
				t.Errorf("cancelled missions %v, want %v", got, tt.wantCancelled)
			}
			if maxFlight > teardownConcurrency {
				t.Errorf("%d cancels in flight at once, want at most %d", maxFlight, teardownConcurrency)
			}
		})
	}
}

// seq returns the integers in [from, to).
func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// WatchMission replays a completed mission's events: started at t0, step a
// from +1 ms to +3 ms, step b from +3 ms to +4 ms, completed at +5 ms.
func (f *fakeOrchestrator) WatchMission(req *orchestratorv1.WatchMissionRequest, stream grpc.ServerStreamingServer[orchestratorv1.WatchMissionResponse]) error {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ev := range benchEvents(t0) {
		ev.MissionId = req.GetMissionId()
		if err := stream.Send(&orchestratorv1.WatchMissionResponse{Event: ev}); err != nil {
			return err
		}
	}
	return nil
}

// benchEvents are the events of a mission of two steps: a retried step a
// (first started at +1 ms, completed at +3 ms) and a step b (+3 ms to
// +4 ms), the mission from t0 to +5 ms.
func benchEvents(t0 time.Time) []*eventsv1.MissionEvent {
	ev := func(typ eventsv1.EventType, step string, ms int) *eventsv1.MissionEvent {
		return &eventsv1.MissionEvent{Type: typ, Step: step, Ts: timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))}
	}
	return []*eventsv1.MissionEvent{
		ev(eventsv1.EventType_EVENT_TYPE_MISSION_STARTED, "", 0),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_STARTED, "a", 1),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_FAILED, "a", 2),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_STARTED, "a", 2),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_COMPLETED, "a", 3),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_STARTED, "b", 3),
		ev(eventsv1.EventType_EVENT_TYPE_STEP_COMPLETED, "b", 4),
		ev(eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED, "", 5),
	}
}

func TestParseBench(t *testing.T) {
	t.Parallel()
	env := func(url string) func(string) string {
		return func(k string) string {
			if k == "REDIS_URL" {
				return url
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		args    []string
		env     string
		want    benchConfig
		wantErr string
	}{
		{name: "defaults: 300 tiny missions", args: nil,
			want: benchConfig{n: 300, conc: 1, workload: benchWorkloads["tiny"], stepSample: 50}},
		{name: "-d without -n is bounded by the mission cap", args: []string{"-d", "10s", "-c", "32", "--workload", "overhead"},
			want: benchConfig{n: maxBenchMissions, duration: 10 * time.Second, conc: 32, workload: benchWorkloads["overhead"], stepSample: 50}},
		{name: "-d with -n stops at whichever comes first", args: []string{"-d", "1m", "-n", "7"},
			want: benchConfig{n: 7, duration: time.Minute, conc: 1, workload: benchWorkloads["tiny"], stepSample: 50}},
		{name: "office with a wider world", args: []string{"-workload", "office", "-width", "30"},
			want: benchConfig{n: 300, conc: 1, workload: benchWorkload{name: "office", agents: 3, width: 30, height: 15}, stepSample: 50}},
		{name: "REDIS_URL from the environment", env: "redis://127.0.0.1:7/0",
			want: benchConfig{n: 300, conc: 1, workload: benchWorkloads["tiny"], redisURL: "redis://127.0.0.1:7/0", stepSample: 50}},
		{name: "--redis-url wins over the environment", env: "redis://a:1/0", args: []string{"--redis-url", "redis://b:2/0", "-step-sample", "0"},
			want: benchConfig{n: 300, conc: 1, workload: benchWorkloads["tiny"], redisURL: "redis://b:2/0"}},
		{name: "unknown workload", args: []string{"-workload", "huge"}, wantErr: `unknown -workload "huge"`},
		{name: "overhead has no world to shape", args: []string{"-workload", "overhead", "-agents", "2"}, wantErr: "not overhead"},
		{name: "negative duration", args: []string{"-d", "-1s"}, wantErr: "-d must be in"},
		{name: "duration past the bound", args: []string{"-d", "2h"}, wantErr: "-d must be in"},
		{name: "zero callers", args: []string{"-c", "0"}, wantErr: "-c at least 1"},
		{name: "too many missions", args: []string{"-n", "1000001"}, wantErr: "-n must be in"},
		{name: "stray argument", args: []string{"x"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseBench(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUsage) {
					t.Fatalf("parseBench(%q) error = %v, want a usage error saying %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseBench(%q): %v", tt.args, err)
			}
			if got != tt.want {
				t.Errorf("parseBench(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestOverheadRequest(t *testing.T) {
	t.Parallel()
	req := benchWorkloads["overhead"].request("m-1", 1)
	if req.GetScenario() != nil || len(req.GetAgents()) != 1 || !req.GetAgents()[0].GetAnchor() || !req.GetWait() {
		t.Fatalf("overhead request = %v, want one anchor agent, no scenario, wait", req)
	}
	meta := req.GetAgents()[0].GetSubmap().GetMeta()
	if w := float64(meta.GetWidth()) * meta.GetResolution(); w != 2 || meta.GetWidth() != meta.GetHeight() {
		t.Errorf("submap %dx%d cells of %g m, want 2x2 m", meta.GetWidth(), meta.GetHeight(), meta.GetResolution())
	}
	if m := req.GetMap(); m.GetWidthM() != 2 || m.GetHeightM() != 2 || m.GetResolution() != 0.05 {
		t.Errorf("map %v, want 2x2 m at 0.05 m", m)
	}
	tiny := benchWorkloads["tiny"].request("m-2", 2).GetScenario()
	if tiny.GetSeed() != 2 || tiny.GetAgents() != 1 || tiny.GetWidthM() != 10 || tiny.GetHeightM() != 8 {
		t.Errorf("tiny scenario = %v, want seed 2, 1 agent, 10x8 m", tiny)
	}
}

func TestPercentileAndSample(t *testing.T) {
	t.Parallel()
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 51 * time.Millisecond}, {0.9, 91 * time.Millisecond}, {0.99, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("percentile(1..100 ms, %g) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %s, want 0", got)
	}
	ids := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	if got := sampleEvenly(ids, 4); !slices.Equal(got, []string{"0", "2", "5", "7"}) {
		t.Errorf("sampleEvenly(10, 4) = %v", got)
	}
	if got := sampleEvenly(ids[:3], 4); len(got) != 3 {
		t.Errorf("sampleEvenly(3, 4) = %v, want all 3", got)
	}
}

func TestRedisCountersDelta(t *testing.T) {
	t.Parallel()
	before, err := parseRedisInfo("# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:100\r\ntotal_reads_processed:50\r\n\r\n# Commandstats\r\ncmdstat_info:calls=4,usec=1,usec_per_call=0.25,rejected_calls=0,failed_calls=0\r\ncmdstat_set:calls=10,usec=5\r\ncmdstat_client|setinfo:calls=2,usec=1\r\n")
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseRedisInfo("total_commands_processed:161\ntotal_reads_processed:71\ncmdstat_info:calls=5,usec=1\ncmdstat_set:calls=40\ncmdstat_evalsha:calls=10\ncmdstat_xadd:calls=20\ncmdstat_client|setinfo:calls=2\n")
	if err != nil {
		t.Fatal(err)
	}
	d := after.sub(before)
	// 61 commands of which one is the first snapshot's INFO; 21 reads of
	// which one is the second snapshot's.
	if d.commands != 60 || d.reads != 20 {
		t.Errorf("delta %d commands %d reads, want 60 and 20", d.commands, d.reads)
	}
	want := map[string]int64{"set": 30, "evalsha": 10, "xadd": 20}
	if !maps.Equal(d.calls, want) {
		t.Errorf("delta calls %v, want %v", d.calls, want)
	}
	var out bytes.Buffer
	printRedisDelta(&out, d, 10)
	for _, s := range []string{"per mission 6.0 commands  2.0 round trips", "commands per mission:  set 3.0  xadd 2.0  evalsha 1.0\n"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output does not say %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	printRedisDelta(&out, before.sub(after), 10)
	if !strings.Contains(out.String(), "counters went back") || strings.Contains(out.String(), "round trips") {
		t.Errorf("counters reset during the bench (CONFIG RESETSTAT) printed:\n%s", out.String())
	}
	if _, err := parseRedisInfo("total_commands_processed:1\n"); err == nil {
		t.Error("INFO without total_reads_processed parsed")
	}

	// A Redis that restarted early in the bench counts past the first
	// snapshot again: only its run_id tells.
	first, err := parseRedisInfo("# Server\r\nrun_id:aaaa\r\n# Stats\r\ntotal_commands_processed:100\r\ntotal_reads_processed:50\r\n")
	if err != nil {
		t.Fatal(err)
	}
	again, err := parseRedisInfo("run_id:bbbb\ntotal_commands_processed:5000\ntotal_reads_processed:300\n")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	printRedisDelta(&out, again.sub(first), 10)
	if !strings.Contains(out.String(), "Redis restarted") || strings.Contains(out.String(), "round trips") {
		t.Errorf("a Redis restart with counters past the start printed:\n%s", out.String())
	}
}

func TestTimesFromEvents(t *testing.T) {
	t.Parallel()
	evs := benchEvents(time.Unix(1000, 0))
	mt, ok := timesFromEvents(evs)
	want := missionTimes{total: 5 * time.Millisecond, steps: []stepTime{{"a", 2 * time.Millisecond}, {"b", time.Millisecond}}}
	if !ok || mt.total != want.total || !slices.Equal(mt.steps, want.steps) {
		t.Errorf("timesFromEvents = %+v, %v; want %+v", mt, ok, want)
	}
	if _, ok := timesFromEvents(evs[:len(evs)-1]); ok {
		t.Error("a mission without its completion gave times")
	}
	var out bytes.Buffer
	printStepTimes(&out, []missionTimes{mt, mt})
	if s := "from the events of 2 missions:  a 2ms/2ms  b 1ms/1ms  outside steps 2ms/2ms  mission 5ms/5ms"; !strings.Contains(out.String(), s) {
		t.Errorf("output does not say %q:\n%s", s, out.String())
	}
}

// TestBenchCountsRedis runs a bench whose every mission makes a known
// Redis traffic on a real Redis: a pipeline of three SETs (one round trip)
// and a script of two commands (one round trip, three commands with the
// EVAL), so 6 commands and 2 round trips per mission. One caller: with
// more, the fake's one-connection pool dials a second connection, whose
// HELLO the bench rightly counts.
func TestBenchCountsRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := redis.NewScript(`redis.call('SET', KEYS[1], 1) return redis.call('INCR', KEYS[1])`)
	work := func(ctx context.Context) error {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range []string{"a", "b", "c"} {
				p.Set(ctx, k, 1, 0)
			}
			return nil
		}); err != nil {
			return err
		}
		return script.Eval(ctx, rdb, []string{"n"}).Err()
	}
	// One mission's traffic before the bench, so that the client's
	// connection handshakes are not counted.
	for range 3 {
		if err := work(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeOrchestrator{
		outcome:  func(int) orchestratorv1.MissionState { return orchestratorv1.MissionState_MISSION_STATE_COMPLETED },
		recorded: map[string]bool{},
		work:     work,
	}
	addr := serve(t, f)
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"--addr", addr, "bench", "-n", "20", "-c", "1", "--redis-url", srv.URL, "-keep"},
		func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	for _, s := range []string{
		"per mission 6.0 commands  2.0 round trips",
		"commands per mission:  set 4.0  eval 1.0  incr 1.0\n",
		"from the events of 20 missions:  a 2ms/2ms  b 1ms/1ms  outside steps 2ms/2ms",
	} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("output does not say %q:\n%s", s, stdout.String())
		}
	}
}

func TestBenchByDuration(t *testing.T) {
	t.Parallel()
	f := &fakeOrchestrator{
		outcome:  func(int) orchestratorv1.MissionState { return orchestratorv1.MissionState_MISSION_STATE_COMPLETED },
		recorded: map[string]bool{},
	}
	addr := serve(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	t0 := time.Now()
	err := run(ctx, []string{"--addr", addr, "bench", "-d", "300ms", "-c", "3", "-step-sample", "0"},
		func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Errorf("a 300 ms bench ended after %s", took)
	}
	cancelled, _ := f.snapshot()
	if !strings.Contains(stdout.String(), fmt.Sprintf("missions %d ", len(cancelled))) || len(cancelled) == 0 {
		t.Errorf("bench tore down %d missions, output:\n%s", len(cancelled), stdout.String())
	}
}

// A bench against an orchestrator that refuses every start (UNAVAILABLE,
// draining) pauses after each refusal instead of spinning through its
// mission ids, and reports no throughput; one that cannot be reached at
// all ends the bench before it starts anything.
func TestBenchPausesAfterARefusedCall(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := lis.Addr().String()
	_ = lis.Close() // nothing listens there any more: every call is refused
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"--addr", gone, "bench", "-d", "1s", "-c", "2", "-keep"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "bench: Unavailable") || stdout.Len() != 0 {
		t.Fatalf("bench of an address nobody serves: %v, output %q; want the refusal at once", err, stdout.String())
	}
	draining := &fakeOrchestrator{outcome: func(int) orchestratorv1.MissionState { return orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED }, recorded: map[string]bool{}}
	addr := serve(t, draining)
	err = run(t.Context(), []string{"--addr", addr, "bench", "-d", "1s", "-c", "2", "-keep"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "did not complete") {
		t.Fatalf("bench error = %v, want missions that did not complete", err)
	}
	var n int
	m := regexp.MustCompile(`(?m)^missions (\d+) `).FindStringSubmatch(stdout.String())
	if m != nil {
		n, _ = strconv.Atoi(m[1])
	} else {
		t.Fatalf("no mission count in:\n%s\nstderr:\n%s\nerr: %v", stdout.String(), stderr.String(), err)
	}
	// 2 workers for 1 s, pausing 100 ms after each refusal.
	if n > 40 {
		t.Errorf("%d missions tried in 1 s by 2 workers, want at most 40", n)
	}
	if !strings.Contains(stdout.String(), "throughput 0.0 missions/s  (0 completed)") || !strings.Contains(stdout.String(), "latency  no completed mission") {
		t.Errorf("output does not report no throughput:\n%s", stdout.String())
	}
}

// Against real servers, a bench leaves nothing of its missions behind: each
// is torn down and deleted, where it used to stay in Redis for the
// retention (found by a review: 1,500 missions left 9,000 keys for 7 days).
func TestBenchDeletesItsMissionsFromARealMesh(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), meshTimeout)
	defer cancel()
	out, err := slamctl(t, ctx, m, "bench", "--workload", "overhead", "-n", "6", "-c", "2", "-step-sample", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "teardown 6 missions torn down and 6 deleted") {
		t.Fatalf("bench output:\n%s", out)
	}
	prefix := regexp.MustCompile(`ids (bench-[0-9a-f]+)-\*`).FindStringSubmatch(out)
	if prefix == nil {
		t.Fatalf("no ids in the output:\n%s", out)
	}
	for i := range 6 {
		id := fmt.Sprintf("%s-%d", prefix[1], i)
		if _, err := slamctl(t, ctx, m, "get", id); err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("get %s after the bench: %v, want NotFound", id, err)
		}
	}
}

// TestRedisProbeTakesThePasswordFile: the probe reads the Redis password
// from --redis-password-file (REDIS_PASSWORD_FILE), as the services do,
// when the URL has none (found by a review: only a password in the URL
// worked, and a refusal read "unreachable").
func TestRedisProbeTakesThePasswordFile(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	admin := srv.Client(t)
	if err := admin.ConfigSet(t.Context(), "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if p := newRedisProbe(t.Context(), srv.URL, "", "", &out); p != nil {
		p.close()
		t.Fatal("probe without the password connected")
	}
	if s := out.String(); !strings.Contains(s, "NOAUTH") || strings.Contains(s, "unreachable") {
		t.Errorf("without the password the probe says %q, want the refusal, not unreachable", s)
	}
	p := newRedisProbe(t.Context(), srv.URL, "", file, &out)
	if p == nil {
		t.Fatalf("probe with the password file did not connect: %s", out.String())
	}
	defer p.close()
	if p.snapshot(t.Context()) == nil {
		t.Error("snapshot with the password file failed")
	}
}
