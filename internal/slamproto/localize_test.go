package slamproto_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// expectedPoses reads each agent's expected_map_from_agent from
// ../shared/realdata/missions/<name>.expected.json.
func expectedPoses(tb testing.TB, name string) map[string]slam.Pose2D {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(missionsDir(tb), name+".expected.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var exp struct {
		Agents []struct {
			AgentID  string `json:"agent_id"`
			Expected struct {
				X, Y, Theta float64
			} `json:"expected_map_from_agent"`
		} `json:"agents"`
	}
	if err := json.Unmarshal(data, &exp); err != nil {
		tb.Fatal(err)
	}
	out := map[string]slam.Pose2D{}
	for _, a := range exp.Agents {
		out[a.AgentID] = slam.Pose2D{X: a.Expected.X, Y: a.Expected.Y, Theta: a.Expected.Theta}
	}
	return out
}

// TestOdomlineLocalization localizes intel-odomline-3's agents with
// internal/slam/match, their submaps built with and without the front end,
// and compares each start pose with the expected one: with the front end
// every agent must be within the tolerance (2 cells, 0.02 rad) and
// the worst agent no worse than at the sent poses.
func TestOdomlineLocalization(t *testing.T) {
	t.Parallel()
	const name = "intel-odomline-3"
	m := mission(t, name)
	want := expectedPoses(t, name)
	spec := m.GetMap()
	meta, err := grid.MetaForBounds(spec.GetOriginX(), spec.GetOriginY(), spec.GetWidthM(), spec.GetHeightM(), spec.GetResolution())
	if err != nil {
		t.Fatal(err)
	}
	worst := map[bool][2]float64{}
	for _, odometryOnly := range []bool{true, false} {
		agents := make([]match.Agent, len(m.GetAgents()))
		for i, a := range m.GetAgents() {
			g, _ := build(t, a, spec.GetResolution(), odometryOnly)
			agents[i] = match.Agent{Submap: g, Guess: slamproto.PoseFromProto(a.GetInitialGuess()), Anchor: a.GetAnchor()}
		}
		results, err := match.LocalizeAll(context.Background(), meta, agents, match.Options{}, nil)
		if err != nil {
			t.Errorf("odometry only %v: %v", odometryOnly, err)
			continue
		}
		for i, r := range results {
			id := m.GetAgents()[i].GetAgentId()
			e := want[id]
			dt := math.Hypot(r.Pose.X-e.X, r.Pose.Y-e.Y)
			dr := math.Abs(slam.AngleDiff(r.Pose.Theta, e.Theta))
			w := worst[odometryOnly]
			worst[odometryOnly] = [2]float64{max(w[0], dt), max(w[1], dr)}
			t.Logf("front end %v, %s: start pose off by %.3f m %.4f rad (score %.3f)", !odometryOnly, id, dt, dr, r.Score)
		}
	}
	t.Logf("worst start-pose error: %.3f m %.4f rad at the sent poses, %.3f m %.4f rad with the front end",
		worst[true][0], worst[true][1], worst[false][0], worst[false][1])
	if fe := worst[false]; fe[0] > 2*spec.GetResolution() || fe[1] > 0.02 {
		t.Errorf("with the front end an agent is %.3f m %.4f rad off", fe[0], fe[1])
	}
	if fe, sent := worst[false], worst[true]; fe[0] > sent[0] || fe[1] > sent[1] {
		t.Errorf("front end worse than the sent poses: %.3f m %.4f rad vs %.3f m %.4f rad", fe[0], fe[1], sent[0], sent[1])
	}
}
