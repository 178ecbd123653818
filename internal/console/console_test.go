package console_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/console"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeOrch is an orchestrator holding missions in memory, recording the
// cancels and resumes it receives.
type fakeOrch struct {
	mu       sync.Mutex
	missions []*orchestratorv1.Mission // newest first
	cancels  []string
	resumes  []string
	// block makes every call wait until its context ends.
	block bool
}

func (f *fakeOrch) find(id string) (*orchestratorv1.Mission, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.missions {
		if m.GetMissionId() == id {
			return m, nil
		}
	}
	if id == "m-expired" {
		return nil, rpcerr.New(codes.NotFound, rpcerr.ReasonMissionExpired, `mission "m-expired" no longer exists: its data expired at the end of its retention period (5s) or was deleted`)
	}
	if strings.ContainsAny(id, "<>\"' ") {
		return nil, status.Errorf(codes.InvalidArgument, "mission_id: may contain only letters, digits and _ . : -")
	}
	return nil, status.Errorf(codes.NotFound, "mission %q not found", id)
}

func (f *fakeOrch) wait(ctx context.Context) error {
	if !f.block {
		return nil
	}
	<-ctx.Done()
	return status.FromContextError(ctx.Err()).Err()
}

func (f *fakeOrch) GetMission(ctx context.Context, in *orchestratorv1.GetMissionRequest, _ ...grpc.CallOption) (*orchestratorv1.GetMissionResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	m, err := f.find(in.GetMissionId())
	if err != nil {
		return nil, err
	}
	return &orchestratorv1.GetMissionResponse{Mission: m}, nil
}

func (f *fakeOrch) ListMissions(ctx context.Context, in *orchestratorv1.ListMissionsRequest, _ ...grpc.CallOption) (*orchestratorv1.ListMissionsResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &orchestratorv1.ListMissionsResponse{}
	for _, m := range f.missions {
		if in.GetPageSize() > 0 && len(resp.Missions) == int(in.GetPageSize()) {
			resp.NextPageToken = "more"
			break
		}
		if in.GetState() == 0 || in.GetState() == m.GetState() {
			resp.Missions = append(resp.Missions, m)
		}
	}
	return resp, nil
}

func (f *fakeOrch) CancelMission(ctx context.Context, in *orchestratorv1.CancelMissionRequest, _ ...grpc.CallOption) (*orchestratorv1.CancelMissionResponse, error) {
	m, err := f.find(in.GetMissionId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, in.GetMissionId())
	return &orchestratorv1.CancelMissionResponse{Mission: m}, nil
}

func (f *fakeOrch) ResumeMission(ctx context.Context, in *orchestratorv1.ResumeMissionRequest, _ ...grpc.CallOption) (*orchestratorv1.ResumeMissionResponse, error) {
	m, err := f.find(in.GetMissionId())
	if err != nil {
		return nil, err
	}
	switch m.GetState() {
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATING, orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
		// As the orchestrator: resumed already (by another call), nothing to do.
		return &orchestratorv1.ResumeMissionResponse{Mission: m}, nil
	case orchestratorv1.MissionState_MISSION_STATE_FAILED:
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "mission %q is %s: only a failed mission's compensation can be resumed", m.GetMissionId(), m.GetState())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes = append(f.resumes, in.GetMissionId())
	return &orchestratorv1.ResumeMissionResponse{Mission: m, Resumed: true}, nil
}

func (f *fakeOrch) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.missions {
		if m.GetMissionId() == id {
			f.missions = append(f.missions[:i:i], f.missions[i+1:]...)
			return
		}
	}
}

func (f *fakeOrch) add(m *orchestratorv1.Mission) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missions = append([]*orchestratorv1.Mission{m}, f.missions...)
}

// hostile is a string that would run script if a page did not escape it.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

func mission(id string, state orchestratorv1.MissionState) *orchestratorv1.Mission {
	now := time.Now()
	return &orchestratorv1.Mission{
		MissionId:      id,
		SagaId:         "saga-" + id,
		State:          state,
		Agents:         3,
		TraceId:        "0123456789abcdef0123456789abcdef",
		ProgressStream: progress.MissionStream(id),
		CreatedAt:      timestamppb.New(now.Add(-time.Minute)),
		Steps: []*orchestratorv1.Step{
			{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_SUCCEEDED, Attempts: 1},
			{Name: "localize_agents", State: orchestratorv1.StepState_STEP_STATE_RUNNING, Attempts: 2},
			{Name: "merge_maps", State: orchestratorv1.StepState_STEP_STATE_PENDING},
		},
	}
}

// env is a console over a fake orchestrator and a real Redis.
type env struct {
	orch *fakeOrch
	srv  *httptest.Server
	pub  *progress.Publisher
	rdb  *redis.Client
}

func newEnv(t *testing.T, limits console.Limits) *env {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	f := &fakeOrch{}
	c, err := console.New(console.Deps{Orchestrator: f, Redis: rdb, JaegerURL: "http://jaeger.example:16686/", Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &env{orch: f, srv: srv, pub: progress.NewPublisher(rdb, progress.Options{}), rdb: rdb}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestUnknownMissionsAre404(t *testing.T) {
	e := newEnv(t, console.Limits{})
	for _, path := range []string{
		"/missions/m-nope",
		"/missions/m-nope/map.png",
		"/events/missions/m-nope",
		"/missions/" + url.PathEscape(hostile),
		"/no/such/page",
		// Not UTF-8: no mission has such an id, and the orchestrator's
		// client cannot send it (a review saw 502 and the raw byte echoed).
		"/missions/%FF",
		"/missions/%FF/map.png",
		"/events/missions/%FF",
		"/missions/m%00x",
		"/events/missions/a%E2%80%AEb",
	} {
		t.Run(path, func(t *testing.T) {
			code, body := get(t, e.srv.URL+path)
			if code != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", path, code)
			}
			if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") || strings.Contains(body, "\xff") || strings.Contains(body, "\x00") || strings.Contains(body, "\u202e") {
				t.Errorf("GET %s echoes markup unescaped:\n%s", path, body)
			}
		})
	}
	_, body := get(t, e.srv.URL+"/missions/"+url.PathEscape(hostile))
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Errorf("the 404 page does not show the id as escaped text:\n%s", body)
	}
	// A feed's or an image's client shows no page: their 404 is plain text.
	for _, path := range []string{"/missions/m-nope/map.png", "/events/missions/m-nope"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET %s: Content-Type %q, want text/plain", path, ct)
		}
	}
	// The static files are served one by one, never listed.
	if code, _ := get(t, e.srv.URL+"/static/"); code != http.StatusNotFound {
		t.Errorf("GET /static/ = %d, want 404 (no listing)", code)
	}
	if code, _ := get(t, e.srv.URL+"/static/console.css"); code != http.StatusOK {
		t.Errorf("GET /static/console.css = %d, want 200", code)
	}
}

// TestExpiredMissionsAre410: a mission whose data expired or was deleted
// (MISSION_EXPIRED) is 410 Gone with the reason, on its page and its live feed.
func TestExpiredMissionsAre410(t *testing.T) {
	e := newEnv(t, console.Limits{})
	for _, path := range []string{"/missions/m-expired", "/events/missions/m-expired"} {
		code, body := get(t, e.srv.URL+path)
		if code != http.StatusGone || !strings.Contains(body, "expired at the end of its retention period") {
			t.Errorf("GET %s = %d, want 410 with the reason:\n%s", path, code, body)
		}
	}
}

// TestResumeThatResumedNothingSaysSo: a Resume racing another (the mission
// is already compensating) or of a compensated mission is answered 409 with
// the mission's state, not a silent redirect as if it had resumed it.
func TestResumeThatResumedNothingSaysSo(t *testing.T) {
	e := newEnv(t, console.Limits{})
	e.orch.add(mission("m-comp", orchestratorv1.MissionState_MISSION_STATE_COMPENSATING))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(e.srv.URL+"/missions/m-comp/resume", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "already COMPENSATING") {
		t.Errorf("resume of a compensating mission = %d, want 409 naming its state:\n%s", resp.StatusCode, b)
	}
}

// TestUserStringsAreEscaped: every string a mission or its events carry
// (error messages, event messages, reasons, agent ids) reaches the page as
// text, never as markup.
func TestUserStringsAreEscaped(t *testing.T) {
	e := newEnv(t, console.Limits{})
	m := mission("m-x", orchestratorv1.MissionState_MISSION_STATE_COMPENSATED)
	m.Error = &orchestratorv1.MissionError{Code: "FAILED_PRECONDITION", Reason: hostile, Message: hostile}
	m.Steps[1].Error = &orchestratorv1.MissionError{Code: "FAILED_PRECONDITION", Reason: hostile}
	e.orch.add(m)
	ctx := context.Background()
	for _, ev := range []progress.Event{
		{MissionID: "m-x", Type: progress.MissionStarted, Service: "orchestrator", Message: hostile},
		{MissionID: "m-x", Type: progress.StepFailed, Step: "localize_agents", Attempt: 1, Service: "localization", ErrorCode: "FAILED_PRECONDITION", ErrorReason: hostile, Message: hostile},
		{MissionID: "m-x", Type: progress.MissionCompensated, Service: "orchestrator", Message: hostile},
	} {
		if err := e.pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/", "/missions/m-x", "/missions/m-x?part=live", "/fleet"} {
		code, body := get(t, e.srv.URL+path)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d:\n%s", path, code, body)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("GET %s renders a mission's string as markup:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("GET %s does not show the string as text", path)
		}
	}
	// The page's only scripts are the console's own.
	_, body := get(t, e.srv.URL+"/missions/m-x")
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("mission page has %d <script> tags, want 1 (the console's)", n)
	}
	if !strings.Contains(body, `href="http://jaeger.example:16686/trace/0123456789abcdef0123456789abcdef"`) {
		t.Error("mission page has no link to its trace in Jaeger")
	}
}

func TestCancelAndResumeRefuseOtherOrigins(t *testing.T) {
	e := newEnv(t, console.Limits{})
	e.orch.add(mission("m-run", orchestratorv1.MissionState_MISSION_STATE_RUNNING))
	e.orch.add(mission("m-failed", orchestratorv1.MissionState_MISSION_STATE_FAILED))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, hdr map[string]string) int {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name string
		path string
		hdr  map[string]string
		want int
	}{
		{"cross-site fetch", "/missions/m-run/cancel", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", "/missions/m-run/cancel", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"same origin", "/missions/m-run/cancel", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.srv.URL}, http.StatusSeeOther},
		{"resume a failed mission", "/missions/m-failed/resume", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
		{"resume a running mission: the RPC's rule", "/missions/m-run/resume", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusConflict},
		{"cancel an unknown mission", "/missions/m-nope/cancel", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNotFound},
		{"cancel a mission id that is not UTF-8", "/missions/%FF/cancel", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.path, tt.hdr); got != tt.want {
				t.Errorf("POST %s = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
	e.orch.mu.Lock()
	defer e.orch.mu.Unlock()
	if len(e.orch.cancels) != 1 || e.orch.cancels[0] != "m-run" || len(e.orch.resumes) != 1 {
		t.Errorf("cancels %v, resumes %v: want one same-origin cancel of m-run and one resume", e.orch.cancels, e.orch.resumes)
	}
}

// TestPagesAreBoundedInTime: a stuck orchestrator makes a page fail with
// 504 after CallTimeout, never hang (nor hold anything a mission needs).
func TestPagesAreBoundedInTime(t *testing.T) {
	e := newEnv(t, console.Limits{CallTimeout: 200 * time.Millisecond})
	e.orch.block = true
	for _, path := range []string{"/", "/missions/m-x", "/fleet"} {
		start := time.Now()
		code, _ := get(t, e.srv.URL+path)
		if code != http.StatusGatewayTimeout {
			t.Errorf("GET %s with a stuck orchestrator = %d, want 504", path, code)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("GET %s took %v", path, d)
		}
	}
}

// sseReader reads Server-Sent Events.
type sseReader struct {
	sc *bufio.Scanner
}

// next returns the next event's type and data.
func (r *sseReader) next() (event, data string, err error) {
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && event != "":
			return event, data, nil
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
	if err := r.sc.Err(); err != nil {
		return "", "", err
	}
	return "", "", io.EOF
}

func openSSE(t *testing.T, ctx context.Context, u string) *sseReader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s = %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseReader{sc: bufio.NewScanner(resp.Body)}
}

// TestListFeedMarksVanishedMissions: a mission whose data expired or was
// deleted reaches open list pages as a "gone" event; one that only fell off
// the page's window (ListPageSize newer missions came) does not.
func TestListFeedMarksVanishedMissions(t *testing.T) {
	e := newEnv(t, console.Limits{PollInterval: 50 * time.Millisecond, ListPageSize: 2})
	// Creation times a second apart: the window's bounds are by creation time.
	at := func(m *orchestratorv1.Mission, ago time.Duration) *orchestratorv1.Mission {
		m.CreatedAt = timestamppb.New(time.Now().Add(-ago))
		return m
	}
	e.orch.add(at(mission("m-a", orchestratorv1.MissionState_MISSION_STATE_COMPLETED), 3*time.Second))
	e.orch.add(at(mission("m-b", orchestratorv1.MissionState_MISSION_STATE_COMPLETED), 2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := openSSE(t, ctx, e.srv.URL+"/events/missions")
	if ev, data, err := list.next(); err != nil || ev != "rows" || !strings.Contains(data, `"m-b"`) {
		t.Fatalf("first list event = %q %s, %v", ev, data, err)
	}
	// m-c pushes m-a off the two-row window: a new row, nothing gone.
	e.orch.add(at(mission("m-c", orchestratorv1.MissionState_MISSION_STATE_RUNNING), time.Second))
	if ev, data, err := list.next(); err != nil || ev != "rows" || !strings.Contains(data, `"m-c"`) {
		t.Fatalf("after m-c: %q %s, %v; want rows with m-c and no gone event", ev, data, err)
	}
	// m-c's data is deleted: m-b comes back into the window, m-c is gone.
	e.orch.remove("m-c")
	var got []string
	for len(got) < 2 {
		ev, data, err := list.next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev+" "+data)
	}
	if !slices.Contains(got, `gone ["m-c"]`) || strings.Contains(strings.Join(got, "\n"), `gone ["m-a"]`) {
		t.Errorf("after deleting m-c: %q; want a gone event for m-c only", got)
	}
}

// TestLiveFeeds: the list feed sends a mission that appears after the page
// opened, and the mission feed its events after the one given.
func TestLiveFeeds(t *testing.T) {
	e := newEnv(t, console.Limits{PollInterval: 50 * time.Millisecond})
	e.orch.add(mission("m-old", orchestratorv1.MissionState_MISSION_STATE_COMPLETED))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	list := openSSE(t, ctx, e.srv.URL+"/events/missions")
	ev, data, err := list.next()
	if err != nil || ev != "rows" || !strings.Contains(data, `"id":"m-old"`) {
		t.Fatalf("first list event = %q %s, %v; want rows with m-old", ev, data, err)
	}
	e.orch.add(mission("m-new", orchestratorv1.MissionState_MISSION_STATE_RUNNING))
	ev, data, err = list.next()
	if err != nil || ev != "rows" || !strings.Contains(data, `"id":"m-new"`) || strings.Contains(data, "m-old") {
		t.Fatalf("next list event = %q %s, %v; want only the new mission", ev, data, err)
	}

	if err := e.pub.Publish(ctx, progress.Event{MissionID: "m-new", Type: progress.MissionStarted, Service: "orchestrator"}); err != nil {
		t.Fatal(err)
	}
	feed := openSSE(t, ctx, e.srv.URL+"/events/missions/m-new")
	if ev, data, err := feed.next(); err != nil || ev != "ev" || !strings.Contains(data, `"type":"mission.started"`) {
		t.Fatalf("first mission event = %q %s, %v", ev, data, err)
	}
	if err := e.pub.Publish(ctx, progress.Event{MissionID: "m-new", Type: progress.StepStarted, Step: "allocate_map", Attempt: 1, Service: "mapping"}); err != nil {
		t.Fatal(err)
	}
	if ev, data, err := feed.next(); err != nil || ev != "ev" || !strings.Contains(data, `"type":"step.started"`) {
		t.Fatalf("live mission event = %q %s, %v", ev, data, err)
	}
	if code, _ := get(t, e.srv.URL+"/events/missions/m-new?after=bogus"); code != http.StatusBadRequest {
		t.Errorf("a malformed after = %d, want 400", code)
	}
}

func TestLiveFeedsAreBounded(t *testing.T) {
	e := newEnv(t, console.Limits{MaxStreams: 1, PollInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = openSSE(t, ctx, e.srv.URL+"/events/missions")
	if code, _ := get(t, e.srv.URL+"/events/missions"); code != http.StatusServiceUnavailable {
		t.Errorf("a feed past MaxStreams = %d, want 503", code)
	}
}

// TestRebindingHostsAreRefused: a tokenless console on loopback serves
// only requests that name a loopback host. A page of another site, rebound
// to 127.0.0.1 under its own name, is to the browser the console's own
// origin, so the cross-origin check passes it: its Host is what gives it
// away, for reads and for Cancel alike.
func TestRebindingHostsAreRefused(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	f := &fakeOrch{}
	f.add(mission("m-run", orchestratorv1.MissionState_MISSION_STATE_RUNNING))
	c, err := console.New(console.Deps{Orchestrator: f, Redis: rdb, LoopbackHosts: true, ExtraHosts: []string{"Slammesh.Dev.Example"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	do := func(method, path, host string) int {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"rebind.attacker.example:9091", "attacker.example", "10.0.0.1:9091", "localhost.attacker.example:9091"} {
		for _, r := range []struct{ method, path string }{{http.MethodGet, "/"}, {http.MethodGet, "/missions/m-run"}, {http.MethodPost, "/missions/m-run/cancel"}} {
			if got := do(r.method, r.path, host); got != http.StatusForbidden {
				t.Errorf("%s %s with Host %s = %d, want 403", r.method, r.path, host, got)
			}
		}
	}
	// The loopback names, and a name the user gave (a forwarded port's).
	for _, host := range []string{"localhost:9091", "LOCALHOST", "console.localhost:9091", "127.0.0.1:9091", "127.1.2.3", "[::1]:9091", "localhost.", "slammesh.dev.example:443"} {
		if got := do(http.MethodGet, "/missions/m-run", host); got != http.StatusOK {
			t.Errorf("GET with Host %s = %d, want 200", host, got)
		}
	}
	if got := do(http.MethodPost, "/missions/m-run/cancel", "localhost:9091"); got != http.StatusSeeOther {
		t.Errorf("Cancel from the user's own tab = %d, want 303", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cancels) != 1 {
		t.Errorf("cancels %v, want the one from localhost", f.cancels)
	}
}

// TestMissionFeedSaysGone: a mission deleted while its page is open ends
// the page's feed with a "gone" event at the feed's next idle heartbeat
// (found by a review: the feed idled for its whole lifetime).
func TestMissionFeedSaysGone(t *testing.T) {
	e := newEnv(t, console.Limits{Heartbeat: 100 * time.Millisecond})
	e.orch.add(mission("m-del", orchestratorv1.MissionState_MISSION_STATE_COMPLETED))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	feed := openSSE(t, ctx, e.srv.URL+"/events/missions/m-del")
	e.orch.remove("m-del")
	ev, data, err := feed.next()
	if err != nil || ev != "gone" || !strings.Contains(data, "expired or was deleted") {
		t.Fatalf("after the deletion the feed sent %q %s, %v; want gone", ev, data, err)
	}
	if _, _, err := feed.next(); !errors.Is(err, io.EOF) {
		t.Errorf("the feed went on after gone: %v", err)
	}
}

// TestMissionFeedClearsItsProblem: a feed that could not read its events
// says so ("problem"), and says "ok" once it reads again, so that the
// page stops showing the problem (found by a review: it showed it on after
// Redis came back). A key of the wrong type stands in for the outage: a
// real Redis error, which the feed retries.
func TestMissionFeedClearsItsProblem(t *testing.T) {
	e := newEnv(t, console.Limits{})
	e.orch.add(mission("m-trouble", orchestratorv1.MissionState_MISSION_STATE_RUNNING))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := progress.MissionStream("m-trouble")
	if err := e.rdb.Set(ctx, stream, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	feed := openSSE(t, ctx, e.srv.URL+"/events/missions/m-trouble")
	if ev, _, err := feed.next(); err != nil || ev != "problem" {
		t.Fatalf("first event %q, %v; want problem", ev, err)
	}
	if err := e.rdb.Del(ctx, stream).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		ev, _, err := feed.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev == "ok" {
			break
		}
		if ev != "problem" {
			t.Fatalf("event %q before ok", ev)
		}
	}
}
