package localslam_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/localslam"
	"github.com/slammesh/slammesh/internal/slam/world"
)

// jitter returns odometry poses that follow the increments of path, each
// increment perturbed by Gaussian noise (sigmaXY metres per axis, sigmaTh
// radians): a jittery odometry whose error is known.
func jitter(path []slam.Pose2D, r *rand.Rand, sigmaXY, sigmaTh float64) []slam.Pose2D {
	out := make([]slam.Pose2D, len(path))
	out[0] = path[0]
	for k := 1; k < len(path); k++ {
		inc := path[k-1].Inverse().Compose(path[k])
		inc.X += r.NormFloat64() * sigmaXY
		inc.Y += r.NormFloat64() * sigmaXY
		inc.Theta += r.NormFloat64() * sigmaTh
		out[k] = out[k-1].Compose(inc)
	}
	return out
}

// trajErr is the mean translation and rotation error of poses against truth.
func trajErr(poses, truth []slam.Pose2D) (float64, float64) {
	var dt, dr float64
	for k := range poses {
		dt += math.Hypot(poses[k].X-truth[k].X, poses[k].Y-truth[k].Y)
		dr += math.Abs(slam.AngleDiff(poses[k].Theta, truth[k].Theta))
	}
	return dt / float64(len(poses)), dr / float64(len(poses))
}

// track runs the front end over scans at odom and returns its poses.
func track(t *testing.T, odom []slam.Pose2D, scans []slam.LaserScan, opts localslam.Options) ([]slam.Pose2D, []localslam.FrameResult) {
	t.Helper()
	frames := make([]localslam.Frame, len(scans))
	for k := range frames {
		frames[k] = localslam.Frame{Odom: odom[k], Scan: scans[k]}
	}
	res, err := localslam.Track(frames, opts)
	if err != nil {
		t.Fatal(err)
	}
	est := make([]slam.Pose2D, len(res))
	for k, fr := range res {
		est[k] = fr.Pose
	}
	if est[0] != odom[0] {
		t.Fatalf("first frame moved from %v to %v: it defines the agent frame", odom[0], est[0])
	}
	return est, res
}

// TestSyntheticJitterTrajectoryCloserToTruth: on synthetic offices, where
// the truth is known, odometry with injected jitter (4 cm per axis and 2°
// per step, 1σ) is corrected: the front end's trajectory is closer to the
// truth than the prior for every agent, and several times closer on average.
func TestSyntheticJitterTrajectoryCloserToTruth(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(8, 8))
	var priorT, priorR, estT, estR float64
	n := 0
	for seed := uint64(1); seed <= 4; seed++ {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range w.Agents {
			odom := jitter(a.Path, r, 0.04, 2*math.Pi/180)
			est, res := track(t, odom, a.Scans, localslam.Options{Resolution: w.Config.Resolution})
			matched := 0
			for _, fr := range res {
				if fr.Matched {
					matched++
				}
			}
			pt, pr := trajErr(odom, a.Path)
			et, er := trajErr(est, a.Path)
			t.Logf("seed %d agent %d: prior %.3f m %.4f rad, front end %.3f m %.4f rad, matched %d/%d", seed, a.Index, pt, pr, et, er, matched, len(res))
			if et >= pt || er >= pr {
				t.Errorf("seed %d agent %d: front end %.3f m %.4f rad from the truth, prior %.3f m %.4f rad", seed, a.Index, et, er, pt, pr)
			}
			priorT += pt
			priorR += pr
			estT += et
			estR += er
			n++
		}
	}
	t.Logf("mean over %d agents: prior %.3f m %.4f rad, front end %.3f m %.4f rad", n, priorT/float64(n), priorR/float64(n), estT/float64(n), estR/float64(n))
	if estT > 0.3*priorT || estR > 0.3*priorR {
		t.Errorf("front end only brought the mean error from %.3f m %.4f rad to %.3f m %.4f rad", priorT/float64(n), priorR/float64(n), estT/float64(n), estR/float64(n))
	}
}

// TestPerfectPosesStay: with perfect odometry and noiseless ranges the
// front end has nothing to correct and must not drift away from the truth.
func TestPerfectPosesStay(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 3, OdomNoise: world.Off, OdomRotNoise: world.Off})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range w.Agents {
			est, _ := track(t, a.Path, a.Scans, localslam.Options{Resolution: w.Config.Resolution})
			et, er := trajErr(est, a.Path)
			if et > 0.01 || er > 0.005 {
				t.Errorf("seed %d agent %d: perfect poses moved by mean %.4f m %.4f rad", seed, a.Index, et, er)
			}
		}
	}
}

// glitch returns poses with frame k's pose turned by dth radians and moved
// by (dx, dy) metres: one odometry pose jittered far beyond the window, as
// a real log's ODOM lines are now and then (intel: 15–21°).
func glitch(poses []slam.Pose2D, k int, dx, dy, dth float64) []slam.Pose2D {
	out := append([]slam.Pose2D(nil), poses...)
	out[k].X += dx
	out[k].Y += dy
	out[k].Theta = slam.NormalizeAngle(out[k].Theta + dth)
	return out
}

// TestWideRetryPlacesAGlitchedPose: odometry perfect but for one pose
// turned by 22° and moved by 0.3 m, beyond the ±12°, ±0.35 m window. The
// wide retry finds that frame's scan where it was taken; with the wide
// window as narrow as the normal one (no retry) the frame keeps its
// prediction, which is what bent agent frames before.
func TestWideRetryPlacesAGlitchedPose(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		w, err := world.Generate(world.Config{Seed: seed, Agents: 2, OdomNoise: world.Off, OdomRotNoise: world.Off})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range w.Agents {
			k := len(a.Path) / 3
			odom := glitch(a.Path, k, 0.3, -0.2, 22*math.Pi/180)
			est, res := track(t, odom, a.Scans, localslam.Options{Resolution: w.Config.Resolution})
			if d, r := math.Hypot(est[k].X-a.Path[k].X, est[k].Y-a.Path[k].Y), math.Abs(slam.AngleDiff(est[k].Theta, a.Path[k].Theta)); !res[k].Wide || d > 0.1 || r > 0.035 {
				t.Errorf("seed %d agent %d frame %d: placed %.3f m %.4f rad from the truth (matched %v, by the wide retry %v)", seed, a.Index, k, d, r, res[k].Matched, res[k].Wide)
			}
			if et, er := trajErr(est, a.Path); et > 0.02 || er > 0.005 {
				t.Errorf("seed %d agent %d: trajectory off by mean %.4f m %.4f rad", seed, a.Index, et, er)
			}
			narrow := localslam.Options{Resolution: w.Config.Resolution, WideXY: localslam.DefaultWindowXY, WideTheta: localslam.DefaultWindowTheta}
			est, res = track(t, odom, a.Scans, narrow)
			if res[k].Matched {
				t.Errorf("seed %d agent %d frame %d: matched without the wide retry at %v: the glitch does not test it", seed, a.Index, k, est[k])
			}
		}
	}
}

// TestWideRetryBacksOffOnScansThatFitNowhere: a run of frames whose
// odometry puts them on new ground, each far from the map and from each
// other, has nothing to fit. The wide retry runs for the first three and is
// then skipped, so such a run costs what it did before the retry; a frame
// that fits again re-arms it.
func TestWideRetryBacksOffOnScansThatFitNowhere(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 2, Agents: 1, OdomNoise: world.Off, OdomRotNoise: world.Off})
	if err != nil {
		t.Fatal(err)
	}
	a := w.Agents[0]
	n := min(len(a.Path), 12)
	odom := append([]slam.Pose2D(nil), a.Path[:n]...)
	far := func(k int) bool { return k >= 1 && k <= 7 || k >= 9 && k <= 10 }
	for k := range odom {
		if far(k) {
			odom[k].X += 25 + 12*float64(k%4)
			odom[k].Y += 25 + 12*float64(k/4)
		}
	}
	_, res := track(t, odom, a.Scans[:n], localslam.Options{Resolution: w.Config.Resolution})
	for k := 1; k < n; k++ {
		switch {
		case !far(k):
			// Perfect odometry: the prediction fits, no search beats it.
			p := res[k].Pose
			if res[k].WideTried || math.Hypot(p.X-a.Path[k].X, p.Y-a.Path[k].Y) > 0.01 || math.Abs(slam.AngleDiff(p.Theta, a.Path[k].Theta)) > 0.005 {
				t.Errorf("frame %d (on the map): placed at %v, wide retry tried %v; want %v from the normal window", k, p, res[k].WideTried, a.Path[k])
			}
		case res[k].Matched:
			t.Errorf("frame %d (new ground) matched at %v, score %.2f", k, res[k].Pose, res[k].Score)
		case res[k].WideTried != (k <= 3 || k >= 9):
			t.Errorf("frame %d (new ground): wide retry tried %v, want %v", k, res[k].WideTried, k <= 3 || k >= 9)
		}
	}
}

// corridor simulates a 360-beam scan from (x, y, θ) in an endless corridor
// between the walls y = ±1 m, beyond the lidar's 8 m range in both
// directions: along the corridor nothing constrains a match.
func corridor(p slam.Pose2D) slam.LaserScan {
	s := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: 2 * math.Pi / 360, RangeMin: 0.05, RangeMax: 8, Ranges: make([]float32, 360)}
	for i := range s.Ranges {
		sn := math.Sin(p.Theta + s.BeamAngle(i))
		r := math.Inf(1)
		switch {
		case sn > 1e-9:
			r = (1 - p.Y) / sn
		case sn < -1e-9:
			r = (-1 - p.Y) / sn
		}
		if r >= s.RangeMax {
			r = math.Inf(1)
		}
		s.Ranges[i] = float32(r)
	}
	return s
}

// TestCorridorKeepsPriorAlongTheCorridor: the odometry claims 0.2 m more
// progress per step than the robot made, and every other frame 15 cm of
// sideways error. The
// front end corrects the sideways error (the walls constrain it) and,
// finding the scans unconstrained along the corridor, keeps the prior there
// instead of sliding to wherever a flat score peaks.
func TestCorridorKeepsPriorAlongTheCorridor(t *testing.T) {
	t.Parallel()
	var truth, odom []slam.Pose2D
	var scans []slam.LaserScan
	for k := range 10 {
		p := slam.Pose2D{X: 0.5 * float64(k), Y: 0.1 * math.Sin(float64(k))}
		truth = append(truth, p)
		odom = append(odom, slam.Pose2D{X: 0.7 * float64(k), Y: p.Y + 0.15*float64(k%2)})
		scans = append(scans, corridor(p))
	}
	est, res := track(t, odom, scans, localslam.Options{})
	degenerate := 0
	for k := 1; k < len(est); k++ {
		if res[k].Degenerate {
			degenerate++
		}
		// Across the corridor the estimate follows the truth.
		if d := math.Abs(est[k].Y - truth[k].Y); d > 0.05 {
			t.Errorf("frame %d: %.3f m off across the corridor (prior %.3f m)", k, d, math.Abs(odom[k].Y-truth[k].Y))
		}
		// Along it, each step keeps the odometry's increment.
		if d := (est[k].X - est[k-1].X) - (odom[k].X - odom[k-1].X); math.Abs(d) > 0.02 {
			t.Errorf("frame %d: step along the corridor changed by %.3f m", k, d)
		}
	}
	if degenerate < len(est)/2 {
		t.Errorf("%d of %d frames flagged degenerate", degenerate, len(est)-1)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	good := corridor(slam.Pose2D{})
	for _, o := range []localslam.Options{
		{Resolution: -1}, {Resolution: 5}, {WindowXY: math.NaN()}, {WindowTheta: 4}, {MinGain: 2}, {MaxCells: -1}, {UsableRange: math.Inf(1)},
		{WideXY: 0.2}, {WideTheta: 0.1}, {WideTheta: 1}, {WideXY: math.Inf(1)}, {WideMinScore: 0.1}, {WideMinScore: 1.5},
	} {
		if _, err := localslam.NewTracker(o); !errors.Is(err, slam.ErrInvalidArgument) {
			t.Errorf("options %+v: %v, want ErrInvalidArgument", o, err)
		}
	}
	for name, f := range map[string]localslam.Frame{
		"nan pose":   {Odom: slam.Pose2D{X: math.NaN()}, Scan: good},
		"huge pose":  {Odom: slam.Pose2D{Y: 1e12}, Scan: good},
		"no beams":   {Scan: slam.LaserScan{AngleIncrement: 0.01, RangeMax: 8}},
		"bad limits": {Scan: slam.LaserScan{AngleIncrement: 0.01, RangeMin: 5, RangeMax: 1, Ranges: []float32{1}}},
	} {
		_, err := localslam.Track([]localslam.Frame{{Scan: good}, f}, localslam.Options{})
		var fe *localslam.FrameError
		if !errors.Is(err, slam.ErrInvalidArgument) || !errors.As(err, &fe) || fe.Index != 1 {
			t.Errorf("%s: %v, want ErrInvalidArgument at frame 1", name, err)
		}
	}
	// Frames kilometres apart outgrow the working grid.
	far := []localslam.Frame{{Scan: good}, {Odom: slam.Pose2D{X: 5000}, Scan: good}}
	if _, err := localslam.Track(far, localslam.Options{}); !errors.Is(err, slam.ErrTooLarge) {
		t.Errorf("frames 5 km apart: %v, want ErrTooLarge", err)
	}
}

// BenchmarkTrackClutter runs the front end over 300 scans of random clutter
// (360 beams, 0.5–8.5 m) that fit nowhere: the worst case of the wide
// retry, which its back-off bounds. It reports the time per frame.
//
//	go test -run '^$' -bench TrackClutter ./internal/slam/localslam
func BenchmarkTrackClutter(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	frames := make([]localslam.Frame, 300)
	for k := range frames {
		s := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: 2 * math.Pi / 360, RangeMin: 0.1, RangeMax: 20, Ranges: make([]float32, 360)}
		for i := range s.Ranges {
			s.Ranges[i] = float32(0.5 + 8*r.Float64())
		}
		frames[k] = localslam.Frame{Odom: slam.Pose2D{X: 0.05 * float64(k)}, Scan: s}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := localslam.Track(frames, localslam.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames))/1e6, "ms/frame")
}

// FuzzTrack feeds the front end two frames of arbitrary poses, headers and
// ranges: it must never panic, must fail only with typed errors, and must
// keep the first frame's pose.
//
//	go test -run '^$' -fuzz '^FuzzTrack$' -fuzztime 10s ./internal/slam/localslam
func FuzzTrack(f *testing.F) {
	f.Add(0.0, 0.0, 0.0, 0.3, 0.1, 0.2, -math.Pi, 0.0175, 0.05, 8.0, []byte{0, 0, 128, 63, 0, 0, 192, 127, 0, 0, 0, 64})
	f.Add(1e9, -1e9, 1e9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, []byte{0, 0, 128, 255})
	f.Add(math.NaN(), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, []byte{1, 2, 3, 4})
	f.Add(0.0, 0.0, 0.0, 3.0, -2.0, 7.0, 0.0, 0.001, 0.0, 1000.0, []byte{0, 0, 122, 68, 0, 0, 128, 127})
	f.Fuzz(func(t *testing.T, x0, y0, th0, x1, y1, th1, amin, ainc, rmin, rmax float64, raw []byte) {
		s := slam.LaserScan{AngleMin: amin, AngleIncrement: ainc, RangeMin: rmin, RangeMax: rmax}
		for i := 0; i+4 <= len(raw) && len(s.Ranges) < 360; i += 4 {
			s.Ranges = append(s.Ranges, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		}
		// Both frames see the same ranges; a small grid keeps each run cheap.
		frames := []localslam.Frame{{Odom: slam.Pose2D{X: x0, Y: y0, Theta: th0}, Scan: s}, {Odom: slam.Pose2D{X: x1, Y: y1, Theta: th1}, Scan: s}}
		res, err := localslam.Track(frames, localslam.Options{Resolution: 0.5, UsableRange: 3, MaxCells: 1 << 16})
		if err != nil {
			if !errors.Is(err, slam.ErrInvalidArgument) && !errors.Is(err, slam.ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if res[0].Pose != frames[0].Odom {
			t.Fatalf("first pose moved from %v to %v", frames[0].Odom, res[0].Pose)
		}
		for _, r := range res {
			if err := r.Pose.Validate(); err != nil {
				t.Fatalf("estimate %v: %v", r.Pose, err)
			}
		}
	})
}

// BenchmarkTrackerAdd runs the front end over the 12 scans (360 beams each,
// 8 m range) of each agent of a synthetic office and reports the time per
// scan.
//
//	go test -run '^$' -bench TrackerAdd ./internal/slam/localslam
func BenchmarkTrackerAdd(b *testing.B) {
	w, err := world.Generate(world.Config{Seed: 3, Agents: 4})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var runs [][]localslam.Frame
	scans := 0
	for _, a := range w.Agents {
		odom := jitter(a.Path, r, 0.04, 2*math.Pi/180)
		fr := make([]localslam.Frame, len(a.Scans))
		for k := range fr {
			fr[k] = localslam.Frame{Odom: odom[k], Scan: a.Scans[k]}
		}
		runs = append(runs, fr)
		scans += len(fr)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, fr := range runs {
			if _, err := localslam.Track(fr, localslam.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scans)/1e6, "ms/scan")
}
