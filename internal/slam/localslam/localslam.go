// Package localslam is the local front end that builds an agent's submap
// from a stream of scans whose poses come from a noisy odometry: each scan is
// matched against the submap built from the scans before it, and inserted at
// the matched pose. The odometry serves only as the prior (the increment
// between consecutive frames predicts where the next scan was taken), so a
// jittery odometry still gives a sharp submap. It is the scan-to-submap
// matching of Cartographer's local SLAM (Hess et al. 2016, "Real-Time Loop
// Closure in 2D LIDAR SLAM", §IV: real-time correlative search around the
// prediction, then a nonlinear refinement on a smoothed map) with the
// Gauss-Newton refinement on a bilinearly interpolated map of Hector SLAM
// (Kohlbrecher et al. 2011, "A Flexible and Scalable SLAM System with Full
// 3D Motion Estimation", §IV.A). Per scan:
//
//  1. Prediction: the frame's odometry pose corrected by the smoothed
//     correction (estimate ∘ odometry⁻¹) of the frames before it; see
//     Tracker.updateCorrection. The first frame keeps its sent pose, so it
//     still defines the agent frame.
//  2. Correlative search (Olson 2009, "Real-Time Correlative Scan
//     Matching") on a coarse likelihood field (20 cm cells) over a small
//     window around the prediction (default ±0.35 m, ±12°), then on the fine
//     field (one map cell) around the best coarse candidates. Scores are
//     weighted by a wide Gaussian of the distance to the prediction, which
//     only decides between nearly equal peaks.
//  3. Gauss-Newton on the fine field, bilinearly interpolated, from the
//     best fine pose; it may polish that pose, not replace it.
//  4. Guards: too few points, a low score, a gain over the prediction's
//     score below MinGain, or a peak beyond the window keep the prediction;
//     when the translation is poorly constrained (a corridor: the surface
//     normals of the scan all point one way, see weakDirection), the
//     correction along that direction is dropped and the prediction kept
//     there. A correction never exceeds the window (the wide one, step 5).
//  5. A wide retry: when no pose of the window fits (a low score, or the
//     best on its edge), the prediction may be farther off than the
//     window, as one odometry pose of a real log now and then is (intel's
//     ODOM lines jitter by up to 21° from one reading to the next, MIT
//     CSAIL's by 6.5° at the median). The search runs again over ±WideXY,
//     ±WideTheta under the same gates, and a match there must score
//     WideMinScore. Before the retry such a frame kept its prediction: its
//     scan was drawn 15–30° off, the scans after it locked onto that
//     ghost, and the agent's frame came out turned against its first scan
//     by as much, which an anchor passes on to the whole team map
//     (docs/slam.md). After three fruitless retries in a row the next
//     frames skip it until one fits again: scans that fit nowhere (new
//     ground, clutter) would each pay a search ten times the normal one.
//  6. Insertion with the inverse sensor model (grid.Inserter), and an
//     incremental update of the likelihood fields: each newly occupied cell
//     stamps its kernel (a lookup table) into both fields; the fields are
//     rebuilt from scratch every RebuildEvery frames so that cells cleared
//     since (people walking by) stop attracting scans.
//
// Only the poses are the output: the caller integrates the scans at them
// into a submap sized to what they observed (see slamproto.BuildSubmap).
package localslam

import (
	"fmt"
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Defaults of Options. The windows cover the step-to-step jitter measured on
// the real CARMEN ODOM lines against the corrected trajectory (intel: up to
// 0.23 m and 7.4° per keyframe step, see docs/slam.md) with margin.
const (
	DefaultResolution  = 0.05
	DefaultWindowXY    = 0.35               // metres, ± around the prediction
	DefaultWindowTheta = 12 * math.Pi / 180 // radians, ± around the prediction
	DefaultMinScore    = 0.15               // mean fine likelihood of the scan points
	DefaultMinPoints   = 20                 // scan points after thinning
	DefaultMinGain     = 0.04               // score gain over the prediction
	// DefaultWideMinScore: with 0.3 the front end placed Intel's and
	// CSAIL-like agent frames as well as with no such gate; with 0.45 or
	// more it refused right matches there and the frames turned more
	// (docs/slam.md, "Odometry as bad as MIT CSAIL's").
	DefaultWideMinScore = 0.3
	// DefaultDegeneracy is the smallest ratio of the eigenvalues of the
	// scan's normal matrix Σ n·nᵀ for which both translation directions
	// count as constrained (see weakDirection).
	DefaultDegeneracy = 0.08
	// DefaultMaxCells bounds the working grid (a 100 m square at 5 cm).
	DefaultMaxCells = 1 << 22
	// DefaultWideXY and DefaultWideTheta are the wide retry's window: the
	// worst single-pose heading glitches of the real logs (intel 20.7°,
	// SOURCES.md's MIT CSAIL 38° over a whole log) with the 0.35 m
	// window's margin, more than doubled in x and y for the lever of a
	// turned step.
	DefaultWideXY    = 0.8                // metres, ± around the prediction
	DefaultWideTheta = 35 * math.Pi / 180 // radians, ± around the prediction
	// RebuildEvery is how many frames pass between full rebuilds of the
	// likelihood fields.
	RebuildEvery = 16
)

// Options tune the front end; zero fields select the defaults.
type Options struct {
	Resolution  float64 // metres per cell of the working submap
	UsableRange float64 // no-return beams clear up to here, and only hits within it are matched (0: grid.DefaultUsableRange)
	WindowXY    float64 // search half-width in x and y around the prediction, metres
	WindowTheta float64 // search half-width in heading, radians
	WideXY      float64 // the wide retry's half-width in x and y, metres (≥ WindowXY)
	WideTheta   float64 // the wide retry's half-width in heading, radians (≥ WindowTheta)
	MinScore    float64 // lower best score: keep the prediction
	// WideMinScore is the least score of a match found by the wide retry
	// (≥ MinScore): a wider window offers more wrong peaks.
	WideMinScore float64
	// MinGain is how much the match must raise the score over the
	// prediction's to replace it. Scan-to-submap matching has an error of
	// its own (a few mm and a few 0.1°, from the map's cells): a correction
	// the score cannot tell from the prediction would only add that error,
	// and over hundreds of scans of a good odometry it adds up to drift.
	MinGain    float64
	MinPoints  int     // fewer matchable points: keep the prediction
	Degeneracy float64 // eigenvalue ratio below which a translation direction is unconstrained
	MaxCells   int64   // working-grid cell limit: slam.ErrTooLarge beyond it
}

func (o Options) withDefaults() (Options, error) {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Resolution, DefaultResolution)
	def(&o.UsableRange, grid.DefaultUsableRange)
	def(&o.WindowXY, DefaultWindowXY)
	def(&o.WindowTheta, DefaultWindowTheta)
	def(&o.MinScore, DefaultMinScore)
	def(&o.MinGain, DefaultMinGain)
	def(&o.Degeneracy, DefaultDegeneracy)
	if o.MinPoints == 0 {
		o.MinPoints = DefaultMinPoints
	}
	if o.MaxCells == 0 {
		o.MaxCells = DefaultMaxCells
	}
	def(&o.WideMinScore, max(DefaultWideMinScore, o.MinScore))
	def(&o.WideXY, max(DefaultWideXY, o.WindowXY))
	def(&o.WideTheta, max(DefaultWideTheta, o.WindowTheta))
	for _, v := range []float64{o.Resolution, o.UsableRange, o.WindowXY, o.WindowTheta, o.WideXY, o.WideTheta, o.MinScore, o.WideMinScore, o.MinGain, o.Degeneracy} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return o, fmt.Errorf("%w: front-end options must be finite and not negative", slam.ErrInvalidArgument)
		}
	}
	switch {
	case o.Resolution < 1e-3 || o.Resolution > 1:
		return o, fmt.Errorf("%w: front-end resolution %g m outside [0.001, 1]", slam.ErrInvalidArgument, o.Resolution)
	case o.WideXY > 2 || o.WideTheta > math.Pi/4 || o.UsableRange > 1000:
		return o, fmt.Errorf("%w: front-end window beyond ±2 m / ±45°, or usable range beyond 1000 m", slam.ErrInvalidArgument)
	case o.WideXY < o.WindowXY || o.WideTheta < o.WindowTheta:
		return o, fmt.Errorf("%w: front-end wide window ±%g m / ±%g rad narrower than the window ±%g m / ±%g rad", slam.ErrInvalidArgument, o.WideXY, o.WideTheta, o.WindowXY, o.WindowTheta)
	case o.MinPoints < 0 || o.MaxCells < 0 || o.MaxCells > grid.MaxCells || o.Degeneracy > 1 || o.MinScore > 1 || o.WideMinScore > 1 || o.WideMinScore < o.MinScore || o.MinGain > 1:
		return o, fmt.Errorf("%w: front-end options out of range", slam.ErrInvalidArgument)
	}
	return o, nil
}

// Frame is one scan with the odometry pose (the sensor pose in the agent's
// start frame) it was taken at.
type Frame struct {
	Odom slam.Pose2D
	Scan slam.LaserScan
}

// FrameResult says where the front end put one frame and why.
type FrameResult struct {
	Pose       slam.Pose2D // estimated sensor pose in the agent frame
	Prior      slam.Pose2D // the prediction: smoothed correction ∘ odometry pose
	Matched    bool        // false: the prediction was kept (first frame, too few points, low score or gain, beyond the wide window)
	Degenerate bool        // one translation direction was unconstrained: the prediction was kept along it
	Score      float64     // mean interpolated likelihood of the scan points at Pose (0 when not matched)
	PriorScore float64     // the same at Prior (0 when no match was tried)
	Wide       bool        // matched by the wide retry: the prediction was off by more than the window
	WideTried  bool        // the wide retry ran (skipped after three fruitless ones in a row, until a frame fits again)
}

// Track runs a new Tracker over frames and returns one result per frame.
// Errors wrap slam.ErrInvalidArgument (bad options, poses or scan headers,
// reported with the frame index) or slam.ErrTooLarge.
func Track(frames []Frame, opts Options) ([]FrameResult, error) {
	t, err := NewTracker(opts)
	if err != nil {
		return nil, err
	}
	out := make([]FrameResult, len(frames))
	for k, f := range frames {
		r, err := t.Add(f)
		if err != nil {
			return nil, &FrameError{Index: k, Err: err}
		}
		out[k] = r
	}
	return out, nil
}

// FrameError locates an error at a frame of Track's input.
type FrameError struct {
	Index int
	Err   error
}

// Error names the frame.
func (e *FrameError) Error() string { return fmt.Sprintf("frame %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *FrameError) Unwrap() error { return e.Err }

// Tracker is the front end's state for one agent: the working submap, its
// likelihood fields and the last estimate. It is not safe for concurrent use.
type Tracker struct {
	opts Options
	ins  grid.Inserter

	m    *localMap
	n    int         // frames added
	corr slam.Pose2D // smoothed correction estimate ∘ odometry⁻¹
	// wideMisses counts the wide retries in a row that found nothing.
	wideMisses int

	beams    grid.Beams // directions of the scan geometry, for points and stamping
	pts      []point    // scratch: matchable points of the current scan, sensor frame
	scores   []float32  // scratch: correlative scores
	weighted []float64  // scratch: prior-weighted coarse scores
}

// NewTracker validates opts and returns an empty tracker.
func NewTracker(opts Options) (*Tracker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Tracker{opts: o, ins: grid.Inserter{UsableRange: o.UsableRange}}, nil
}

// Add estimates the pose of f's scan, inserts the scan there and returns
// the estimate. A failing frame (bad pose or header, working grid too
// large) leaves the tracker as it was.
func (t *Tracker) Add(f Frame) (FrameResult, error) {
	if err := f.Odom.Validate(); err != nil {
		return FrameResult{}, fmt.Errorf("odometry pose: %w", err)
	}
	if err := f.Scan.Validate(); err != nil {
		return FrameResult{}, fmt.Errorf("scan: %w", err)
	}
	res := FrameResult{Pose: f.Odom, Prior: f.Odom}
	if t.n > 0 {
		res.Prior = t.corr.Compose(f.Odom)
		res.Pose = res.Prior
		if err := res.Prior.Validate(); err != nil {
			return FrameResult{}, fmt.Errorf("predicted pose: %w", err)
		}
		t.match(f.Scan, &res)
	}
	b, err := t.ins.Observed(res.Pose, f.Scan)
	if err != nil {
		return FrameResult{}, err
	}
	if err := t.ensure(b); err != nil {
		return FrameResult{}, err
	}
	if _, err := t.ins.Integrate(t.m.g, res.Pose, f.Scan); err != nil {
		return FrameResult{}, err
	}
	t.n++
	t.updateCorrection(res.Pose.Compose(f.Odom.Inverse()))
	if t.n%RebuildEvery == 0 {
		t.m.rebuild()
	} else {
		t.stampHits(res.Pose, f.Scan)
	}
	return res, nil
}

// ensure grows the working map so that b lies inside it.
func (t *Tracker) ensure(b grid.Bounds) error {
	if t.m != nil && t.m.contains(b) {
		return nil
	}
	m, err := growMap(t.m, b, t.opts.Resolution, t.opts.MaxCells)
	if err != nil {
		return err
	}
	t.m = m
	return nil
}

// stampHits marks the end cells of the scan's returned beams in the fields
// when they have just become occupied. The end cell is computed as
// grid.Inserter.Integrate computes it; a cell missed here (rounding) is
// caught by the next rebuild.
func (t *Tracker) stampHits(pose slam.Pose2D, scan slam.LaserScan) {
	m := t.m
	meta := m.g.Meta()
	cos, sin := t.beams.For(scan)
	ps, pc := math.Sincos(pose.Theta)
	for i, r := range scan.Ranges {
		rr := float64(r)
		if !(rr >= scan.RangeMin && rr < scan.RangeMax) {
			continue
		}
		x := pose.X + rr*(pc*cos[i]-ps*sin[i])
		y := pose.Y + rr*(ps*cos[i]+pc*sin[i])
		cx, cy, ok := meta.CellOf(x, y)
		if ok {
			m.stampIfOccupied(cx, cy)
		}
	}
}

// correctionGain is the weight of the newest frame's correction in the
// smoothed one (see Tracker.updateCorrection). 0.3 against 0.5 and 1 (the
// plain increment) was the best of the three on the real missions, both for
// the jittery odomline poses and for leaving corrected poses alone
// (docs/slam.md).
const correctionGain = 0.3

// updateCorrection blends c, the correction the newest frame needed
// (estimate ∘ odometry⁻¹, the map→odom transform of ROS), into the smoothed
// correction that predicts the next frame. With gain 1 the prediction would
// be the previous estimate composed with the odometry increment; but the
// jitter of an online pose estimate is mostly independent from frame to
// frame, and then the last frame's correction carries that frame's own
// jitter (a heading error of 3° on a 1 m step puts the next prediction 5 cm
// off) into the next prediction. The blend follows a drifting odometry
// within a frame or two and keeps a single glitch from propagating.
func (t *Tracker) updateCorrection(c slam.Pose2D) {
	if t.n == 1 {
		t.corr = c
		return
	}
	a := correctionGain
	t.corr = slam.Pose2D{
		X:     t.corr.X + a*(c.X-t.corr.X),
		Y:     t.corr.Y + a*(c.Y-t.corr.Y),
		Theta: slam.NormalizeAngle(t.corr.Theta + a*slam.AngleDiff(c.Theta, t.corr.Theta)),
	}
}
