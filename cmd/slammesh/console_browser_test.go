package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/redistest"
)

// updateDocs rewrites the console screenshots committed under docs/ from
// this run: go test ./cmd/slammesh -run TestConsoleInBrowser -update-docs
var updateDocs = flag.Bool("update-docs", false, "write the console screenshots under docs/")

// TestConsoleInBrowser drives the console of a real `slammesh dev` mesh
// (real Redis, four real servers) with headless Chromium: a completed, a
// compensated and a running mission are listed with their states; the
// compensated one's page shows its compensations in reverse step order and
// its error reason; a mission started while the list is open appears
// without a reload; and Cancel on the running one's page compensates it.
// Screenshots go to $SLAMMESH_ARTIFACTS (default: a folder in $TMPDIR).
func TestConsoleInBrowser(t *testing.T) {
	rs := redistest.Start(t)
	out := startDev(t, "--free-ports", "--allow-fault-injection", "--redis-url", rs.URL)
	out.waitFor(t, "Ctrl-C stops the mesh.")
	base := strings.TrimSuffix(out.consoleURL(t), "/")
	orch := orchestratorClient(t, out)
	artifacts := artifactDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := func(req *orchestratorv1.StartMissionRequest) *orchestratorv1.Mission {
		t.Helper()
		resp, err := orch.StartMission(ctx, req)
		if err != nil {
			t.Fatalf("StartMission %s: %v", req.GetMissionId(), err)
		}
		return resp.GetMission()
	}
	if m := start(&orchestratorv1.StartMissionRequest{MissionId: "m-done", Scenario: &typesv1.Scenario{Seed: 7, Agents: 3}, Wait: true}); m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("m-done ended %s", m.GetState())
	}
	if m := start(&orchestratorv1.StartMissionRequest{MissionId: "m-sealed", Wait: true,
		Scenario: &typesv1.Scenario{Seed: 3, Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_SEALED_AGENT}}); m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		t.Fatalf("m-sealed ended %s", m.GetState())
	}
	// Every attempt of localization stalls to its deadline (10 s) and is
	// retried: the mission stays RUNNING for about a minute unless cancelled.
	start(&orchestratorv1.StartMissionRequest{MissionId: "m-running", Scenario: &typesv1.Scenario{Seed: 5, Agents: 2},
		Faults: &typesv1.FaultPlan{Faults: []*typesv1.Fault{{Step: "localize_agents", Kind: typesv1.FaultKind_FAULT_KIND_STALL, Times: 5}}}})

	bctx := browser(t, ctx)
	dialogs := make(chan string, 4)
	if err := chromedp.Listen(bctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case dialogs <- d.Message:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	// The list: all three, with their states.
	do(t, bctx, chromedp.Navigate(base+"/"))
	want := map[string]string{"m-done": "COMPLETED", "m-sealed": "COMPENSATED", "m-running": "RUNNING"}
	for id, state := range want {
		waitJS(t, bctx, 30*time.Second, `(document.querySelector('tr[data-id="`+id+`"] .state') || {}).textContent === "`+state+`"`)
	}
	waitJS(t, bctx, 10*time.Second, `document.getElementById("live-status").textContent === "live"`)

	// A new mission appears on the open page within 2 s, without a reload.
	eval[bool](t, bctx, `window.__notReloaded = true`)
	start(&orchestratorv1.StartMissionRequest{MissionId: "m-new", Scenario: &typesv1.Scenario{Seed: 9, Agents: 2}})
	waitJS(t, bctx, 2*time.Second, `document.querySelector('tr[data-id="m-new"]') !== null`)
	if !eval[bool](t, bctx, `window.__notReloaded === true`) {
		t.Error("the list page reloaded to show the new mission")
	}
	waitJS(t, bctx, 30*time.Second, `(document.querySelector('tr[data-id="m-new"] .state') || {}).textContent === "COMPLETED"`)
	ids := eval[[]string](t, bctx, `Array.from(document.querySelectorAll('#missions tbody tr')).map(r => r.dataset.id)`)
	if i, j := slices.Index(ids, "m-new"), slices.Index(ids, "m-done"); i < 0 || j < 0 || i > j {
		t.Errorf("list order %v: want newest first", ids)
	}
	screenshot(t, bctx, artifacts, "console-list.png")

	// The compensated mission: compensations in reverse step order, and why.
	do(t, bctx, chromedp.Navigate(base+"/missions/m-sealed"))
	waitJS(t, bctx, 10*time.Second, `document.getElementById("compensations") !== null`)
	comps := eval[[]string](t, bctx, `Array.from(document.querySelectorAll('#compensations li')).map(li => li.dataset.step)`)
	if !slices.Equal(comps, []string{"localize_agents", "allocate_map"}) {
		t.Errorf("compensations shown %v, want [localize_agents allocate_map]", comps)
	}
	if reason := eval[string](t, bctx, `document.getElementById("error-reason").textContent`); !strings.Contains(reason, "INSUFFICIENT_OVERLAP") {
		t.Errorf("error reason shown %q, want INSUFFICIENT_OVERLAP", reason)
	}
	screenshot(t, bctx, artifacts, "console-mission-compensated.png")

	// The completed mission: poses and the merged map.
	do(t, bctx, chromedp.Navigate(base+"/missions/m-done"))
	waitJS(t, bctx, 10*time.Second, `document.querySelectorAll(".poses tbody tr").length === 3`)
	waitJS(t, bctx, 10*time.Second, `(() => { const m = document.getElementById("map"); return m !== null && m.complete && m.naturalWidth > 0 })()`)
	// Each agent's legend colour tints a region of the map: pixels on the
	// way from white to the colour (free floor and walls), far more than
	// its pose disc alone would paint.
	tinted := eval[map[string]int](t, bctx, mapTintJS)
	t.Logf("map pixels tinted per agent: %v", tinted)
	if len(tinted) != 3 {
		t.Errorf("map legend agents %v, want 3", tinted)
	}
	for agent, n := range tinted {
		if n < 1000 {
			t.Errorf("%s's colour tints %d pixels of the map, want a region (≥ 1000)", agent, n)
		}
	}
	screenshot(t, bctx, artifacts, "console-mission.png")

	// Cancel from the running mission's page compensates it.
	do(t, bctx, chromedp.Navigate(base+"/missions/m-running"))
	waitJS(t, bctx, 10*time.Second, `document.getElementById("mission-state").textContent === "RUNNING"`)
	do(t, bctx, chromedp.Click(chromedp.ID("cancel")))
	waitJS(t, bctx, 60*time.Second, `(document.getElementById("mission-state") || {}).textContent === "COMPENSATED"`)
	waitJS(t, bctx, 10*time.Second, `Array.from(document.querySelectorAll('#feed tr')).some(r => r.classList.contains("t-mission-compensated"))`)
	got, err := orch.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: "m-running"})
	if err != nil || got.GetMission().GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED || !got.GetMission().GetCancelled() {
		t.Errorf("after Cancel in the console, GetMission = %v, %v; want a cancelled, COMPENSATED mission", got.GetMission(), err)
	}
	screenshot(t, bctx, artifacts, "console-mission-cancelled.png")

	// The fleet view: rates, states, reasons and step latencies.
	do(t, bctx, chromedp.Navigate(base+"/fleet"))
	steps := eval[[]string](t, bctx, `Array.from(document.querySelectorAll('#latency tbody tr td:first-child')).map(td => td.textContent)`)
	if !slices.Equal(steps, []string{"allocate_map", "localize_agents", "merge_maps"}) {
		t.Errorf("fleet latency rows %v, want the three steps", steps)
	}
	if text := eval[string](t, bctx, `document.body.innerText`); !strings.Contains(text, "INSUFFICIENT_OVERLAP") || !strings.Contains(text, "MISSION_CANCELLED") {
		t.Errorf("fleet view does not list the compensations' reasons:\n%s", text)
	}
	screenshot(t, bctx, artifacts, "console-fleet.png")

	// A mission deleted while the list is open is marked GONE there, and its
	// page says that its data is gone.
	do(t, bctx, chromedp.Navigate(base+"/"))
	waitJS(t, bctx, 10*time.Second, `document.getElementById("live-status").textContent === "live"`)
	if _, err := orch.DeleteMission(ctx, &orchestratorv1.DeleteMissionRequest{MissionId: "m-done"}); err != nil {
		t.Fatalf("DeleteMission m-done: %v", err)
	}
	waitJS(t, bctx, 10*time.Second, `(document.querySelector('tr[data-id="m-done"] .state') || {}).textContent === "GONE"`)
	do(t, bctx, chromedp.Navigate(base+"/missions/m-done"))
	if msg := eval[string](t, bctx, `document.getElementById("error-message").textContent`); !strings.Contains(msg, "no longer exists") {
		t.Errorf("the deleted mission's page says %q, want that it no longer exists", msg)
	}
	// A mission deleted while its own page is open: the page's feed says
	// GONE at its next idle heartbeat (15 s; found by a review: the page
	// waited on, saying nothing).
	do(t, bctx, chromedp.Navigate(base+"/missions/m-sealed"))
	waitJS(t, bctx, 10*time.Second, `document.getElementById("feed-status").textContent === "live"`)
	if _, err := orch.DeleteMission(ctx, &orchestratorv1.DeleteMissionRequest{MissionId: "m-sealed"}); err != nil {
		t.Fatalf("DeleteMission m-sealed: %v", err)
	}
	waitJS(t, bctx, 40*time.Second, `document.getElementById("feed-status").textContent.startsWith("GONE")`)

	// A mission id with markup is shown as text, on a 404 page.
	do(t, bctx, chromedp.Navigate(base+"/missions/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
	msg := eval[string](t, bctx, `document.getElementById("error-message").textContent`)
	if !strings.Contains(msg, "<script>alert(1)</script>") {
		t.Errorf("error page says %q, want the id shown as text", msg)
	}
	if n := eval[int](t, bctx, `document.scripts.length`); n != 1 {
		t.Errorf("the error page has %d scripts, want only the console's own", n)
	}
	select {
	case d := <-dialogs:
		t.Errorf("a script ran: dialog %q", d)
	default:
	}

	if *updateDocs {
		for _, name := range []string{"console-list.png", "console-mission.png"} {
			b, err := os.ReadFile(filepath.Join(artifacts, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// mapTintJS counts, for each agent of the map legend, the map image's
// pixels that are not grey and lie on the line from white to the agent's
// swatch colour (cosine > 0.995): its pale floor and its walls.
const mapTintJS = `(() => {
  const img = document.getElementById("map");
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  const agents = Array.from(document.querySelectorAll(".legend li")).filter(li => li.querySelector(".swatch[style]"));
  const out = {};
  for (const li of agents) {
    const rgb = getComputedStyle(li.querySelector(".swatch")).backgroundColor.match(/\d+/g).map(Number);
    const e = rgb.map(v => v - 255), ne = Math.hypot(...e);
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      const p = [px[i], px[i+1], px[i+2]];
      if (Math.max(...p) - Math.min(...p) < 10) continue;
      const d = p.map(v => v - 255), nd = Math.hypot(...d);
      if (nd > 0 && (d[0]*e[0] + d[1]*e[1] + d[2]*e[2]) / (nd * ne) > 0.995) n++;
    }
    out[li.textContent.trim()] = n;
  }
  return out;
})()`

var orchAddrRe = regexp.MustCompile(`orchestrator\s+(\S+)`)

// orchestratorClient dials the orchestrator the mesh printed.
func orchestratorClient(t *testing.T, out *devOutput) orchestratorv1.OrchestratorServiceClient {
	t.Helper()
	m := orchAddrRe.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no orchestrator address in:\n%s", out)
	}
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return orchestratorv1.NewOrchestratorServiceClient(conn)
}

// artifactDir is where screenshots go: $SLAMMESH_ARTIFACTS, else a folder
// under the temporary directory that outlives the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLAMMESH_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "slammesh-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Chromium with a fresh profile; it fails (never
// skips) when Chromium is missing: `make deps` installs it.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("chromium is not installed: run make deps (scripts/ensure-chromium.sh) or apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is true on the page, failing after d. A page
// that navigates meanwhile (a form's redirect) is polled again once loaded.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(max(left, time.Millisecond)), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		// The page reloads itself when a mission changes state: a poll
		// running across the reload loses its execution context.
		transient := strings.Contains(err.Error(), "navigated or closed") || strings.Contains(err.Error(), "Cannot find context with specified id")
		if transient && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("waiting %v for %s: %v\npage text:\n%s", d, expr, err, text)
	}
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}
