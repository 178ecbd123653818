package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/redistest"
)

// observability is where the Grafana dashboard and the alert rules live.
var observability = filepath.Join("..", "..", "deploy", "observability")

// metricRef matches a metric name in a PromQL expression: an identifier
// that is not followed by "(" (a function), "=" or "~" (a label matcher) and
// is not a keyword. Label names appear only inside braces or after by/
// without, which exprNames removes first.
var (
	metricRef   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	braces      = regexp.MustCompile(`\{[^}]*\}`)
	grouping    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	rangeSel    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlWords = map[string]bool{"sum": true, "rate": true, "increase": true, "histogram_quantile": true,
		"max": true, "min": true, "avg": true, "count": true, "and": true, "or": true, "unless": true, "offset": true}
)

// exprNames returns the metric names expr selects.
func exprNames(expr string) []string {
	expr = braces.ReplaceAllString(expr, "")
	expr = grouping.ReplaceAllString(expr, "")
	expr = rangeSel.ReplaceAllString(expr, "")
	var names []string
	for _, loc := range metricRef.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		rest := strings.TrimSpace(expr[loc[1]:])
		if promqlWords[name] || strings.HasPrefix(rest, "(") {
			continue
		}
		names = append(names, name)
	}
	return names
}

// dashboardExprs returns every "expr" of the dashboard's panels.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(observability, "grafana", "dashboards", "slammesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

var ruleExpr = regexp.MustCompile(`(?m)^\s+expr:\s*(.+)$`)

// ruleExprs returns the expr of every alert rule (one line each, as the
// file's header asks).
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(observability, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, m := range ruleExpr.FindAllStringSubmatch(string(b), -1) {
		exprs = append(exprs, m[1])
	}
	if n := strings.Count(string(b), "- alert:"); n != len(exprs) || n == 0 {
		t.Fatalf("%d alerts but %d one-line exprs in alerts.yml", n, len(exprs))
	}
	return exprs
}

var (
	metricsURLRe = regexp.MustCompile(`(http://\S+/)metrics`)
	byLabels     = regexp.MustCompile(`\bby \(([^)]*)\)`)
	capacityUsed = regexp.MustCompile(`(?m)^slammesh_mapping_capacity_used(?:\{[^}]*\})? (\S+)$`)
)

// TestObservabilityNamesExported: every metric the Grafana dashboard and the
// alert rules name is exported by the real services, scraped from their
// /metrics after a completed and a compensated mission.
func TestObservabilityNamesExported(t *testing.T) {
	exprs := append(dashboardExprs(t), ruleExprs(t)...)

	rs := redistest.Start(t)
	out := startDev(t, "--free-ports", "--redis-url", rs.URL)
	out.waitFor(t, "Ctrl-C stops the mesh.")
	orch := orchestratorClient(t, out)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, sc := range []*typesv1.Scenario{
		{Seed: 7, Agents: 3},
		{Seed: 3, Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_SEALED_AGENT},
	} {
		if _, err := orch.StartMission(ctx, &orchestratorv1.StartMissionRequest{Scenario: sc, Wait: true}); err != nil {
			t.Fatal(err)
		}
	}

	urls := []string{out.consoleURL(t)}
	for _, m := range metricsURLRe.FindAllStringSubmatch(out.String(), -1) {
		urls = append(urls, m[1])
	}
	if len(urls) != 4 {
		t.Fatalf("found %d HTTP ports in the mesh's output, want 4:\n%s", len(urls), out)
	}
	exported := make(map[string]bool)
	// Labels: "service" is added by Prometheus' scrape config, "le" is every
	// histogram bucket's.
	labels := map[string]bool{"service": true, "le": true}
	sample := regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)
	label := regexp.MustCompile(`[{,]([a-zA-Z_][a-zA-Z0-9_]*)="`)
	capacitySeen := false
	for _, u := range urls {
		resp, err := http.Get(u + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %smetrics = %d, %v", u, resp.StatusCode, err)
		}
		for _, m := range sample.FindAllStringSubmatch(string(b), -1) {
			exported[m[1]] = true
		}
		// The completed mission still holds its map: the capacity gauge,
		// read from the shared counter, says so.
		if m := capacityUsed.FindStringSubmatch(string(b)); m != nil {
			capacitySeen = true
			if m[1] == "0" {
				t.Errorf("slammesh_mapping_capacity_used is 0 with a completed mission holding its map")
			}
		}
		for _, m := range label.FindAllStringSubmatch(string(b), -1) {
			labels[m[1]] = true
		}
	}

	if !capacitySeen {
		t.Error("no service exports slammesh_mapping_capacity_used")
	}
	var referenced []string
	for _, e := range exprs {
		names := exprNames(e)
		if len(names) == 0 {
			t.Errorf("no metric found in %q", e)
		}
		for _, g := range byLabels.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); !labels[l] {
					t.Errorf("label %s (in %q) is on no exported series", l, e)
				}
			}
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s (in %q) is not exported by any service", n, e)
			}
			if !slices.Contains(referenced, n) {
				referenced = append(referenced, n)
			}
		}
	}
	slices.Sort(referenced)
	t.Logf("%d metric names referenced, all exported: %v", len(referenced), referenced)
}

func TestExprNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum(increase(slammesh_saga_failed_total[10m])) > 0`, []string{"slammesh_saga_failed_total"}},
		{`histogram_quantile(0.99, sum by (le, step) (rate(slammesh_saga_step_duration_seconds_bucket[5m]))) > 5`, []string{"slammesh_saga_step_duration_seconds_bucket"}},
		{`max(a_used) / max(a_limit) > 0.9`, []string{"a_used", "a_limit"}},
		{`sum by (step) (increase(x_count{outcome="error", step=~"a.*"}[10m])) > 3`, []string{"x_count"}},
	}
	for _, tt := range tests {
		if got := exprNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("exprNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
