package match_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/world"
)

func agentsOf(w *world.World) []match.Agent {
	out := make([]match.Agent, len(w.Agents))
	for i, a := range w.Agents {
		out[i] = match.Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor}
	}
	return out
}

func TestLocalizeAgainstTruth(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 11, Agents: 3})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := match.NewReference(w.Truth)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range w.Agents[1:] {
		res, err := ref.Localize(context.Background(), a.Submap, a.InitialGuess, match.Options{})
		if err != nil {
			t.Fatalf("agent %d: %v", a.Index, err)
		}
		tr, rot := eval.PoseError(res.Pose, a.Truth)
		t.Logf("agent %d: error %.3f m %.4f rad, score %.2f inliers %.2f ambiguity %.2f, %d ICP iterations", a.Index, tr, rot, res.Score, res.InlierRatio, res.Ambiguity, res.Iterations)
		if tr > 0.05 || rot > 0.01 {
			t.Errorf("agent %d against ground truth: error %.3f m %.4f rad", a.Index, tr, rot)
		}
	}
}

func TestLocalizeRejectsBadInput(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 2, Agents: 2})
	ref, _ := match.NewReference(w.Truth)
	sub := w.Agents[1].Submap
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		sub   *grid.Grid
		guess slam.Pose2D
		opts  match.Options
		want  error
	}{
		{"nan guess", sub, slam.Pose2D{X: math.NaN()}, match.Options{}, slam.ErrInvalidArgument},
		{"inf guess", sub, slam.Pose2D{Theta: math.Inf(1)}, match.Options{}, slam.ErrInvalidArgument},
		{"nil submap", nil, slam.Pose2D{}, match.Options{}, slam.ErrInvalidArgument},
		{"negative window", sub, slam.Pose2D{}, match.Options{WindowXY: -1}, slam.ErrInvalidArgument},
		{"nan threshold", sub, slam.Pose2D{}, match.Options{MinScore: math.NaN()}, slam.ErrInvalidArgument},
		{"huge window", sub, slam.Pose2D{}, match.Options{WindowXY: 1e9}, slam.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ref.Localize(ctx, tc.sub, tc.guess, tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("Localize = %v, want %v", err, tc.want)
			}
		})
	}
	empty, _ := grid.New(sub.Meta())
	_, err := ref.Localize(ctx, empty, w.Agents[1].InitialGuess, match.Options{})
	var le *match.LocalizationError
	if !errors.Is(err, slam.ErrInsufficientData) || !errors.As(err, &le) || le.Result.Points != 0 {
		t.Fatalf("empty submap: %v, want insufficient data", err)
	}
	if _, err := match.NewReference(empty); !errors.Is(err, slam.ErrInsufficientData) {
		t.Fatalf("empty reference: %v", err)
	}
	// A guess far off the reference: no pose scores, and the error says so
	// rather than calling the guess the best pose.
	_, err = ref.Localize(ctx, sub, slam.Pose2D{X: 1e4}, match.Options{})
	if !errors.Is(err, slam.ErrInsufficientOverlap) || !strings.Contains(err.Error(), "no pose in it puts any of the submap's points near a wall") || strings.Contains(err.Error(), "best (") {
		t.Errorf("guess off the reference: %v", err)
	}
}

func TestLocalizeAllDoesNotDependOnParallelism(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 21, Agents: 4})
	var one, two []match.Result
	for _, p := range []int{1, 3} {
		var events []match.Event
		res, err := match.LocalizeAll(context.Background(), w.Truth.Meta(), agentsOf(w), match.Options{Parallelism: p}, func(e match.Event) { events = append(events, e) })
		if err != nil {
			t.Fatal(err)
		}
		final := 0
		for _, e := range events {
			if e.Final {
				final++
			}
			if e.Total != 4 || e.Localized > 4 {
				t.Errorf("event %+v", e)
			}
		}
		if final != 4 {
			t.Errorf("parallelism %d: %d final events, want 4", p, final)
		}
		if p == 1 {
			one = res
		} else {
			two = res
		}
	}
	for i := range one {
		if one[i].Pose != two[i].Pose || one[i].Round != two[i].Round {
			t.Errorf("agent %d: %v (round %d) with 1 worker, %v (round %d) with 3", i, one[i].Pose, one[i].Round, two[i].Pose, two[i].Round)
		}
	}
	// And so is the merged map, compared as the int8 cells a service ships.
	merge := func(res []match.Result) []int8 {
		base, _ := grid.New(w.Truth.Meta())
		in := make([]fuse.Input, len(res))
		for i, r := range res {
			in[i] = fuse.Input{Agent: i, Submap: w.Agents[i].Submap, Pose: r.Pose}
		}
		m, _, err := fuse.Merge(base, in, fuse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return m.ToInt8()
	}
	if !slices.Equal(merge(one), merge(two)) {
		t.Error("merged maps differ between parallelism 1 and 3")
	}
}

func TestLocalizeAllValidation(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 4, Agents: 2})
	ctx := context.Background()
	m := w.Truth.Meta()
	noAnchor := agentsOf(w)
	noAnchor[0].Anchor = false
	nanGuess := agentsOf(w)
	nanGuess[1].Guess.Y = math.NaN()
	nilSub := agentsOf(w)
	nilSub[1].Submap = nil
	for name, agents := range map[string][]match.Agent{"no agents": nil, "no anchor": noAnchor, "nan guess": nanGuess, "nil submap": nilSub} {
		if _, err := match.LocalizeAll(ctx, m, agents, match.Options{}, nil); !errors.Is(err, slam.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := match.LocalizeAll(ctx, grid.Meta{Resolution: -1}, agentsOf(w), match.Options{}, nil); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("bad meta: %v", err)
	}
	// A mission map that misses the anchor's data: the error points at the
	// map's bounds and the anchor, not at an empty reference.
	away := m
	away.Origin.X += float64(m.Width)*m.Resolution + 50
	_, err := match.LocalizeAll(ctx, away, agentsOf(w), match.Options{}, nil)
	if !errors.Is(err, slam.ErrInsufficientData) || !strings.Contains(err.Error(), "the anchor placed at its guess leaves no wall inside the mission map") {
		t.Errorf("map away from the anchor: %v", err)
	}
}

// TestLocalizeAllHonoursCancellation is not parallel: goleak.VerifyNone sees
// every goroutine of the process, so another test's workers would count as
// leaked. Serial tests run while the parallel ones wait to start.
func TestLocalizeAllHonoursCancellation(t *testing.T) {
	w, _ := world.Generate(world.Config{Seed: 8, Agents: 6})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := match.LocalizeAll(ctx, w.Truth.Meta(), agentsOf(w), match.Options{Parallelism: 2}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled LocalizeAll = %v, want context.Canceled", err)
	}
	// Every goroutine it started has ended by the time it returned (goleak
	// retries for a while before failing, for goroutines still unwinding).
	goleak.VerifyNone(t)
}

func TestLocalizeAllCallbackIsSerial(t *testing.T) {
	t.Parallel()
	w, _ := world.Generate(world.Config{Seed: 13, Agents: 5})
	var mu sync.Mutex
	inside := false
	_, err := match.LocalizeAll(context.Background(), w.Truth.Meta(), agentsOf(w), match.Options{Parallelism: 4}, func(match.Event) {
		mu.Lock()
		if inside {
			t.Error("onEvent called concurrently")
		}
		inside = true
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inside = false
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLocalizeAgent localizes one agent of a 20×15 m office at 5 cm
// with the default ±1 m / ±20° window, including the preparation of the
// reference (the anchor's submap fused into the map grid: distance
// transform, likelihood fields, wall normals). Target: ≤ 30 ms.
func BenchmarkLocalizeAgent(b *testing.B) {
	w, err := world.Generate(world.Config{Seed: 1, Agents: 2})
	if err != nil {
		b.Fatal(err)
	}
	ref, _ := grid.New(w.Truth.Meta())
	if err := fuse.Warp(ref, w.Agents[0].Submap, w.Agents[0].Truth); err != nil {
		b.Fatal(err)
	}
	a := w.Agents[1]
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := match.Localize(ctx, ref, a.Submap, a.InitialGuess, match.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalizeAll is the localization step of an office mission (the
// bench's office workload): three agents of a 20×15 m office at 5 cm, one an
// anchor, matched in rounds and then refined against each other.
//
//	go test -run '^$' -bench LocalizeAll -benchmem ./internal/slam/match
func BenchmarkLocalizeAll(b *testing.B) {
	w, err := world.Generate(world.Config{Seed: 1, Agents: 3})
	if err != nil {
		b.Fatal(err)
	}
	agents := make([]match.Agent, len(w.Agents))
	for i, a := range w.Agents {
		agents[i] = match.Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := match.LocalizeAll(ctx, w.Truth.Meta(), agents, match.Options{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A guess farther off than the search window is refused with the best
// pose on the window's edge, whatever the refusal's reason, and the
// message says the guess may be farther off.
func TestGuessBeyondTheWindowIsRefusedOnItsEdge(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 11, Agents: 3})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := match.NewReference(w.Truth)
	if err != nil {
		t.Fatal(err)
	}
	a := w.Agents[1]
	for _, off := range []float64{0.9, 2.5} {
		guess := a.Truth
		guess.X += off
		_, err = ref.Localize(context.Background(), a.Submap, guess, match.Options{WindowXY: 0.3, WindowTheta: 0.1})
		var le *match.LocalizationError
		if !errors.As(err, &le) || !le.OnEdge || !strings.Contains(err.Error(), "edge of the search window") {
			t.Errorf("guess %.1f m off, window ±0.3 m: %v, want a refusal on the window's edge", off, err)
		}
	}
}
