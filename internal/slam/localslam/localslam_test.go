package localslam_test

import (
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
			frames := make([]localslam.Frame, len(a.Scans))
			for k := range frames {
				frames[k] = localslam.Frame{Odom: odom[k], Scan: a.Scans[k]}
			}
			res, err := localslam.Track(frames, localslam.Options{Resolution: w.Config.Resolution})
			if err != nil {
				t.Fatal(err)
			}
			est := make([]slam.Pose2D, len(res))
			matched := 0
			for k, fr := range res {
				est[k] = fr.Pose
				if fr.Matched {
					matched++
				}
			}
			pt, pr := trajErr(odom, a.Path)
			et, er := trajErr(est, a.Path)
			t.Logf("seed %d agent %d: prior %.3f m %.4f rad, front end %.3f m %.4f rad, matched %d/%d", seed, a.Index, pt, pr, et, er, matched, len(res))
			priorT += pt
			priorR += pr
			estT += et
			estR += er
			n++
		}
	}
	t.Logf("mean over %d agents: prior %.3f m %.4f rad, front end %.3f m %.4f rad", n, priorT/float64(n), priorR/float64(n), estT/float64(n), estR/float64(n))
}
