package slam_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// Accuracy the domain is held to (issue 2): every non-anchor agent within 2
// cells and 0.02 rad of ground truth, merged maps with occupied IoU ≥ 0.85
// and accuracy ≥ 0.95 over the observed cells.
const (
	maxTransErr = 0.10 // metres: 2 cells at 5 cm
	maxRotErr   = 0.02 // radians
	minIoU      = 0.85
	minAccuracy = 0.95
)

// mission runs the domain side of a mission on a world: localize every
// agent, then merge at the estimated poses.
func mission(t *testing.T, w *world.World) ([]match.Result, *grid.Grid, fuse.Report, error, error) {
	t.Helper()
	return missionScans(t, w, false)
}

// missionScans is mission, giving the merge each agent's scans at the poses
// its submap integrated them at when withScans is set, as a mission whose
// agents are sent as scans does (fuse.Input.Scans: the see-through test).
func missionScans(t *testing.T, w *world.World, withScans bool) ([]match.Result, *grid.Grid, fuse.Report, error, error) {
	t.Helper()
	agents := make([]match.Agent, len(w.Agents))
	for i, a := range w.Agents {
		agents[i] = match.Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor, NoGuess: *noGuess && !a.Anchor}
	}
	res, locErr := match.LocalizeAll(context.Background(), w.Truth.Meta(), agents, match.Options{Parallelism: 2}, nil)
	if locErr != nil {
		return res, nil, fuse.Report{}, locErr, nil
	}
	in := make([]fuse.Input, len(w.Agents))
	for i, a := range w.Agents {
		in[i] = fuse.Input{Agent: i, Submap: a.Submap, Pose: res[i].Pose}
		if withScans {
			for k, sc := range a.Scans {
				in[i].Scans = append(in[i].Scans, slam.PosedScan{Pose: a.Odometry[k], Scan: sc})
			}
		}
	}
	base, err := grid.New(w.Truth.Meta())
	if err != nil {
		t.Fatal(err)
	}
	merged, rep, mergeErr := fuse.Merge(base, in, fuse.Options{})
	return res, merged, rep, nil, mergeErr
}

// worlds overrides the number of seeded worlds per scenario test; the
// thresholds in docs/slam.md were calibrated with
//
//	go test ./internal/slam -run 'Test(Office|Sealed|Symmetric|Changed)' -v -args -slam.worlds=100
var worlds = flag.Int("slam.worlds", 0, "seeded worlds per scenario test (0: 24 office, 9 per failure scenario; -short: 6 and 3)")

// noGuess runs the scenario tests with every non-anchor initial guess
// removed (the whole-map search and its wide verification limit, docs/slam.md
// §5); a sweep flag, off in CI:
//
//	go test ./internal/slam -run 'Test(Office|Sealed|Symmetric|Changed)' -v -args -slam.worlds=60 -slam.noguess
var noGuess = flag.Bool("slam.noguess", false, "scenario tests: localize every non-anchor agent with no initial guess")

func seeds(n, short int) []uint64 {
	if testing.Short() {
		n = short
	}
	if *worlds > 0 {
		n = *worlds
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func TestOfficeAccuracy(t *testing.T) {
	var trans, rot, score, amb, conflict, merit, margin, iou, acc, cover, cons, changed []float64
	for _, seed := range seeds(24, 6) {
		n := 2 + int(seed%3) // 2, 3 and 4 agents
		w, err := world.Generate(world.Config{Seed: seed, Agents: n})
		if err != nil {
			t.Fatal(err)
		}
		res, merged, rep, locErr, mergeErr := mission(t, w)
		if locErr != nil {
			t.Errorf("seed %d: localization failed: %v", seed, locErr)
			continue
		}
		for i, r := range res {
			if r.Anchor {
				continue
			}
			te, re := eval.PoseError(r.Pose, w.Agents[i].Truth)
			trans, rot = append(trans, te), append(rot, re)
			score, amb = append(score, r.Score), append(amb, r.Ambiguity)
			conflict = append(conflict, r.FreeConflict)
			merit, margin = append(merit, r.Merit), append(margin, r.Margin)
			if te > maxTransErr || re > maxRotErr {
				t.Errorf("seed %d agent %d: error %.3f m %.4f rad (guess was %.2f m %.3f rad off), want ≤ %.2f m %.2f rad",
					seed, i, te, re, dist(w.Agents[i].InitialGuess, w.Agents[i].Truth), angle(w.Agents[i].InitialGuess, w.Agents[i].Truth), maxTransErr, maxRotErr)
			}
		}
		if mergeErr != nil {
			t.Errorf("seed %d: merge failed: %v", seed, mergeErr)
			continue
		}
		cons = append(cons, rep.MinConsistency)
		for _, ar := range rep.Agents {
			changed = append(changed, ar.ChangedShare)
		}
		ms, err := eval.CompareMaps(merged, w.Truth)
		if err != nil {
			t.Fatal(err)
		}
		iou, acc, cover = append(iou, ms.OccupiedIoU), append(acc, ms.Accuracy), append(cover, ms.Coverage)
		if ms.OccupiedIoU < minIoU || ms.Accuracy < minAccuracy {
			t.Errorf("seed %d: merged map IoU %.3f accuracy %.3f, want ≥ %.2f / %.2f", seed, ms.OccupiedIoU, ms.Accuracy, minIoU, minAccuracy)
		}
	}
	t.Logf("translation error (m): %v", eval.Summarize(trans))
	t.Logf("rotation error (rad):  %v", eval.Summarize(rot))
	t.Logf("match score:           %v", eval.Summarize(score))
	t.Logf("ambiguity:             %v", eval.Summarize(amb))
	t.Logf("free conflict:         %v", eval.Summarize(conflict))
	t.Logf("merit:                 %v", eval.Summarize(merit))
	t.Logf("margin over the crowd: %v (a wide search needs %.2f)", eval.Summarize(margin), match.DefaultMinWideMargin)
	t.Logf("merge consistency:     %v", eval.Summarize(cons))
	t.Logf("changed share:         %v", eval.Summarize(changed))
	t.Logf("occupied IoU:          %v", eval.Summarize(iou))
	t.Logf("accuracy (observed):   %v", eval.Summarize(acc))
	t.Logf("coverage:              %v", eval.Summarize(cover))
}

// TestOfficeAccuracyAtGuessCorners holds localization to its promise at the
// edges: initial guesses off by up to ±0.5 m per axis and ±10°. The
// generator draws guesses uniformly inside that box, so TestOfficeAccuracy
// practically never meets its corners; here every non-anchor agent starts
// from each corner in turn, on a few seeded office worlds, under the same
// thresholds.
func TestOfficeAccuracyAtGuessCorners(t *testing.T) {
	t.Parallel()
	const (
		maxGuessXY    = 0.5                // metres, per axis
		maxGuessTheta = 10 * math.Pi / 180 // radians
	)
	type corner struct {
		name       string
		dx, dy, dθ float64
	}
	var corners []corner
	for _, sx := range []float64{-1, 1} {
		for _, sy := range []float64{-1, 1} {
			for _, sθ := range []float64{-1, 1} {
				corners = append(corners, corner{
					name: fmt.Sprintf("x%+.1fm y%+.1fm θ%+.0f°", sx*maxGuessXY, sy*maxGuessXY, sθ*10),
					dx:   sx * maxGuessXY, dy: sy * maxGuessXY, dθ: sθ * maxGuessTheta,
				})
			}
		}
	}
	worldOf := map[uint64]*world.World{}
	for _, seed := range seeds(3, 2) {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 2 + int(seed%3)})
		if err != nil {
			t.Fatal(err)
		}
		worldOf[seed] = w
	}
	for _, c := range corners {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for seed, w := range worldOf {
				agents := make([]match.Agent, len(w.Agents))
				for i, a := range w.Agents {
					guess := a.Truth
					if !a.Anchor {
						guess = slam.Pose2D{X: a.Truth.X + c.dx, Y: a.Truth.Y + c.dy, Theta: slam.NormalizeAngle(a.Truth.Theta + c.dθ)}
					}
					agents[i] = match.Agent{Submap: a.Submap, Guess: guess, Anchor: a.Anchor}
				}
				res, err := match.LocalizeAll(context.Background(), w.Truth.Meta(), agents, match.Options{Parallelism: 2}, nil)
				if err != nil {
					t.Errorf("seed %d: localization failed: %v", seed, err)
					continue
				}
				for i, r := range res {
					if r.Anchor {
						continue
					}
					if te, re := eval.PoseError(r.Pose, w.Agents[i].Truth); te > maxTransErr || re > maxRotErr {
						t.Errorf("seed %d agent %d: error %.3f m %.4f rad, want ≤ %.2f m %.2f rad", seed, i, te, re, maxTransErr, maxRotErr)
					}
				}
			}
		})
	}
}

func TestSealedAgentIsInsufficientOverlap(t *testing.T) {
	var sealedScores []float64
	for _, seed := range seeds(9, 3) {
		n := 2 + int(seed%3)
		w, err := world.Generate(world.Config{Seed: seed, Agents: n, Kind: world.SealedAgent})
		if err != nil {
			t.Fatal(err)
		}
		res, _, _, locErr, _ := mission(t, w)
		var ue *match.UnlocalizedError
		if !errors.Is(locErr, slam.ErrInsufficientOverlap) || !errors.As(locErr, &ue) {
			s := res[n-1]
			t.Errorf("seed %d: %v, want insufficient overlap (sealed agent localized %v: score %.3f free conflict %.3f ambiguity %.3f runner-up %.3f margin %.3f)",
				seed, locErr, s.Localized, s.Score, s.FreeConflict, s.Ambiguity, s.RunnerUpScore, s.Margin)
			continue
		}
		if len(ue.Failures) != 1 || ue.Failures[0].Result.Agent != n-1 || !w.Agents[n-1].Sealed {
			t.Errorf("seed %d: failures %v, want only the sealed agent %d", seed, ue, n-1)
		}
		for i := 1; i < n-1; i++ {
			if !res[i].Localized {
				t.Errorf("seed %d: the unsealed agent %d was not localized", seed, i)
			}
		}
		sealedScores = append(sealedScores, res[n-1].Score)
	}
	t.Logf("sealed agent score: %v (threshold %.2f)", eval.Summarize(sealedScores), match.DefaultMinScore)
}

func TestSymmetricCorridorIsAmbiguous(t *testing.T) {
	var ambs []float64
	for _, seed := range seeds(9, 3) {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 2 + int(seed%3), Kind: world.SymmetricCorridor})
		if err != nil {
			t.Fatal(err)
		}
		res, _, _, locErr, _ := mission(t, w)
		if !errors.Is(locErr, slam.ErrAmbiguousMatch) {
			t.Errorf("seed %d: %v, want ambiguous match", seed, locErr)
			for i, r := range res[1:] {
				tr := w.Agents[i+1].Truth
				t.Logf("seed %d agent %d: localized %v, %.2f m %.3f rad from the truth; score %.3f free conflict %.3f ambiguity %.3f margin %.3f",
					seed, i+1, r.Localized, math.Hypot(r.Pose.X-tr.X, r.Pose.Y-tr.Y), math.Abs(slam.AngleDiff(r.Pose.Theta, tr.Theta)), r.Score, r.FreeConflict, r.Ambiguity, r.Margin)
			}
		}
		for _, r := range res[1:] {
			ambs = append(ambs, r.Ambiguity)
		}
	}
	t.Logf("corridor ambiguity: %v (threshold %.2f)", eval.Summarize(ambs), match.DefaultMaxAmbiguity)
}

// TestChangedWorldFailsConsistency: the merge refuses the changed agent.
// It is given the agents' scans, as a mission sent as scans is, so the
// see-through test runs too and must not take a change for glass (it only
// ever forgives, so a world refused with it is refused without).
func TestChangedWorldFailsConsistency(t *testing.T) {
	var cons, changed, changedConflict, changedMerit []float64
	var forgiven []float64
	for _, seed := range seeds(9, 3) {
		n := 2 + int(seed%3)
		w, err := world.Generate(world.Config{Seed: seed, Agents: n, Kind: world.ChangedWorld})
		if err != nil {
			t.Fatal(err)
		}
		res, _, rep, locErr, mergeErr := missionScans(t, w, true)
		if locErr != nil {
			t.Errorf("seed %d: the changed agent must still localize: %v", seed, locErr)
			continue
		}
		changedConflict = append(changedConflict, res[n-1].FreeConflict)
		changedMerit = append(changedMerit, res[n-1].Merit)
		var ie *fuse.InconsistencyError
		if !errors.Is(mergeErr, slam.ErrInconsistent) || !errors.As(mergeErr, &ie) || ie.Agent != n-1 || !w.Agents[n-1].Changed {
			t.Errorf("seed %d: merge %v (report %+v), want the changed agent %d inconsistent", seed, mergeErr, rep, n-1)
			continue
		}
		cons = append(cons, ie.Consistency)
		changed = append(changed, ie.Report.ChangedShare)
		forgiven = append(forgiven, float64(ie.Report.SeeThroughCells))
	}
	t.Logf("changed agent consistency: %v (threshold %.3f)", eval.Summarize(cons), fuse.DefaultMinConsistency)
	t.Logf("changed agent cells forgiven as glass: %v", eval.Summarize(forgiven))
	t.Logf("changed agent changed share: %v", eval.Summarize(changed))
	t.Logf("changed agent free conflict: %v (max %.2f), merit %v", eval.Summarize(changedConflict), match.DefaultMaxFreeConflict, eval.Summarize(changedMerit))
}

func TestOversizedGridIsRefused(t *testing.T) {
	t.Parallel()
	meta, err := world.MapMeta(world.Config{WidthM: 150, HeightM: 150})
	if err != nil {
		t.Fatal(err)
	}
	if err := grid.CheckCapacity(meta, 2_000_000); !errors.Is(err, slam.ErrCapacity) {
		t.Errorf("9 M cells against a 2 M budget: %v, want ErrCapacity", err)
	}
	if _, err := grid.New(grid.Meta{Resolution: 0.01, Width: 100_000, Height: 100_000}); !errors.Is(err, slam.ErrTooLarge) {
		t.Errorf("10^10 cells: %v, want ErrTooLarge", err)
	}
	if _, err := world.Generate(world.Config{WidthM: 5000, HeightM: 5000}); !errors.Is(err, slam.ErrTooLarge) {
		t.Errorf("5 km world: %v, want ErrTooLarge", err)
	}
}

func dist(a, b slam.Pose2D) float64  { d, _ := eval.PoseError(a, b); return d }
func angle(a, b slam.Pose2D) float64 { _, r := eval.PoseError(a, b); return r }
