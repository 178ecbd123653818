package slamproto_test

import (
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/localslam"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// missionsDir is ../shared/realdata/missions relative to the project root
// (the directory holding go.mod): the real data is read in place, never
// copied into the repository.
func missionsDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("project root (go.mod) not found")
		}
		dir = parent
	}
	return filepath.Join(dir, "..", "shared", "realdata", "missions")
}

var (
	missionsMu sync.Mutex
	missions   = map[string]*orchestratorv1.StartMissionRequest{}
)

// mission reads ../shared/realdata/missions/<name>.json once per test binary.
func mission(tb testing.TB, name string) *orchestratorv1.StartMissionRequest {
	tb.Helper()
	missionsMu.Lock()
	defer missionsMu.Unlock()
	if m, ok := missions[name]; ok {
		return m
	}
	path := filepath.Join(missionsDir(tb), name+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("real data: %v (the missions live in ../shared/realdata/missions next to the project root)", err)
	}
	m := &orchestratorv1.StartMissionRequest{}
	if err := protojson.Unmarshal(data, m); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	missions[name] = m
	return m
}

// frames converts an agent's scans for the front end.
func frames(tb testing.TB, a *typesv1.Agent) []localslam.Frame {
	tb.Helper()
	out := make([]localslam.Frame, len(a.GetScans()))
	for k, f := range a.GetScans() {
		s, err := slamproto.ScanFromProto(f.GetScan())
		if err != nil {
			tb.Fatal(err)
		}
		out[k] = localslam.Frame{Odom: slamproto.PoseFromProto(f.GetOdomPose()), Scan: s}
	}
	return out
}

// build is slamproto.BuildSubmap that fails the test on error.
func build(tb testing.TB, a *typesv1.Agent, res float64, odometryOnly bool) (*grid.Grid, slamproto.SubmapInfo) {
	tb.Helper()
	g, info, err := slamproto.BuildSubmap(a.GetScans(), res, slamproto.SubmapOptions{OdometryOnly: odometryOnly})
	if err != nil {
		tb.Fatalf("agent %s: %v", a.GetAgentId(), err)
	}
	return g, info
}

// sentPoses returns the poses an agent's scans were sent with.
func sentPoses(a *typesv1.Agent) []slam.Pose2D {
	out := make([]slam.Pose2D, len(a.GetScans()))
	for k, f := range a.GetScans() {
		out[k] = slamproto.PoseFromProto(f.GetOdomPose())
	}
	return out
}

// poseErr returns the mean and the largest translation (m) and rotation
// (rad) error of poses against truth.
func poseErr(poses, truth []slam.Pose2D) (meanT, meanR, maxT, maxR float64) {
	for k := range poses {
		dt := math.Hypot(poses[k].X-truth[k].X, poses[k].Y-truth[k].Y)
		dr := math.Abs(slam.AngleDiff(poses[k].Theta, truth[k].Theta))
		meanT += dt
		meanR += dr
		maxT, maxR = max(maxT, dt), max(maxR, dr)
	}
	n := float64(max(len(poses), 1))
	return meanT / n, meanR / n, maxT, maxR
}

func occupied(g *grid.Grid) int {
	o, _, _ := g.Counts()
	return o
}

// TestRangeMaxMissionSubmapsMatchLocal: intel-rangemax-3 sends the scans of
// intel-local-3 with the sensor's own no-return value (81.83 m) as
// range_max. No-return readings are no obstacle and bound no submap, so
// every agent's submap must be the very same grid as with range_max 20 m.
func TestRangeMaxMissionSubmapsMatchLocal(t *testing.T) {
	t.Parallel()
	local, rangeMax := mission(t, "intel-local-3"), mission(t, "intel-rangemax-3")
	res := local.GetMap().GetResolution()
	if len(local.GetAgents()) != len(rangeMax.GetAgents()) {
		t.Fatalf("%d vs %d agents", len(local.GetAgents()), len(rangeMax.GetAgents()))
	}
	for i, la := range local.GetAgents() {
		ra := rangeMax.GetAgents()[i]
		if got := ra.GetScans()[0].GetScan().GetRangeMax(); got < 80 {
			t.Fatalf("intel-rangemax-3 agent %d sends range_max %g, want the sensor's 81.83", i, got)
		}
		lg, _, err := slamproto.BuildSubmap(la.GetScans(), res, slamproto.SubmapOptions{})
		if err != nil {
			t.Fatalf("intel-local-3 agent %d: %v", i, err)
		}
		rg, _, err := slamproto.BuildSubmap(ra.GetScans(), res, slamproto.SubmapOptions{})
		if err != nil {
			t.Fatalf("intel-rangemax-3 agent %d: %v", i, err)
		}
		w, h := rg.Meta().SizeM()
		t.Logf("agent %s: %.2fx%.2f m (%d cells), %d occupied", ra.GetAgentId(), w, h, rg.Meta().Cells(), occupied(rg))
		if lg.Meta() != rg.Meta() {
			t.Fatalf("agent %d: submap %+v with range_max 81.83, %+v with 20", i, rg.Meta(), lg.Meta())
		}
		// The usable range, not range_max, bounds the no-return beams: the
		// submap spans at most the scans' path plus twice 20 m.
		if w > 60 || h > 60 {
			t.Errorf("agent %d: submap spans %.0fx%.0f m", i, w, h)
		}
		for c, v := range rg.LogOdds() {
			if v != lg.LogOdds()[c] {
				t.Fatalf("agent %d: cell %d is %g with range_max 81.83, %g with 20", i, c, v, lg.LogOdds()[c])
			}
		}
	}
}

// TestFrontEndSharpensOdomline: intel-odomline-3 sends the scans of
// intel-local-3 at the log's jittery ODOM poses; intel-local-3's poses (the
// corrected trajectory) are the truth. The submap must come from the front
// end, be sharper (fewer occupied cells: walls drawn once, not smeared) and
// its headings closer to the truth than the sent ones.
func TestFrontEndSharpensOdomline(t *testing.T) {
	t.Parallel()
	odo, truth := mission(t, "intel-odomline-3"), mission(t, "intel-local-3")
	res := odo.GetMap().GetResolution()
	for i, a := range odo.GetAgents() {
		want := sentPoses(truth.GetAgents()[i])
		g, info := build(t, a, res, false)
		gt, _ := build(t, truth.GetAgents()[i], res, true)
		t0, r0, _, _ := poseErr(sentPoses(a), want)
		t1, r1, _, _ := poseErr(info.Poses, want)
		t.Logf("agent %s: occupied cells %d at the sent poses, %d with the front end (%d at the true poses); mean heading error %.2f° → %.2f°, mean position error %.3f → %.3f m",
			a.GetAgentId(), info.OccupiedSent, info.OccupiedFrontEnd, occupied(gt), r0*180/math.Pi, r1*180/math.Pi, t0, t1)
		if !info.FrontEnd || occupied(g) != info.OccupiedFrontEnd {
			t.Fatalf("agent %s: the front end's submap was not used (%+v)", a.GetAgentId(), info)
		}
		if float64(info.OccupiedFrontEnd) > 0.93*float64(info.OccupiedSent) {
			t.Errorf("agent %s: %d occupied cells with the front end, %d without: not sharper by 7 %%", a.GetAgentId(), info.OccupiedFrontEnd, info.OccupiedSent)
		}
		if r1 > 0.5*r0 {
			t.Errorf("agent %s: mean heading error %.2f° with the front end, %.2f° without", a.GetAgentId(), r1*180/math.Pi, r0*180/math.Pi)
		}
	}
}

// TestFrontEndKeepsCorrectedPoses: intel-local-3 and fr079-local-4 send the
// corrected trajectory. The front end must not make their submaps worse:
// on its own it stays close to the sent poses (mean 0.25 m / 2°: over 250
// scans a matcher drifts a little), and its submap is not sharper by the
// margin that replaces the sent poses, so the submap is exactly the one at
// the sent poses.
func TestFrontEndKeepsCorrectedPoses(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"intel-local-3", "fr079-local-4"} {
		m := mission(t, name)
		res := m.GetMap().GetResolution()
		for _, a := range m.GetAgents() {
			g, info := build(t, a, res, false)
			mt, mr, xt, xr := poseErr(info.FrontEndPoses, sentPoses(a))
			t.Logf("%s %s: occupied cells %d at the sent poses, %d with the front end (used: %v); front-end poses off the sent ones by mean %.3f m %.2f°, max %.3f m %.2f°",
				name, a.GetAgentId(), info.OccupiedSent, info.OccupiedFrontEnd, info.FrontEnd, mt, mr*180/math.Pi, xt, xr*180/math.Pi)
			if info.FrontEnd || occupied(g) != info.OccupiedSent {
				t.Errorf("%s %s: front end used on corrected poses (%d → %d occupied)", name, a.GetAgentId(), info.OccupiedSent, info.OccupiedFrontEnd)
			}
			if float64(info.OccupiedFrontEnd) > 1.02*float64(info.OccupiedSent) {
				t.Errorf("%s %s: front end's submap has %d occupied cells, %d at the corrected poses", name, a.GetAgentId(), info.OccupiedFrontEnd, info.OccupiedSent)
			}
			if mt > 0.25 || mr > 2*math.Pi/180 {
				t.Errorf("%s %s: front end moved the corrected poses by mean %.3f m %.2f°", name, a.GetAgentId(), mt, mr*180/math.Pi)
			}
		}
	}
}

// BenchmarkFrontEndFr079 runs the local front end over the 250 scans
// (360 beams each) of fr079-local-4's first agent and reports the time per
// scan.
//
//	go test -run '^$' -bench FrontEndFr079 ./internal/slamproto
func BenchmarkFrontEndFr079(b *testing.B) {
	a := mission(b, "fr079-local-4").GetAgents()[0]
	fr := frames(b, a)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := localslam.Track(fr, localslam.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fr))/1e6, "ms/scan")
}

// BenchmarkFrontEndOdomline runs the local front end over the three agents
// of intel-odomline-3 (30 keyframes each, at the log's jittery ODOM poses,
// where a few frames need the wide retry) and reports the time per scan.
//
//	go test -run '^$' -bench FrontEndOdomline ./internal/slamproto
func BenchmarkFrontEndOdomline(b *testing.B) {
	var agents [][]localslam.Frame
	n := 0
	for _, a := range mission(b, "intel-odomline-3").GetAgents() {
		agents = append(agents, frames(b, a))
		n += len(agents[len(agents)-1])
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, fr := range agents {
			if _, err := localslam.Track(fr, localslam.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e6, "ms/scan")
}

// TestBuildSubmapDeterministic: the localization and the merge service each
// build an agent's submap from its scans; they must get the same cells.
func TestBuildSubmapDeterministic(t *testing.T) {
	t.Parallel()
	a := mission(t, "intel-odomline-3").GetAgents()[1]
	g1, i1 := build(t, a, 0.05, false)
	g2, i2 := build(t, a, 0.05, false)
	if g1.Meta() != g2.Meta() || !i1.FrontEnd || !i2.FrontEnd {
		t.Fatalf("metas %+v / %+v, front end %v / %v", g1.Meta(), g2.Meta(), i1.FrontEnd, i2.FrontEnd)
	}
	for c, v := range g1.LogOdds() {
		if g2.LogOdds()[c] != v {
			t.Fatalf("cell %d: %g then %g", c, v, g2.LogOdds()[c])
		}
	}
}
