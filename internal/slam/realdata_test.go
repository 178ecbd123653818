package slam_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// The real missions at the domain level: the same localization and merge
// the services run, without the mesh, so that every gate's value on real
// data is printed next to its threshold (docs/slam.md, "Thresholds": the
// real missions' side of each margin). The end-to-end judgement of the
// poses is services/orchestrator's TestRealMissions.

// realMission is a real StartMissionRequest converted to the domain.
type realMission struct {
	name     string
	meta     grid.Meta
	agents   []slamproto.Agent
	expected []slam.Pose2D
}

// sharedRealMissions loads the real missions once for every test of the
// package (building their submaps from scans is most of a real-data
// test's time under -race); the tests only read them.
func sharedRealMissions(t *testing.T) []realMission {
	t.Helper()
	realOnce.Do(func() {
		realCache = loadRealMissions(t)
		realLoaded = true
	})
	if !realLoaded {
		t.Fatal("loading the real missions failed (see the test that loaded them first)")
	}
	return realCache
}

var (
	realOnce   sync.Once
	realCache  []realMission
	realLoaded bool
)

func loadRealMissions(t *testing.T) []realMission {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(root), "shared", "realdata", "missions")
	files, err := filepath.Glob(filepath.Join(dir, "*.expected.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("real missions in %s: %v (%d files); they live in ../shared/realdata next to the project root", dir, err, len(files))
	}
	slices.Sort(files)
	var out []realMission
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".expected.json")
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		req := &orchestratorv1.StartMissionRequest{}
		if err := protojson.Unmarshal(b, req); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ms := req.GetMap()
		meta, err := grid.MetaForBounds(ms.GetOriginX(), ms.GetOriginY(), ms.GetWidthM(), ms.GetHeightM(), ms.GetResolution())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		agents, err := slamproto.AgentsFromProto(req.GetAgents(), meta.Resolution)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var exp struct {
			Agents []struct {
				E struct{ X, Y, Theta float64 } `json:"expected_map_from_agent"`
			} `json:"agents"`
		}
		b, err = os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &exp); err != nil {
			t.Fatal(err)
		}
		m := realMission{name: name, meta: meta, agents: agents}
		for _, a := range exp.Agents {
			m.expected = append(m.expected, slam.Pose2D{X: a.E.X, Y: a.E.Y, Theta: a.E.Theta})
		}
		out = append(out, m)
	}
	return out
}

// marginMissions are the real missions TestRealGateMargins runs: one per
// kind of data (Intel keyframes, Freiburg's every scan with people and
// glass, a ROS map). The two other Intel missions differ in what the
// front end sees, not in what the gates see; TestRealMissions in
// services/orchestrator runs all five, with and without guesses.
var marginMissions = map[string]bool{"intel-local-3": true, "fr079-local-4": true, "willow-3": true}

// TestRealGateMargins localizes every real mission with its guesses (the
// mesh test runs them without guesses too), merges it as the merge service does (one input at a
// time), and logs every gated quantity. It fails when a real mission does
// not get through the gates.
func TestRealGateMargins(t *testing.T) {
	t.Parallel()
	var scores, ambs, conflicts, merits, cons, changed []float64
	for _, m := range sharedRealMissions(t) {
		if !marginMissions[m.name] {
			continue
		}
		in := make([]match.Agent, len(m.agents))
		for i, a := range m.agents {
			in[i] = match.Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor}
		}
		res, err := match.LocalizeAll(context.Background(), m.meta, in, match.Options{Parallelism: 2}, nil)
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		merged, err := grid.New(m.meta)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			te := math.Hypot(r.Pose.X-m.expected[i].X, r.Pose.Y-m.expected[i].Y)
			re := math.Abs(slam.AngleDiff(r.Pose.Theta, m.expected[i].Theta))
			next, rep, err := fuse.Merge(merged, []fuse.Input{{Agent: i, Submap: m.agents[i].Submap, Pose: r.Pose}}, fuse.Options{})
			ar := rep.Agents[0]
			t.Logf("%s agent %d: error %.3f m %.4f rad; score %.3f ambiguity %.3f free conflict %.3f; consistency %.4f changed share %.4f (%d regions)",
				m.name, i, te, re, r.Score, r.Ambiguity, r.FreeConflict, ar.Consistency, ar.ChangedShare, ar.ContradictedRegions)
			if err != nil {
				t.Errorf("%s: merge: %v", m.name, err)
				break
			}
			merged = next
			if r.Anchor {
				continue
			}
			scores, ambs, conflicts = append(scores, r.Score), append(ambs, r.Ambiguity), append(conflicts, r.FreeConflict)
			merits = append(merits, r.Merit)
			if ar.Judged {
				cons, changed = append(cons, ar.Consistency), append(changed, ar.ChangedShare)
			}
		}
	}
	t.Logf("real score:         %v (min %.2f)", eval.Summarize(scores), match.DefaultMinScore)
	t.Logf("real ambiguity:     %v (max %.2f)", eval.Summarize(ambs), match.DefaultMaxAmbiguity)
	t.Logf("real free conflict: %v (max %.2f)", eval.Summarize(conflicts), match.DefaultMaxFreeConflict)
	t.Logf("real merit:         %v ", eval.Summarize(merits))
	t.Logf("real consistency:   %v (min %.3f)", eval.Summarize(cons), fuse.DefaultMinConsistency)
	t.Logf("real changed share: %v (max %.4f)", eval.Summarize(changed), fuse.DefaultMaxChangedShare)
}
