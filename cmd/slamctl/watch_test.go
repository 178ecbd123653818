package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

// replayOrchestrator serves WatchMission from a fixed list of events with
// stream ids "1-0", "2-0", …, after the request's from_stream_id as the
// orchestrator does; stop, when set, is called once instead of sending the
// event of index stopAt, and that call then ends with what it returns.
type replayOrchestrator struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	events []*eventsv1.MissionEvent
	stopAt int
	stop   func(ctx context.Context) error

	mu      sync.Mutex
	froms   []string
	stopped bool
}

func (r *replayOrchestrator) WatchMission(req *orchestratorv1.WatchMissionRequest, stream grpc.ServerStreamingServer[orchestratorv1.WatchMissionResponse]) error {
	r.mu.Lock()
	r.froms = append(r.froms, req.GetFromStreamId())
	stop := r.stop
	if r.stopped {
		stop = nil
	}
	r.stopped = r.stopped || stop != nil
	r.mu.Unlock()
	for i, ev := range r.events {
		if ev.GetStreamId() <= req.GetFromStreamId() {
			continue
		}
		if stop != nil && i == r.stopAt {
			return stop(stream.Context())
		}
		if err := stream.Send(&orchestratorv1.WatchMissionResponse{Event: ev}); err != nil {
			return err
		}
	}
	return nil
}

// GetMission says the mission completed, as its events do.
func (r *replayOrchestrator) GetMission(_ context.Context, req *orchestratorv1.GetMissionRequest) (*orchestratorv1.GetMissionResponse, error) {
	return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{
		MissionId: req.GetMissionId(), State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
	}}, nil
}

// StartMission starts the mission whose events r replays.
func (r *replayOrchestrator) StartMission(_ context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	return &orchestratorv1.StartMissionResponse{Created: true, Mission: &orchestratorv1.Mission{
		MissionId: "m", State: orchestratorv1.MissionState_MISSION_STATE_RUNNING, TraceId: "0af7651916cd43dd8448eb211c80319c",
	}}, nil
}

func (r *replayOrchestrator) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.froms...)
}

// missionEvents are a completed mission's events, stream ids "1-0" to "8-0"
// (one digit each, so that they order as strings).
func missionEvents() []*eventsv1.MissionEvent {
	evs := benchEvents(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i, ev := range evs {
		ev.MissionId = "m"
		ev.StreamId = fmt.Sprintf("%d-0", i+1)
	}
	return evs
}

// serveOn runs r on addr ("127.0.0.1:0" for a free port) and returns the
// server and the address it listens on.
func serveOn(t *testing.T, addr string, r orchestratorv1.OrchestratorServiceServer) (*grpc.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	orchestratorv1.RegisterOrchestratorServiceServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return srv, l.Addr().String()
}

func watchCmd(t *testing.T, addr string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	out := newLineCount(0)
	stderr, err = watchTo(t, addr, out, args...)
	return out.String(), stderr, err
}

// watchTo runs slamctl watch with its stdout going to out.
func watchTo(t *testing.T, addr string, out io.Writer, args ...string) (stderr string, err error) {
	t.Helper()
	var errOut bytes.Buffer
	err = run(t.Context(), append([]string{"--addr", addr, "watch"}, args...), func(string) string { return "" }, out, &errOut)
	return errOut.String(), err
}

// lineCount is a watch's stdout that closes reached once n lines are
// written, so that a test cuts its orchestrator off only after the client
// has printed the events it was sent.
type lineCount struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	n       int
	reached chan struct{}
}

func newLineCount(n int) *lineCount { return &lineCount{n: n, reached: make(chan struct{})} }

func (w *lineCount) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.n > 0 && bytes.Count(w.buf.Bytes(), []byte("\n")) >= w.n {
		close(w.reached)
		w.n = 0 // closed once
	}
	return len(p), nil
}

func (w *lineCount) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// cutOffAfter waits until out holds its lines (or ctx ends), then stops srv
// as a dying process would.
func cutOffAfter(ctx context.Context, out *lineCount, srv *grpc.Server) {
	select {
	case <-out.reached:
	case <-ctx.Done():
	}
	srv.Stop()
}

// eventLines are the non-empty lines of a watch's output.
func eventLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestWatchResumesAfterItsOrchestratorDies: the orchestrator dies (its
// server stopped, connections reset) after 3 events, and another starts on
// the same address a moment later; the watch resumes after the third event
// and prints the mission's events once each, in order.
func TestWatchResumesAfterItsOrchestratorDies(t *testing.T) {
	t.Parallel()
	want, _, err := watchCmd(t, func() string {
		_, addr := serveOn(t, "127.0.0.1:0", &replayOrchestrator{events: missionEvents()})
		return addr
	}(), "m")
	if err != nil {
		t.Fatalf("uninterrupted watch: %v", err)
	}

	first := &replayOrchestrator{events: missionEvents(), stopAt: 3}
	srv, addr := serveOn(t, "127.0.0.1:0", first)
	second := &replayOrchestrator{events: missionEvents()}
	restarted := make(chan struct{})
	printed := newLineCount(3)
	first.stop = func(ctx context.Context) error {
		go func() {
			defer close(restarted)
			cutOffAfter(ctx, printed, srv)
			time.Sleep(300 * time.Millisecond) // the client finds nobody there for a while
			serveOn(t, addr, second)
		}()
		// Hold the stream until Stop cuts it, as a dying process would.
		<-ctx.Done()
		return ctx.Err()
	}
	stderr, err := watchTo(t, addr, printed, "m")
	out := printed.String()
	<-restarted
	if err != nil {
		t.Fatalf("watch across the restart: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	if got, w := eventLines(out), eventLines(want); strings.Join(got, "\n") != strings.Join(w, "\n") {
		t.Errorf("events across the restart:\n%s\nwant each once, in order:\n%s", out, want)
	}
	if !strings.Contains(stderr, "resuming after 3-0") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q: want one line saying the watch resumes after 3-0", stderr)
	}
	if got := second.requests(); len(got) == 0 || got[len(got)-1] != "3-0" {
		t.Errorf("the new orchestrator was asked from %v, want 3-0", got)
	}
}

// TestWatchResumesAfterADrain: a draining orchestrator ends the watch
// UNAVAILABLE (services/orchestrator WatchMission); the client resumes at
// once, on the same address here as it would on another replica.
func TestWatchResumesAfterADrain(t *testing.T) {
	t.Parallel()
	r := &replayOrchestrator{events: missionEvents(), stopAt: 5}
	r.stop = func(context.Context) error { return status.Error(codes.Unavailable, "orchestrator draining") }
	_, addr := serveOn(t, "127.0.0.1:0", r)
	out, stderr, err := watchCmd(t, addr, "m")
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, stderr)
	}
	if n := len(eventLines(out)); n != 8 {
		t.Errorf("%d event lines, want 8:\n%s", n, out)
	}
	if got := r.requests(); strings.Join(got, ",") != ",5-0" {
		t.Errorf("WatchMission from %q, want the start, then 5-0", got)
	}
	if !strings.Contains(stderr, "Unavailable: orchestrator draining") {
		t.Errorf("stderr %q does not say why the watch was resumed", stderr)
	}
}

// TestWatchGivesUpAfterReconnect: nobody comes back; the watch fails once
// --reconnect has passed, and at once with --reconnect 0.
func TestWatchGivesUpAfterReconnect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reconnect string
		want      string
	}{
		{"400ms", "unreachable for 400ms (--reconnect)"},
		{"0", "watch mission: Unavailable"},
	} {
		r := &replayOrchestrator{events: missionEvents(), stopAt: 2}
		srv, addr := serveOn(t, "127.0.0.1:0", r)
		printed := newLineCount(2)
		r.stop = func(ctx context.Context) error {
			go cutOffAfter(ctx, printed, srv)
			<-ctx.Done()
			return ctx.Err()
		}
		start := time.Now()
		_, err := watchTo(t, addr, printed, "--reconnect", tc.reconnect, "m")
		out := printed.String()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--reconnect %s: err %v, want it to say %q", tc.reconnect, err, tc.want)
		}
		if n := len(eventLines(out)); n != 2 {
			t.Errorf("--reconnect %s: %d event lines before the loss, want 2", tc.reconnect, n)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("--reconnect %s: gave up after %v", tc.reconnect, d)
		}
	}
	if _, _, err := watchCmd(t, "127.0.0.1:1", "--reconnect", "-1s", "m"); err == nil || !strings.Contains(err.Error(), "--reconnect -1s") {
		t.Errorf("negative --reconnect: %v", err)
	}
}

// flakyStarts answers StartMission as the orchestrator does for a mission
// id it has seen (Created false, the mission COMPLETED with wait), after
// failing the first call UNAVAILABLE once it has recorded the mission: a
// reply lost to a drain.
type flakyStarts struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	mu  sync.Mutex
	ids []string
}

func (f *flakyStarts) StartMission(_ context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, req.GetMissionId())
	if len(f.ids) == 1 {
		return nil, status.Error(codes.Unavailable, "orchestrator draining")
	}
	return &orchestratorv1.StartMissionResponse{Created: false, Mission: &orchestratorv1.Mission{
		MissionId: req.GetMissionId(), State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
	}}, nil
}

// TestStartRetriesWithTheSameMissionID: a start whose orchestrator is not
// there yet, or drains before it answers, is retried with one mission id,
// made by slamctl when --id is not given, so that it starts one mission;
// the retry's "existing" mission is not reported as someone else's.
func TestStartRetriesWithTheSameMissionID(t *testing.T) {
	t.Parallel()
	start := func(addr string, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"--addr", addr, "start", "--wait"}, args...), func(string) string { return "" }, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	f := &flakyStarts{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil { // nobody there for a while
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		srv := grpc.NewServer()
		orchestratorv1.RegisterOrchestratorServiceServer(srv, f)
		t.Cleanup(srv.Stop)
		_ = srv.Serve(l)
	}()
	out, stderr, err := start(addr)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, stderr)
	}
	f.mu.Lock()
	ids := slices.Clone(f.ids)
	f.mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] || !strings.HasPrefix(ids[0], "m-") {
		t.Errorf("StartMission ids %q: want one generated id, twice", ids)
	}
	if strings.Contains(out, "already existed") || !strings.Contains(out, "COMPLETED") {
		t.Errorf("stdout:\n%s", out)
	}
	if strings.Count(stderr, "retrying mission "+ids[0]) != 1 {
		t.Errorf("stderr %q: want one line saying the start is retried", stderr)
	}

	// --reconnect 0: the first UNAVAILABLE ends the start.
	if _, _, err := start(addr, "--reconnect", "0"); err != nil {
		t.Errorf("--reconnect 0 with the orchestrator up: %v", err)
	}
	if _, _, err := start("127.0.0.1:1", "--reconnect", "0"); err == nil || !strings.Contains(err.Error(), "start mission: Unavailable") {
		t.Errorf("--reconnect 0 with no orchestrator: %v", err)
	}
}

// heldStarts holds each StartMission for hold, as a wait does, and fails
// the first fails of them UNAVAILABLE, as a wait does when its orchestrator
// drains.
type heldStarts struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	hold  time.Duration
	fails int
	// failure is what the failed calls return (default: a drain's).
	failure error

	mu    sync.Mutex
	calls int
}

func (h *heldStarts) StartMission(ctx context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	h.mu.Lock()
	h.calls++
	n := h.calls
	h.mu.Unlock()
	select {
	case <-time.After(h.hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if n <= h.fails {
		if h.failure != nil {
			return nil, h.failure
		}
		return nil, status.Error(codes.Unavailable, "orchestrator is shutting down")
	}
	return &orchestratorv1.StartMissionResponse{Created: true, Mission: &orchestratorv1.Mission{
		MissionId: req.GetMissionId(), State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
	}}, nil
}

// TestEachOutageHasItsOwnReconnect: a wait served before its orchestrator
// went away ends the outage before it — one served for seconds, or one
// whose orchestrator said the mission moved to another replica however
// soon — so such losses in a row, further apart than --reconnect, are
// separate outages, each within it.
func TestEachOutageHasItsOwnReconnect(t *testing.T) {
	t.Parallel()
	moved := rpcerr.New(codes.Unavailable, rpcerr.ReasonMissionMoved, "another orchestrator took the mission over")
	for _, h := range []*heldStarts{
		{hold: servedFor + 200*time.Millisecond, fails: 2},
		{hold: 300 * time.Millisecond, fails: 3, failure: moved},
	} {
		_, addr := serveOn(t, "127.0.0.1:0", h)
		var out, stderr bytes.Buffer
		err := run(t.Context(), []string{"--addr", addr, "start", "--wait", "--reconnect", "500ms"}, func(string) string { return "" }, &out, &stderr)
		if err != nil || !strings.Contains(out.String(), "COMPLETED") {
			t.Fatalf("start --wait across %d losses: %v\nstdout:\n%s\nstderr:\n%s", h.fails, err, out.String(), stderr.String())
		}
		if n := strings.Count(stderr.String(), "retrying mission"); n != h.fails {
			t.Errorf("stderr %q: want a line for each of the %d outages", stderr.String(), h.fails)
		}
	}
}

// TestWatchFromTheLastEvent: a watch resumed after a finished mission's
// last event has nothing to print, and exits as the mission ended; a --from
// that is no stream id is a usage error.
func TestWatchFromTheLastEvent(t *testing.T) {
	t.Parallel()
	_, addr := serveOn(t, "127.0.0.1:0", &replayOrchestrator{events: missionEvents()})
	out, _, err := watchCmd(t, addr, "--from", "8-0", "m")
	if err != nil || strings.TrimSpace(out) != "(no events after 8-0: the mission ended COMPLETED)" {
		t.Errorf("watch --from the last event: %q, %v", out, err)
	}
	for _, from := range []string{"bogus", "$", "1-", "-1"} {
		if _, _, err := watchCmd(t, addr, "--from", from, "m"); !errors.Is(err, errUsage) {
			t.Errorf("--from %q: %v, want a usage error", from, err)
		}
	}
}

// TestJSONStartWatchIsJSONAlone: with --json, start --watch writes only the
// events' JSON objects to stdout; the mission and trace line goes to stderr.
func TestJSONStartWatchIsJSONAlone(t *testing.T) {
	t.Parallel()
	_, addr := serveOn(t, "127.0.0.1:0", &replayOrchestrator{events: missionEvents()})
	var out, stderr bytes.Buffer
	err := run(t.Context(), []string{"--addr", addr, "--json", "start", "--watch"}, func(string) string { return "" }, &out, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	n := 0
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("stdout is not a stream of JSON objects: %v after %d", err, n)
		}
		n++
	}
	if n != 8 || !strings.Contains(stderr.String(), "mission m  trace 0af7651916cd43dd8448eb211c80319c") {
		t.Errorf("%d JSON events (want 8), stderr %q", n, stderr.String())
	}
}

// TestStoreOutageKeepsItsReconnect: an orchestrator that answers, slowly,
// that its own store is unavailable (Redis is out) does not end the outage:
// --reconnect still bounds the retries, and the end says that Redis, not
// the orchestrator, was out (found by a review: "the orchestrator was
// unreachable").
func TestStoreOutageKeepsItsReconnect(t *testing.T) {
	t.Parallel()
	h := &heldStarts{hold: servedFor + 100*time.Millisecond, fails: 1 << 30,
		failure: rpcerr.New(codes.Unavailable, rpcerr.ReasonStoreUnavailable, "load mission: mission store (Redis) unavailable: unreachable")}
	_, addr := serveOn(t, "127.0.0.1:0", h)
	var out, stderr bytes.Buffer
	began := time.Now()
	err := run(t.Context(), []string{"--addr", addr, "start", "--wait", "--reconnect", "2s"}, func(string) string { return "" }, &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), "the orchestrator answered, but its store (Redis) was unavailable for 2s (--reconnect)") {
		t.Errorf("start --wait against a store outage: %v", err)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Errorf("gave up after %v", d)
	}
	if n := strings.Count(stderr.String(), "retrying mission"); n != 1 {
		t.Errorf("stderr %q: want one outage", stderr.String())
	}
}

// cancelStub answers CancelMission with the state the cancel found, or
// with wait the state it ended in: the mission id names it ("gives-up"
// is RUNNING, and its compensation gives up).
type cancelStub struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
}

func (cancelStub) CancelMission(_ context.Context, req *orchestratorv1.CancelMissionRequest) (*orchestratorv1.CancelMissionResponse, error) {
	st := orchestratorv1.MissionState_MISSION_STATE_RUNNING
	switch id := req.GetMissionId(); {
	case id == "done", req.GetWait() && id == "running":
		st = orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
	case id == "failed", req.GetWait() && id == "gives-up":
		st = orchestratorv1.MissionState_MISSION_STATE_FAILED
	}
	return &orchestratorv1.CancelMissionResponse{Mission: &orchestratorv1.Mission{MissionId: req.GetMissionId(), State: st, Cancelled: true}}, nil
}

// ResumeMission resumes "failed", which with wait ends COMPENSATED, and
// "fails-again", which with wait ends FAILED once more; "done" needs no
// resuming.
func (cancelStub) ResumeMission(_ context.Context, req *orchestratorv1.ResumeMissionRequest) (*orchestratorv1.ResumeMissionResponse, error) {
	id := req.GetMissionId()
	st := orchestratorv1.MissionState_MISSION_STATE_COMPENSATING
	switch {
	case id == "done":
		return &orchestratorv1.ResumeMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED}}, nil
	case req.GetWait() && id == "fails-again":
		st = orchestratorv1.MissionState_MISSION_STATE_FAILED
	case req.GetWait():
		st = orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
	}
	return &orchestratorv1.ResumeMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, State: st}, Resumed: true}, nil
}

// TestCancelSaysTheCompensationRunsOn: a cancel that found the mission
// RUNNING says the compensation runs in the background (found by a review:
// "state RUNNING" read as a cancel that did nothing); one that found it
// compensated says nothing more. A FAILED mission, found so or ended so
// with --wait, exits 1 and says to resume (found by a review: it exited 0,
// as if the mission had been undone), with --json too.
func TestCancelSaysTheCompensationRunsOn(t *testing.T) {
	t.Parallel()
	_, addr := serveOn(t, "127.0.0.1:0", cancelStub{})
	for _, tc := range []struct {
		id         string
		flag       string // --wait (of cancel) or --json (global)
		background bool
		failed     bool
	}{
		{"running", "", true, false},
		{"done", "", false, false},
		{"failed", "", false, true},
		{"failed", "--json", false, true},
		{"running", "--wait", false, false},
		{"gives-up", "--wait", false, true},
	} {
		args := []string{"--addr", addr, "cancel", tc.id}
		switch tc.flag {
		case "--json":
			args = []string{"--addr", addr, "--json", "cancel", tc.id}
		case "--wait":
			args = []string{"--addr", addr, "cancel", "--wait", tc.id}
		}
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr)
		switch {
		case !tc.failed && err != nil:
			t.Fatalf("%v: %v", args[2:], err)
		case tc.failed && (err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "slamctl resume "+tc.id)):
			t.Errorf("%v = %v (exit %d), want exit 1 saying to resume", args[2:], err, exitCode(err))
		}
		if got := strings.Contains(stdout.String(), "compensates in the background"); got != tc.background {
			t.Errorf("%v printed %q; says the compensation runs on: %v, want %v", args[2:], stdout.String(), got, tc.background)
		}
		if tc.flag == "--json" && !strings.Contains(stdout.String(), `"MISSION_STATE_FAILED"`) {
			t.Errorf("%v printed %q, want the mission as JSON", args[2:], stdout.String())
		}
	}
}

// TestResume: slamctl resume carries on a FAILED mission's compensation
// (found by a review: there was no way but grpcurl or the console), says
// when there was nothing to resume, and with --wait fails unless the
// mission ends COMPENSATED.
func TestResume(t *testing.T) {
	t.Parallel()
	_, addr := serveOn(t, "127.0.0.1:0", cancelStub{})
	for _, tc := range []struct {
		args    []string
		wantOut string
		wantErr string
	}{
		{[]string{"resume", "failed"}, "COMPENSATING", ""},
		{[]string{"resume", "--wait", "failed"}, "COMPENSATED", ""},
		{[]string{"resume", "done"}, "nothing to resume", ""},
		{[]string{"resume", "--wait", "fails-again"}, "FAILED", "the compensation gave up again"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"--addr", addr}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
		switch {
		case tc.wantErr == "" && err != nil, tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
		case !strings.Contains(stdout.String(), tc.wantOut):
			t.Errorf("%v printed %q, want %q", tc.args, stdout.String(), tc.wantOut)
		}
	}
}
