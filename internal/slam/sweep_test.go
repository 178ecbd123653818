package slam_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// TestGuessOffsetSweep holds localization to "correct or refused, never
// accepted wrong" (issue 8): on 3-agent office worlds, every non-anchor
// guess is moved off the truth by a sweep of rotations and translations,
// most of them beyond the default ±1 m / ±20° window (33° and 1.66 m were
// accepted wrong before), and every agent that comes back localized must be
// within the accuracy bound. Refusals must say what was searched.
func TestGuessOffsetSweep(t *testing.T) {
	t.Parallel()
	type offset struct{ dxy, dθ float64 } // metres, degrees
	var offsets []offset
	for _, d := range []float64{0, 25, 33, 61, 90, 180} {
		offsets = append(offsets, offset{0, d}, offset{0, -d})
	}
	for _, d := range []float64{1.2, 1.66, 2.5} {
		offsets = append(offsets, offset{d, 0}, offset{d, 33})
	}
	var worlds []*world.World
	for _, seed := range []uint64{2, 4} {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 3})
		if err != nil {
			t.Fatal(err)
		}
		worlds = append(worlds, w)
	}
	localized, refused, wrong := 0, 0, 0
	for _, o := range offsets {
		for _, w := range worlds {
			agents := make([]match.Agent, len(w.Agents))
			for i, a := range w.Agents {
				g := a.Truth
				if !a.Anchor {
					dir := float64(i) * 2.1 // a different direction per agent
					g = slam.Pose2D{X: g.X + o.dxy*math.Cos(dir), Y: g.Y + o.dxy*math.Sin(dir), Theta: slam.NormalizeAngle(g.Theta + o.dθ*math.Pi/180)}
				}
				agents[i] = match.Agent{Submap: a.Submap, Guess: g, Anchor: a.Anchor}
			}
			res, err := match.LocalizeAll(context.Background(), w.Truth.Meta(), agents, match.Options{Parallelism: 2}, nil)
			var ue *match.UnlocalizedError
			if err != nil && !errors.As(err, &ue) {
				t.Fatalf("seed %d offset %+v: %v", w.Config.Seed, o, err)
			}
			if ue != nil {
				for _, f := range ue.Failures {
					if !strings.Contains(f.Error(), "searched ") {
						t.Errorf("seed %d offset %+v: refusal does not say what was searched: %v", w.Config.Seed, o, f)
					}
				}
			}
			for i, r := range res {
				if r.Anchor {
					continue
				}
				if !r.Localized {
					refused++
					continue
				}
				localized++
				if te, re := eval.PoseError(r.Pose, w.Agents[i].Truth); te > maxTransErr || re > maxRotErr {
					wrong++
					t.Errorf("seed %d offset %.2f m %.0f°: agent %d accepted %.3f m %.4f rad from the truth (score %.3f, free conflict %.3f, ambiguity %.3f)",
						w.Config.Seed, o.dxy, o.dθ, i, te, re, r.Score, r.FreeConflict, r.Ambiguity)
				}
			}
		}
	}
	t.Logf("%d offsets × %d worlds: %d agents localized (%d of them wrong), %d refused", len(offsets), len(worlds), localized, wrong, refused)
}

// Gross error bounds for TestLargeOfficeWorlds: a pose this far off is
// "accepted wrong" (the wrong corridor, room or heading), as opposed to a
// correct match whose accuracy falls short of the 2-cell bound.
const (
	grossTransErr = 0.5  // metres
	grossRotErr   = 0.05 // radians
)

// TestLargeOfficeWorlds runs offices of 80×60 m and 150×100 m (1.9 M and
// 6 M cells at 5 cm), 3 agents each: every mission must complete (every
// agent localized, the merge passing), as the Office kind promises, and no
// agent may be accepted beyond the gross bounds; the test logs how many
// localized agents missed the 2-cell bound. By default it runs 3 seeds per
// size (CI time, -race); -slam.worlds=50 runs the 50 of issue 8
// (docs/slam.md has the figures).
func TestLargeOfficeWorlds(t *testing.T) {
	t.Parallel()
	for _, size := range [][2]float64{{80, 60}, {150, 100}} {
		t.Run(fmt.Sprintf("%gx%g", size[0], size[1]), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			var trans, rot []float64
			completed, refused, imprecise := 0, 0, 0
			list := seeds(3, 2)
			for _, seed := range list {
				w, err := world.Generate(world.Config{Seed: seed, Agents: 3, WidthM: size[0], HeightM: size[1]})
				if err != nil {
					t.Fatal(err)
				}
				res, _, _, locErr, mergeErr := mission(t, w)
				var ue *match.UnlocalizedError
				switch {
				case locErr != nil && !errors.As(locErr, &ue):
					t.Fatalf("seed %d: %v", seed, locErr)
				case locErr != nil:
					refused++
					t.Errorf("seed %d: an office agent was refused: %v", seed, locErr)
				case mergeErr != nil:
					t.Errorf("seed %d: localized but the merge failed: %v", seed, mergeErr)
				default:
					completed++
				}
				for i, r := range res {
					if r.Anchor || !r.Localized {
						continue
					}
					te, re := eval.PoseError(r.Pose, w.Agents[i].Truth)
					trans, rot = append(trans, te), append(rot, re)
					if te > maxTransErr || re > maxRotErr {
						imprecise++
						t.Logf("seed %d agent %d: error %.3f m %.4f rad, beyond 2 cells", seed, i, te, re)
					}
					if te > grossTransErr || re > grossRotErr {
						t.Errorf("seed %d agent %d accepted wrong: error %.3f m %.4f rad", seed, i, te, re)
					}
				}
			}
			t.Logf("%d worlds in %v: %d completed, %d refused at localization; %d localized agents beyond 2 cells; translation error %v; rotation error %v",
				len(list), time.Since(start).Round(time.Millisecond), completed, refused, imprecise, eval.Summarize(trans), eval.Summarize(rot))
		})
	}
}
