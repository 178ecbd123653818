package slam_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Flags of TestRealSegmentSweep; docs/slam.md's figures come from
//
//	go test ./internal/slam -run TestRealSegmentSweep -v -args -slam.sweep.sets=200 -slam.sweep.seed=2
//	go test ./internal/slam -run TestRealSegmentSweep -v -args -slam.sweep.log=freiburg-079-corrected.log.gz -slam.sweep.sets=40 -slam.sweep.seed=4
//	go test ./internal/slam -run TestRealSegmentSweep -v -args -slam.sweep.sets=100 -slam.sweep.seed=2 -slam.sweep.poses=odom -slam.sweep.guess=odom
var (
	sweepSets  = flag.Int("slam.sweep.sets", 4, "TestRealSegmentSweep: random segment sets to run")
	sweepSeed  = flag.Uint64("slam.sweep.seed", 1, "TestRealSegmentSweep: seed of the segment sets and guesses")
	sweepLog   = flag.String("slam.sweep.log", "intel-corrected.log.gz", "TestRealSegmentSweep: CARMEN log of ../shared/realdata/carmen, or an absolute path (a log of more than 2000 readings, as freiburg-079-corrected.log.gz, gets 4 agents × 250 scans)")
	sweepPoses = flag.String("slam.sweep.poses", "laser", "TestRealSegmentSweep: scan poses, laser (the corrected trajectory) or odom (the log's ODOM lines; accepted agents are then measured, not bounded)")
	sweepGuess = flag.String("slam.sweep.guess", "random", "TestRealSegmentSweep: non-anchor guesses, random (the truth moved by up to ±0.4 m, ±10°), odom (chained through the ODOM lines from the anchor, as slamctl --guess-from odom) or none")
)

// sweepMinOverlap is the share of an agent's 0.2 m cells that lie within
// one cell of an earlier agent's, as the provided missions' converter
// measured it (missions/*.expected.json: 0.57–0.78).
const sweepMinOverlap = 0.5

// TestRealSegmentSweep builds missions the way ../shared/realdata/missions
// were built, from segments the provided missions do not use: random
// segment sets of a real log (Intel: 3 agents × 30 keyframes; Freiburg
// 079: 4 × 250 scans) whose agents overlap the earlier ones by at least
// sweepMinOverlap, the scans at the corrected poses, each non-anchor
// guess the truth moved by up to ±0.4 m and ±10°. It localizes and merges
// each as the services do and logs the outcome: correct (every agent
// within 2 cells and 0.02 rad of its corrected start pose), refused at
// localization or at the merge (with the gates' figures), or accepted
// beyond that. It fails when an agent is accepted beyond the gross bound
// (0.5 m, 0.05 rad): a real mission must come out near right or be
// refused. With -slam.sweep.poses=odom the scans are posed by the log's
// ODOM lines, and each agent is judged beyond its odometry allowance
// (odometryAllowance), not bounded: no localization places a submap
// bent by its odometry better than that submap's best fit. Each localized set is merged again with its last agent moved
// by wrongPoses, with and without the see-through test, and the test
// logs how many of those wrong poses the gates accepted without it, and
// how many only the see-through test let through (its price, docs/slam.md
// §5). CI runs four
// Intel sets; the flags above run the sweeps docs/slam.md reports.
func TestRealSegmentSweep(t *testing.T) {
	t.Parallel()
	path := *sweepLog
	if !filepath.IsAbs(path) {
		path = filepath.Join("..", "..", "..", "shared", "realdata", "carmen", path)
	}
	lg, err := slamio.OpenCarmen(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := slamio.PoseSource(*sweepPoses); p != slamio.PosesLaser && p != slamio.PosesOdom {
		t.Fatalf("-slam.sweep.poses %q: want laser or odom", *sweepPoses)
	}
	if g := *sweepGuess; g != "random" && g != string(slamio.GuessOdom) && g != string(slamio.GuessNone) {
		t.Fatalf("-slam.sweep.guess %q: want random, odom or none", g)
	}
	agents, segLen := 3, 30
	if len(lg.Readings) > 2000 { // every scan of the log, as fr079-local-4
		agents, segLen = 4, 250
	}
	rng := rand.New(rand.NewPCG(*sweepSeed, 7))
	var tally sweepTally
	var wrongTried, wrongAccepted, wrongFlipped int
	for sets, tries := 0, 0; sets < *sweepSets; tries++ {
		if tries > 200*(*sweepSets) {
			t.Fatalf("found %d of %d segment sets overlapping by %.0f %% in %d tries", sets, *sweepSets, 100*sweepMinOverlap, tries)
		}
		segs, ok := overlappingSegments(lg, rng, agents, segLen)
		if !ok {
			continue
		}
		sets++
		label := fmt.Sprint(segs)
		out, err := sweepMission(lg, segs, rng)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		wrongTried, wrongAccepted, wrongFlipped = wrongTried+out.wrongTried, wrongAccepted+out.wrongAccepted, wrongFlipped+out.wrongFlipped
		if len(out.flipped) > 0 {
			t.Logf("%s: the last agent moved by %v (m, m, °) merged only with the see-through test", label, out.flipped)
		}
		tally.add(t, label, out)
	}
	t.Logf("%s, poses %s, guesses %s, %d segment sets: %s", *sweepLog, *sweepPoses, *sweepGuess, *sweepSets, tally)
	t.Logf("wrong poses of the last agent: %d tried, %d merged without the see-through test, %d more only with it", wrongTried, wrongAccepted, wrongFlipped)
}

// wrongPoses move the last agent of a localized set off its pose (metres,
// metres, degrees) to see which the merge accepts: 3 and 6 cells, a few
// degrees, 30°.
var wrongPoses = [][3]float64{{0.15, 0, 0}, {-0.15, 0, 0}, {0, 0.15, 0}, {0, -0.15, 0}, {0.3, 0, 0}, {0, -0.3, 0},
	{0, 0, 3}, {0, 0, -3}, {0, 0, 6}, {0, 0, -10}, {0.2, 0.2, 5}, {0, 0, 30}}

// overlappingSegments draws n disjoint segments of segLen readings, each
// overlapping the earlier ones by sweepMinOverlap; ok is false when a draw
// does not.
func overlappingSegments(lg *slamio.Log, rng *rand.Rand, n, segLen int) (segs []slamio.Segment, ok bool) {
	seen := map[[2]int]bool{}
	for range n {
		first := rng.IntN(len(lg.Readings) - segLen)
		s := slamio.Segment{First: first, Last: first + segLen - 1}
		for _, o := range segs {
			if s.First <= o.Last && o.First <= s.Last {
				return nil, false
			}
		}
		cells := hitCells(lg.Readings[s.First : s.Last+1])
		if len(segs) > 0 {
			near := 0
			for c := range cells {
			neighbours:
				for dx := -1; dx <= 1; dx++ {
					for dy := -1; dy <= 1; dy++ {
						if seen[[2]int{c[0] + dx, c[1] + dy}] {
							near++
							break neighbours
						}
					}
				}
			}
			if float64(near) < sweepMinOverlap*float64(len(cells)) {
				return nil, false
			}
		}
		for c := range cells {
			seen[c] = true
		}
		segs = append(segs, s)
	}
	return segs, true
}

// hitCells returns the 0.2 m cells that the readings' beams shorter than
// 12 m hit at their corrected poses (the converter's overlap measure).
func hitCells(rs []slamio.Reading) map[[2]int]bool {
	out := map[[2]int]bool{}
	for _, r := range rs {
		for i, rr := range r.Ranges {
			if !(rr > 0.1 && rr < 12) {
				continue
			}
			a := r.Laser.Theta + r.AngleMin + float64(i)*r.AngleIncrement
			x, y := r.Laser.X+float64(rr)*math.Cos(a), r.Laser.Y+float64(rr)*math.Sin(a)
			out[[2]int{int(math.Floor(x / 0.2)), int(math.Floor(y / 0.2))}] = true
		}
	}
	return out
}

// sweepOutcome is what one mission of the sweep came to: the gates'
// errors, the worst agent's distance from its corrected start pose, and
// of wrongTried wrong poses, how many the merge accepted without the
// see-through test and how many only with it.
type sweepOutcome struct {
	locErr, mergeErr error
	worstT, worstR   float64
	// excessT and excessR are the worst agent's distance beyond its
	// allowance (the odometry's best fit, see odometryAllowance): worstT
	// and worstR without one.
	excessT, excessR                        float64
	wrongTried, wrongAccepted, wrongFlipped int
	// flipped lists the wrong poses only the see-through test let through.
	flipped [][3]float64
}

// sweepTally counts a sweep's outcomes.
type sweepTally struct{ correct, locRefused, mergeRefused, off int }

// add counts out, logging it under label, and fails the test on an agent
// accepted beyond the gross bound (0.5 m, 0.05 rad), or on an error that
// is no refusal (a bug).
func (s *sweepTally) add(t *testing.T, label string, out sweepOutcome) {
	t.Helper()
	var ie *fuse.InconsistencyError
	switch {
	case out.locErr != nil && !errors.Is(out.locErr, slam.ErrInsufficientOverlap) && !errors.Is(out.locErr, slam.ErrAmbiguousMatch) && !errors.Is(out.locErr, slam.ErrInsufficientData):
		t.Fatalf("%s: localization: %v", label, out.locErr)
	case out.locErr != nil:
		s.locRefused++
		t.Logf("%s: refused at localization: %v", label, out.locErr)
	case errors.As(out.mergeErr, &ie):
		s.mergeRefused++
		t.Logf("%s: refused at the merge (agents within %.3f m, %.4f rad): %v", label, out.worstT, out.worstR, ie)
	case out.mergeErr != nil:
		t.Fatalf("%s: merge: %v", label, out.mergeErr)
	case *sweepPoses == string(slamio.PosesOdom) && (out.excessT > 2*0.05 || out.excessR > 0.02):
		// Submaps from odometry are bent by it: measured, not bounded.
		s.off++
		t.Logf("%s: accepted %.3f m, %.4f rad from the truth, %.3f m, %.4f rad beyond the odometry's best fit", label, out.worstT, out.worstR, out.excessT, out.excessR)
	case *sweepPoses != string(slamio.PosesOdom) && (out.worstT > 0.5 || out.worstR > 0.05):
		t.Errorf("%s: accepted %.3f m, %.4f rad from the truth (gross bound 0.5 m, 0.05 rad)", label, out.worstT, out.worstR)
	case out.excessT > 2*0.05 || out.excessR > 0.02:
		s.off++
		t.Logf("%s: accepted %.3f m, %.4f rad from the truth (beyond 2 cells and 0.02 rad)", label, out.worstT, out.worstR)
	default:
		s.correct++
		t.Logf("%s: correct, within %.3f m, %.4f rad (%.3f m, %.4f rad beyond any allowance)", label, out.worstT, out.worstR, out.excessT, out.excessR)
	}
}

func (s sweepTally) String() string {
	return fmt.Sprintf("%d correct, %d refused at localization, %d at the merge, %d accepted beyond 2 cells or 0.02 rad", s.correct, s.locRefused, s.mergeRefused, s.off)
}

// sweepMission imports segs of lg as slamctl does (scan poses from
// -slam.sweep.poses, guesses at the corrected start poses), replaces the
// non-anchor guesses as -slam.sweep.guess says, and localizes and merges
// the mission as the services do.
func sweepMission(lg *slamio.Log, segs []slamio.Segment, rng *rand.Rand) (sweepOutcome, error) {
	opts := slamio.CarmenOptions{Segments: segs, RangeMin: 0.1, RangeMax: 20, Poses: slamio.PoseSource(*sweepPoses), Guesses: slamio.GuessLaser}
	agents, err := slamio.CarmenAgents(lg, opts)
	if err != nil {
		return sweepOutcome{}, err
	}
	var allow []slam.Pose2D
	if opts.Poses == slamio.PosesOdom {
		if allow, err = odometryAllowance(lg, opts, agents); err != nil {
			return sweepOutcome{}, err
		}
	}
	var chained []*typesv1.Agent
	if *sweepGuess == string(slamio.GuessOdom) {
		opts.Guesses = slamio.GuessOdom
		if chained, err = slamio.CarmenAgents(lg, opts); err != nil {
			return sweepOutcome{}, err
		}
	}
	truth := make([]slam.Pose2D, len(agents))
	for i, a := range agents {
		truth[i] = slamproto.PoseFromProto(a.GetInitialGuess())
		switch {
		case i == 0:
		case chained != nil:
			a.InitialGuess = chained[i].GetInitialGuess()
		case *sweepGuess == string(slamio.GuessNone):
			a.InitialGuess = nil
		default:
			g := truth[i]
			g.X += (2*rng.Float64() - 1) * 0.4
			g.Y += (2*rng.Float64() - 1) * 0.4
			g.Theta += (2*rng.Float64() - 1) * 10 * math.Pi / 180
			a.InitialGuess = slamproto.PoseToProto(g)
		}
	}
	out, merge, base, err := localizeAndMerge(agents, truth, allow, nil)
	if err != nil || out.locErr != nil {
		return out, err
	}
	last := len(merge) - 1
	for _, off := range wrongPoses {
		moved := slices.Clone(merge)
		moved[last].Pose.X += off[0]
		moved[last].Pose.Y += off[1]
		moved[last].Pose.Theta += off[2] * math.Pi / 180
		out.wrongTried++
		_, _, with := fuse.Merge(base, moved, fuse.Options{})
		_, _, without := fuse.Merge(base, moved, fuse.Options{SeeThroughAngle: -1})
		switch {
		case without == nil:
			out.wrongAccepted++
		case with == nil:
			out.wrongFlipped++
			out.flipped = append(out.flipped, off)
		}
	}
	return out, nil
}

// odometryAllowance is, for each agent of odometry-posed agents, how far
// the best rigid fit of its scan positions onto the corrected ones puts
// its start from the corrected start pose (X: the distance, Theta: the
// turn): what the missions' README lets a scorer allow on top of its
// tolerance, since no localization can place a bent submap better.
func odometryAllowance(lg *slamio.Log, opts slamio.CarmenOptions, agents []*typesv1.Agent) ([]slam.Pose2D, error) {
	opts.Poses = slamio.PosesLaser
	corrected, err := slamio.CarmenAgents(lg, opts)
	if err != nil {
		return nil, err
	}
	allow := make([]slam.Pose2D, len(agents))
	for i, a := range agents {
		start := slamproto.PoseFromProto(corrected[i].GetInitialGuess())
		var sent, truth []slam.Pose2D
		for k, f := range a.GetScans() {
			sent = append(sent, slamproto.PoseFromProto(f.GetOdomPose()))
			truth = append(truth, start.Compose(slamproto.PoseFromProto(corrected[i].GetScans()[k].GetOdomPose())))
		}
		fit := fitRigid(sent, truth)
		allow[i] = slam.Pose2D{X: math.Hypot(fit.X-start.X, fit.Y-start.Y), Theta: math.Abs(slam.AngleDiff(fit.Theta, start.Theta))}
	}
	return allow, nil
}

// fitRigid is the rigid transform T minimising Σ |T(src_k) − dst_k|² over
// the poses' positions (2D Kabsch: Umeyama 1991 without scale).
func fitRigid(src, dst []slam.Pose2D) slam.Pose2D {
	var sx, sy, dx, dy float64
	for k := range src {
		sx, sy, dx, dy = sx+src[k].X, sy+src[k].Y, dx+dst[k].X, dy+dst[k].Y
	}
	n := float64(len(src))
	sx, sy, dx, dy = sx/n, sy/n, dx/n, dy/n
	var dot, cross float64
	for k := range src {
		ax, ay, bx, by := src[k].X-sx, src[k].Y-sy, dst[k].X-dx, dst[k].Y-dy
		dot += ax*bx + ay*by
		cross += ax*by - ay*bx
	}
	th := math.Atan2(cross, dot)
	c, sn := math.Cos(th), math.Sin(th)
	return slam.Pose2D{X: dx - (c*sx - sn*sy), Y: dy - (sn*sx + c*sy), Theta: th}
}

// localizeAndMerge localizes and merges agents as the services do, in a map
// sized by slamio.MapFor as slamctl sizes it, and measures the worst agent
// against truth, and beyond allow (per agent, as odometryAllowance; nil:
// none); merge and base are the merge's inputs and the map it started
// from (nil when localization refused). moved (nil: none) is, per agent,
// the move its submap's frame was given (see moveFrame): an agent's pose
// is measured as pose ∘ moved, in the frame truth is given in.
func localizeAndMerge(agents []*typesv1.Agent, truth, allow, moved []slam.Pose2D) (out sweepOutcome, merge []fuse.Input, base *grid.Grid, err error) {
	spec, err := slamio.MapFor(agents, 0.05, slamio.DefaultMapMargin)
	if err != nil {
		return out, nil, nil, err
	}
	meta, err := grid.MetaForBounds(spec.GetOriginX(), spec.GetOriginY(), spec.GetWidthM(), spec.GetHeightM(), spec.GetResolution())
	if err != nil {
		return out, nil, nil, err
	}
	dom, err := slamproto.AgentsFromProto(agents, meta.Resolution)
	if err != nil {
		return out, nil, nil, err
	}
	in := make([]match.Agent, len(dom))
	for i, a := range dom {
		in[i] = match.Agent{Submap: a.Submap, Guess: a.Guess, Anchor: a.Anchor, NoGuess: !a.Anchor && agents[i].GetInitialGuess() == nil}
	}
	res, err := match.LocalizeAll(context.Background(), meta, in, match.Options{Parallelism: 2}, nil)
	if err != nil {
		out.locErr = err
		return out, nil, nil, nil
	}
	merge = make([]fuse.Input, len(res))
	for i, r := range res {
		pose := r.Pose
		if moved != nil {
			pose = pose.Compose(moved[i])
		}
		dt, dr := math.Hypot(pose.X-truth[i].X, pose.Y-truth[i].Y), math.Abs(slam.AngleDiff(pose.Theta, truth[i].Theta))
		out.worstT, out.worstR = max(out.worstT, dt), max(out.worstR, dr)
		if allow != nil {
			dt, dr = dt-allow[i].X, dr-allow[i].Theta
		}
		out.excessT, out.excessR = max(out.excessT, dt), max(out.excessR, dr)
		merge[i] = fuse.Input{Agent: i, Submap: dom[i].Submap, Pose: r.Pose, Scans: dom[i].Scans}
	}
	if base, err = grid.New(meta); err != nil {
		return out, nil, nil, err
	}
	_, _, out.mergeErr = fuse.Merge(base, merge, fuse.Options{})
	return out, merge, base, nil
}
