package slam_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// TestRealBarelyOverlappingNoGuess: two Freiburg 079 segments that barely
// overlap (the truth scores 0.035–0.055), sent with no initial guess, as
// `slamctl start --carmen freiburg-079-corrected.log.gz --segments
// 0:249,400:649 --guess-from none` sends them. A whole-map search over every
// heading compares far more poses than a guessed window, so some wrong pose
// scores above MinScore by chance (0.26 here before the global gates of
// docs/slam.md §5); localization must refuse the agent (INSUFFICIENT_OVERLAP
// or AMBIGUOUS_MATCH), never accept it — the merge would then blame the map
// for a localization error.
func TestRealBarelyOverlappingNoGuess(t *testing.T) {
	t.Parallel()
	log, err := slamio.OpenCarmen(filepath.Join("..", "..", "..", "shared", "realdata", "carmen", "freiburg-079-corrected.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, segs := range []string{"0:249,400:649", "0:249,800:1049"} {
		t.Run(segs, func(t *testing.T) {
			t.Parallel()
			res, truth := localizeCarmenNoGuess(t, log, segs)
			r := res[1]
			te := math.Hypot(r.Pose.X-truth.X, r.Pose.Y-truth.Y)
			re := math.Abs(slam.AngleDiff(r.Pose.Theta, truth.Theta))
			t.Logf("robot-1: localized %v, %.2f m %.3f rad from the truth; score %.3f free conflict %.3f ambiguity %.3f runner-up %.3f margin %.3f",
				r.Localized, te, re, r.Score, r.FreeConflict, r.Ambiguity, r.RunnerUpScore, r.Margin)
			if r.Localized {
				t.Fatalf("robot-1 accepted at (%.2f, %.2f, %.3f), %.2f m and %.3f rad from the truth: the segments barely overlap and must be refused at localization",
					r.Pose.X, r.Pose.Y, r.Pose.Theta, te, re)
			}
		})
	}
}

// TestFewScansAreNotSearchedWide: an agent of one or three Intel scans
// sent with no guess, or with a window of every heading, is refused as too
// little data for that search (a review's missions: 6:6,189:189 was
// accepted turned by 180°, 0.32 m off; 749:749,754:754 with a ±2 m window
// of every heading likewise), while an agent of three scans with a guess at
// its pose and the default window still localizes.
func TestFewScansAreNotSearchedWide(t *testing.T) {
	t.Parallel()
	log, err := slamio.OpenCarmen(filepath.Join("..", "..", "..", "shared", "realdata", "carmen", "intel-corrected.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		segs string
		opts match.Options
		wide bool
	}{
		{"6:6,189:189", match.Options{}, true},
		{"749:749,754:754", match.Options{WindowXY: 2, WindowTheta: math.Pi}, true},
		{"796:798,802:804", match.Options{WindowXY: 2, WindowTheta: math.Pi}, true},
		{"796:798,802:804", match.Options{}, false},
	} {
		agents, meta, dom := carmenTeam(t, log, tc.segs, slamio.GuessLaser)
		truth := slamproto.PoseFromProto(agents[1].GetInitialGuess())
		noGuess := tc.wide && tc.opts.WindowXY == 0
		advice := map[bool]string{true: "give an initial guess", false: "narrow the window"}
		in := []match.Agent{
			{Submap: dom[0].Submap, Guess: dom[0].Guess, Anchor: true},
			{Submap: dom[1].Submap, Guess: dom[1].Guess, NoGuess: noGuess},
		}
		tc.opts.Parallelism = 2
		res, err := match.LocalizeAll(context.Background(), meta, in, tc.opts, nil)
		switch {
		case tc.wide && (!errors.Is(err, slam.ErrInsufficientData) || !strings.Contains(err.Error(), advice[noGuess])):
			t.Errorf("%s, wide search: %v (pose %v, truth %v), want too little data for the search, with advice", tc.segs, err, res[1].Pose, truth)
		case !tc.wide && err != nil:
			t.Errorf("%s, guess at the pose: %v", tc.segs, err)
		case !tc.wide && (math.Hypot(res[1].Pose.X-truth.X, res[1].Pose.Y-truth.Y) > 0.1 || math.Abs(slam.AngleDiff(res[1].Pose.Theta, truth.Theta)) > 0.05):
			// Three scans place a pose to a few centimetres and 2°.
			t.Errorf("%s, guess at the pose: localized at %v, truth %v", tc.segs, res[1].Pose, truth)
		}
	}
}

// carmenTeam cuts log into agents by segs as slamctl start does (laser
// poses, guesses from guesses), sizes the mission map as slamio.Request
// does and builds the agents' submaps as the services do.
func carmenTeam(t *testing.T, log *slamio.Log, segs string, guesses slamio.GuessSource) ([]*typesv1.Agent, grid.Meta, []slamproto.Agent) {
	t.Helper()
	sg, err := slamio.ParseSegments(segs)
	if err != nil {
		t.Fatal(err)
	}
	agents, err := slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: sg, Guesses: guesses})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := slamio.MapFor(agents, 0.05, slamio.DefaultMapMargin)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := grid.MetaForBounds(spec.GetOriginX(), spec.GetOriginY(), spec.GetWidthM(), spec.GetHeightM(), spec.GetResolution())
	if err != nil {
		t.Fatal(err)
	}
	dom, err := slamproto.AgentsFromProto(agents, meta.Resolution)
	if err != nil {
		t.Fatal(err)
	}
	return agents, meta, dom
}

// localizeCarmenNoGuess cuts log into agents by segs as slamctl start does
// (laser poses, no guesses, the map sized by slamio.Request), builds their
// submaps as the mapping service does and localizes them; it returns every
// agent's result (failures included) and robot-1's true pose, its first
// laser pose.
func localizeCarmenNoGuess(t *testing.T, log *slamio.Log, segs string) ([]match.Result, slam.Pose2D) {
	t.Helper()
	withGuess, _, _ := carmenTeam(t, log, segs, slamio.GuessLaser)
	truth := slamproto.PoseFromProto(withGuess[1].GetInitialGuess())
	_, meta, dom := carmenTeam(t, log, segs, slamio.GuessNone)
	in := make([]match.Agent, len(dom))
	for i, a := range dom {
		in[i] = match.Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor, NoGuess: !a.Anchor}
	}
	res, err := match.LocalizeAll(context.Background(), meta, in, match.Options{Parallelism: 2}, nil)
	if err != nil && !errors.Is(err, slam.ErrInsufficientOverlap) && !errors.Is(err, slam.ErrAmbiguousMatch) {
		t.Fatalf("localization: %v, want INSUFFICIENT_OVERLAP or AMBIGUOUS_MATCH", err)
	}
	if err != nil {
		t.Logf("refused: %v", err)
	}
	return res, truth
}

// TestRealGlobalMargins localizes the real missions of marginMissions with every non-anchor
// guess removed (the whole-map search of each agent) and logs what the
// global acceptance gates see: score, free conflict, merit and the
// runner-up — the must-pass side of docs/slam.md §5's global gates, whose
// must-fail side is TestRealBarelyOverlappingNoGuess. It fails when a real
// agent is not localized or lands more than 2 cells / 0.02 rad (widened by
// nothing) from its expected pose.
func TestRealGlobalMargins(t *testing.T) {
	t.Parallel()
	for _, m := range sharedRealMissions(t) {
		if !marginMissions[m.name] {
			continue // the same gates' values; the mesh test runs all five without guesses
		}
		in := make([]match.Agent, len(m.agents))
		for i, a := range m.agents {
			in[i] = match.Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor, NoGuess: !a.Anchor}
		}
		// The gates judge the match against the round's reference, before
		// the final refinement: keep what they saw.
		accepted := make([]match.Result, len(in))
		onEvent := func(e match.Event) {
			if e.Result.Localized && !e.Result.Anchor {
				accepted[e.Agent] = e.Result
			}
		}
		res, err := match.LocalizeAll(context.Background(), m.meta, in, match.Options{Parallelism: 2}, onEvent)
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
		for i, r := range res {
			if r.Anchor {
				continue
			}
			te := math.Hypot(r.Pose.X-m.expected[i].X, r.Pose.Y-m.expected[i].Y)
			re := math.Abs(slam.AngleDiff(r.Pose.Theta, m.expected[i].Theta))
			a := accepted[i]
			t.Logf("%s agent %d: localized %v round %d, error %.3f m %.4f rad; at acceptance: score %.3f free conflict %.3f (limit %.2f) ambiguity %.3f runner-up %.3f margin %.3f",
				m.name, i, r.Localized, r.Round, te, re, a.Score, a.FreeConflict, match.DefaultMaxWideFreeConflict, a.Ambiguity, a.RunnerUpScore, a.Margin)
			if !r.Localized || te > 2*m.meta.Resolution || re > 0.02 {
				t.Errorf("%s agent %d: localized %v, error %.3f m %.4f rad, want within 2 cells and 0.02 rad", m.name, i, r.Localized, te, re)
			}
		}
	}
}

// TestSealedAgentOfALargerTeamIsRefusedWithoutAGuess: the sealed agent,
// which overlaps no other, of larger worlds and teams than the gates were
// calibrated on (20 × 15 m, 2–4 agents), sent without a guess, must not be
// placed anywhere. A review's worlds: a discount of the crowd's chance
// peaks by their free conflict (built and reverted) placed each of these
// 10–68 m off, and the merge, which the sealed agent hardly overlaps,
// completed the missions.
func TestSealedAgentOfALargerTeamIsRefusedWithoutAGuess(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		seed   uint64
		agents int
		w, h   float64
	}{{111, 6, 80, 60}, {252, 6, 80, 60}, {349, 6, 80, 60}, {561, 8, 40, 30}} {
		t.Run(fmt.Sprintf("seed %d, %d agents, %gx%g m", c.seed, c.agents, c.w, c.h), func(t *testing.T) {
			t.Parallel()
			w, err := world.Generate(world.Config{Seed: c.seed, Agents: c.agents, Kind: world.SealedAgent, WidthM: c.w, HeightM: c.h})
			if err != nil {
				t.Fatal(err)
			}
			in := make([]match.Agent, len(w.Agents))
			for i, a := range w.Agents {
				in[i] = match.Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor, NoGuess: !a.Anchor}
			}
			res, _ := match.LocalizeAll(context.Background(), w.Truth.Meta(), in, match.Options{Parallelism: 2}, nil)
			for i, r := range res {
				if w.Agents[i].Sealed && r.Localized {
					tr := w.Agents[i].Truth
					t.Errorf("sealed agent %d placed at (%.2f, %.2f, %.3f), %.1f m from its truth: score %.3f free conflict %.3f margin %.3f",
						i, r.Pose.X, r.Pose.Y, r.Pose.Theta, math.Hypot(r.Pose.X-tr.X, r.Pose.Y-tr.Y), r.Score, r.FreeConflict, r.Margin)
				}
			}
		})
	}
}
