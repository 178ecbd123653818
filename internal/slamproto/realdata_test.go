package slamproto_test

import (
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
func build(tb testing.TB, a *typesv1.Agent, res float64, odometryOnly bool) (*grid.Grid, []slam.Pose2D) {
	tb.Helper()
	g, poses, err := slamproto.BuildSubmap(a.GetScans(), res, slamproto.SubmapOptions{OdometryOnly: odometryOnly})
	if err != nil {
		tb.Fatalf("agent %s: %v", a.GetAgentId(), err)
	}
	return g, poses
}
