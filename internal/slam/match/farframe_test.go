package match_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
)

// moveFrame returns submap with the same cells in a frame whose origin lies
// at −move in the old frame: a cell at p lies at p + move. An agent's
// map_from_agent in the new frame is the old one composed with −move.
func moveFrame(t *testing.T, submap *grid.Grid, move slam.Pose2D) *grid.Grid {
	t.Helper()
	m := submap.Meta()
	m.Origin.X += move.X
	m.Origin.Y += move.Y
	out, err := grid.FromInt8(m, submap.ToInt8())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFrameFarFromItsCells moves the frame of real agents (the Intel,
// Freiburg 079 and Willow missions') tens of metres from their cells, as a
// ROS map's frame may lie, and localizes them against their missions'
// anchors. Each must be found where it is found in its own frame (its cells
// within 2 cells and 0.01 rad):
//   - with a guess of the moved frame at that place (Willow's robot-2 was
//     refused AMBIGUOUS_MATCH, 0.966, by poses that laid its cells on each
//     other but its far origin 0.4 m apart);
//   - without a guess (Intel and Freiburg: Willow's robot-2 does not stand
//     clear of the crowd against the anchor alone, in its own frame too);
//   - with a guess whose heading is 3° off but whose cells lie right, the
//     default window does not hold the moved origin: the refusal must say
//     how wide a window the heading needs, and that window must find it.
func TestFrameFarFromItsCells(t *testing.T) {
	ctx := context.Background()
	advice := regexp.MustCompile(`lie (\d+\.\d) m from its frame's origin.* needs search_window_m of about (\d+\.\d)`)
	for _, name := range []string{"intel-local-3", "fr079-local-4", "willow-3"} {
		ref, agents := realReference(t, name)
		r, err := match.NewReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range agents {
			if a.Anchor {
				continue
			}
			own, err := r.Localize(ctx, a.Submap, a.Guess, match.Options{})
			if err != nil {
				t.Fatalf("%s agent %d in its own frame: %v", name, i, err)
			}
			for _, move := range []slam.Pose2D{{X: 56}, {X: -40, Y: 40}} {
				what := fmt.Sprintf("%s agent %d, frame moved by (%g, %g) m", name, i, move.X, move.Y)
				moved := moveFrame(t, a.Submap, move)
				res, err := r.Localize(ctx, moved, own.Pose.Compose(move.Inverse()), match.Options{})
				if err != nil {
					t.Fatalf("%s, guessed at its place: %v", what, err)
				}
				assertSamePlace(t, what+", guessed at its place", res.Pose.Compose(move), own.Pose)
				if name != "willow-3" {
					res, err := r.LocalizeGlobal(ctx, moved, match.Options{})
					if err != nil {
						t.Fatalf("%s, no guess: %v", what, err)
					}
					assertSamePlace(t, what+", no guess", res.Pose.Compose(move), own.Pose)
				}

				// The cells' centroid stays put while the heading turns 3°.
				c := centroid(moved)
				truth := own.Pose.Compose(move.Inverse())
				turn := slam.Pose2D{Theta: 3 * math.Pi / 180}
				cx, cy := truth.Apply(c.X, c.Y)
				guess := slam.Pose2D{X: cx, Y: cy}.Compose(turn).Compose(slam.Pose2D{Theta: truth.Theta}).Compose(slam.Pose2D{X: -c.X, Y: -c.Y})
				_, err = r.Localize(ctx, moved, guess, match.Options{})
				var le *match.LocalizationError
				if !errors.As(err, &le) || !le.OnEdge {
					t.Fatalf("%s, guess 3° off at its cells: want a refusal on the window's edge, got %v", what, err)
				}
				got := advice.FindStringSubmatch(err.Error())
				if got == nil {
					t.Fatalf("%s: the refusal does not say how wide a window the heading needs: %v", what, err)
				}
				if d, _ := strconv.ParseFloat(got[1], 64); math.Abs(d-math.Hypot(c.X, c.Y)) > 0.1 {
					t.Errorf("%s: the refusal puts the cells %s m from the origin, they lie %.1f m", what, got[1], math.Hypot(c.X, c.Y))
				}
				wide, _ := strconv.ParseFloat(got[2], 64)
				res, err = r.Localize(ctx, moved, guess, match.Options{WindowXY: wide})
				if err != nil {
					t.Fatalf("%s, guess 3° off with the advised window of %g m: %v", what, wide, err)
				}
				assertSamePlace(t, what+", advised window", res.Pose.Compose(move), own.Pose)
			}
		}
	}
}

// centroid is the mean of the submap's occupied cells, in its frame.
func centroid(g *grid.Grid) slam.Pose2D {
	m := g.Meta()
	var c slam.Pose2D
	n := 0
	for y := range m.Height {
		for x := range m.Width {
			if g.At(x, y) > 0.5 {
				px, py := m.Center(x, y)
				c.X += px
				c.Y += py
				n++
			}
		}
	}
	return slam.Pose2D{X: c.X / float64(n), Y: c.Y / float64(n)}
}

// assertSamePlace fails unless got and want lay an agent's cells within 2
// cells (10 cm) and 0.01 rad of each other.
func assertSamePlace(t *testing.T, what string, got, want slam.Pose2D) {
	t.Helper()
	if d, r := math.Hypot(got.X-want.X, got.Y-want.Y), math.Abs(slam.AngleDiff(got.Theta, want.Theta)); d > 0.1 || r > 0.01 {
		t.Errorf("%s: found at %v, in its own frame at %v: %.3f m, %.4f rad apart", what, got, want, d, r)
	}
}
