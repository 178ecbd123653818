package console

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// Metric names the fleet view reads from the orchestrator's registry; the
// Grafana dashboard and the alert rules use the same names (a test checks
// them against what the services export).
const (
	metricStepDuration = "slammesh_saga_step_duration_seconds"
	metricCompDuration = "slammesh_saga_compensation_duration_seconds"
)

// fleetCounters are the saga counters shown as totals since the process
// started, in display order.
var fleetCounters = []struct{ Name, Label string }{
	{"slammesh_saga_started_total", "started"},
	{"slammesh_saga_completed_total", "completed"},
	{"slammesh_saga_compensated_total", "compensated"},
	{"slammesh_saga_failed_total", "failed"},
	{"slammesh_saga_recovered_total", "recovered from a dead orchestrator"},
	{"slammesh_saga_leases_lost_total", "leases taken over"},
}

// fleetWindow is how far back the fleet view reads the mission index.
const fleetWindow = time.Hour

// fleetBuckets splits fleetWindow into bars.
const fleetBuckets = 12

// fleetPage is the data of the fleet view.
type fleetPage struct {
	Nav string
	// Missions read from the index and whether the read stopped at the
	// FleetMissions bound before reaching an hour back.
	Missions  int
	Truncated bool
	RateMin   float64 // missions started per second over the last minute
	RateHour  float64 // over the last hour
	States    []stateCount
	Bars      []stateBar
	Reasons   []reasonCount
	Latencies []latency
	CompLat   []latency
	Totals    []total
	// MetricsError says why the registry could not be read, if so.
	MetricsError string
}

type stateCount struct {
	State string
	N     int
}

// stateBar is one fleetWindow/fleetBuckets slice of the last hour: the
// missions created in it, by their state now.
type stateBar struct {
	Label    string
	N        int
	Segments []segment
}

type segment struct {
	State string
	N     int
	Pct   float64 // of the tallest bar
}

type reasonCount struct {
	State, Code, Reason string
	N                   int
}

// latency is one step's duration percentiles, estimated from the
// histogram's buckets as Prometheus' histogram_quantile does.
type latency struct {
	Step          string
	Count         uint64
	P50, P90, P99 string
}

type total struct {
	Label string
	N     float64
}

func (c *Console) serveFleet(w http.ResponseWriter, r *http.Request) {
	now := c.now()
	page := fleetPage{Nav: "fleet"}
	ctx, cancel := c.call(r)
	defer cancel()
	var missions []*orchestratorv1.Mission
	token := ""
	for {
		resp, err := c.deps.Orchestrator.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: 500, PageToken: token})
		if err != nil {
			c.renderRPCError(w, r, "ListMissions", err)
			return
		}
		done := false
		for _, m := range resp.GetMissions() {
			if now.Sub(m.GetCreatedAt().AsTime()) > fleetWindow {
				done = true
				break
			}
			missions = append(missions, m)
		}
		token = resp.GetNextPageToken()
		if done || token == "" {
			break
		}
		if len(missions) >= c.limits.FleetMissions {
			page.Truncated = true
			break
		}
	}
	page.Missions = len(missions)
	summarize(&page, missions, now)
	if c.deps.Metrics != nil {
		if err := readMetrics(&page, c.deps.Metrics); err != nil {
			page.MetricsError = err.Error()
		}
	}
	c.render(w, r, http.StatusOK, "fleet", "", page)
}

// summarize fills the rates, states, bars and reasons of the last hour.
func summarize(page *fleetPage, missions []*orchestratorv1.Mission, now time.Time) {
	counts := make(map[string]int)
	bars := make([]map[string]int, fleetBuckets)
	for i := range bars {
		bars[i] = make(map[string]int)
	}
	reasons := make(map[reasonCount]int)
	lastMin := 0
	span := fleetWindow / fleetBuckets
	for _, m := range missions {
		st := stateName(m.GetState())
		counts[st]++
		age := now.Sub(m.GetCreatedAt().AsTime())
		if age <= time.Minute {
			lastMin++
		}
		i := fleetBuckets - 1 - int(age/span)
		if i >= 0 && i < fleetBuckets {
			bars[i][st]++
		}
		if e := m.GetError(); e != nil && (st == "COMPENSATED" || st == "FAILED" || st == "COMPENSATING") {
			reasons[reasonCount{State: st, Code: e.GetCode(), Reason: e.GetReason()}]++
		}
	}
	page.RateMin = float64(lastMin) / 60
	page.RateHour = float64(len(missions)) / fleetWindow.Seconds()
	for _, st := range states {
		page.States = append(page.States, stateCount{State: st, N: counts[st]})
	}
	tallest := 1
	for _, b := range bars {
		n := 0
		for _, v := range b {
			n += v
		}
		tallest = max(tallest, n)
	}
	for i, b := range bars {
		bar := stateBar{Label: fmt.Sprintf("-%dm", int((fleetBuckets-i)*int(span.Minutes())))}
		for _, st := range states {
			if b[st] > 0 {
				bar.N += b[st]
				bar.Segments = append(bar.Segments, segment{State: st, N: b[st], Pct: 100 * float64(b[st]) / float64(tallest)})
			}
		}
		page.Bars = append(page.Bars, bar)
	}
	for k, n := range reasons {
		k.N = n
		page.Reasons = append(page.Reasons, k)
	}
	slices.SortFunc(page.Reasons, func(a, b reasonCount) int {
		return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.State, b.State))
	})
}

// readMetrics scrapes the orchestrator's own /metrics handler in-process
// and fills the latency percentiles and totals.
func readMetrics(page *fleetPage, h http.Handler) error {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("metrics: status %d", rec.Code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	page.Latencies = latencies(families[metricStepDuration])
	page.CompLat = latencies(families[metricCompDuration])
	for _, ct := range fleetCounters {
		n := 0.0
		if f := families[ct.Name]; f != nil {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
		page.Totals = append(page.Totals, total{Label: ct.Label, N: n})
	}
	return nil
}

// latencies merges a duration histogram's series by their step label and
// estimates each step's percentiles.
func latencies(f *dto.MetricFamily) []latency {
	if f == nil {
		return nil
	}
	type acc struct {
		count   uint64
		buckets map[float64]uint64
	}
	bySteps := make(map[string]*acc)
	for _, m := range f.GetMetric() {
		step := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "step" {
				step = l.GetValue()
			}
		}
		a := bySteps[step]
		if a == nil {
			a = &acc{buckets: make(map[float64]uint64)}
			bySteps[step] = a
		}
		h := m.GetHistogram()
		a.count += h.GetSampleCount()
		for _, b := range h.GetBucket() {
			a.buckets[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	var out []latency
	for step, a := range bySteps {
		if a.count == 0 {
			continue
		}
		bounds := make([]float64, 0, len(a.buckets))
		for ub := range a.buckets {
			bounds = append(bounds, ub)
		}
		slices.Sort(bounds)
		cum := make([]uint64, len(bounds))
		for i, ub := range bounds {
			cum[i] = a.buckets[ub]
		}
		q := func(p float64) string { return formatSeconds(quantile(p, bounds, cum, a.count)) }
		out = append(out, latency{Step: step, Count: a.count, P50: q(0.5), P90: q(0.9), P99: q(0.99)})
	}
	slices.SortFunc(out, func(a, b latency) int { return cmp.Compare(a.Step, b.Step) })
	return out
}

// quantile estimates the p-quantile from cumulative bucket counts by linear
// interpolation within the bucket, as Prometheus' histogram_quantile does
// (the first bucket starts at 0; a quantile in the +Inf bucket is the
// largest finite bound).
func quantile(p float64, bounds []float64, cum []uint64, count uint64) float64 {
	rank := p * float64(count)
	lower, below := 0.0, uint64(0)
	for i, ub := range bounds {
		if float64(cum[i]) >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			inBucket := cum[i] - below
			if inBucket == 0 {
				return ub
			}
			return lower + (ub-lower)*(rank-float64(below))/float64(inBucket)
		}
		lower, below = ub, cum[i]
	}
	return lower
}

func formatSeconds(s float64) string {
	return humanDuration(time.Duration(s * float64(time.Second)))
}
