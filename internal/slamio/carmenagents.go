package slamio

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Segment is an inclusive range of reading indices (Reading.Index) that
// becomes one agent.
type Segment struct{ First, Last int }

// ParseSegments reads "6:35,120:149,300:329": comma-separated inclusive
// FIRST:LAST reading ranges, 0-based, one agent each.
func ParseSegments(s string) ([]Segment, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no segments: want FIRST:LAST[,FIRST:LAST...], e.g. 6:35,120:149")
	}
	var out []Segment
	for _, part := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("segment %q: want FIRST:LAST", part)
		}
		first, err1 := strconv.Atoi(a)
		last, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || first < 0 || last < first {
			return nil, fmt.Errorf("segment %q: want FIRST:LAST with 0 <= FIRST <= LAST", part)
		}
		out = append(out, Segment{First: first, Last: last})
	}
	return out, nil
}

// PoseSource picks which pose of a reading becomes its scan's odom_pose.
type PoseSource string

const (
	// PosesLaser uses the pose on the laser line itself (FLASER x y theta,
	// ROBOTLASER1 laser_pose). In a corrected log that is the SLAM result,
	// as if each robot ran a perfect local SLAM.
	PosesLaser PoseSource = "laser"
	// PosesOdom uses the ODOM lines: the robot's own running estimate (in
	// the logs of ../shared/realdata a jittery online estimate, not raw
	// wheel odometry) at the reading's time, interpolated between the lines
	// around it, with the laser's mount on the robot (Log.LaserMount).
	PosesOdom PoseSource = "odom"
)

// GuessSource picks the initial guesses of the non-anchor agents.
type GuessSource string

const (
	// GuessLaser: each agent's guess is the laser-line pose of its first
	// reading (in a corrected log, the truth).
	GuessLaser GuessSource = "laser"
	// GuessOdom: the anchor's first laser-line pose chained with the
	// odometry from the anchor's first reading to the agent's (laser poses,
	// as PosesOdom makes them), the guess a team has when its robots share
	// an odometry frame.
	GuessOdom GuessSource = "odom"
	// GuessNone sends no guess: localization searches the whole map.
	GuessNone GuessSource = "none"
)

// CarmenOptions say how CarmenAgents cuts a log into agents.
type CarmenOptions struct {
	// Segments are the reading ranges, one agent each; the first is the
	// anchor.
	Segments []Segment
	// AgentIDs name the agents; empty means robot-0, robot-1, ...
	AgentIDs []string
	// Poses is the pose source of the scans; empty means PosesLaser.
	Poses PoseSource
	// Guesses is the guess source of the non-anchors; empty means the one
	// matching Poses (laser or odom).
	Guesses GuessSource
	// Stride keeps every Stride-th reading of a segment; 0 means 1.
	Stride int
	// KeyframeDist (m) and KeyframeAngle (rad), when either is > 0, keep a
	// reading only once the pose moved that far or turned that much since
	// the last kept one (the first reading is always kept). They apply
	// after Stride.
	KeyframeDist, KeyframeAngle float64
	// RangeMin and RangeMax (m) are sent as the scans' limits: readings at
	// or beyond RangeMax are no-return beams. ROBOTLASER1's own
	// maximum_range lowers RangeMax when it is smaller.
	RangeMin, RangeMax float64
}

// Default range limits: 0.1 m is below any laser's dead zone; 20 m keeps
// the SICK LMS's 81.83 m no-return code (and the long noisy returns through
// windows) out of the map, and is the usable range of an indoor map.
const (
	DefaultRangeMin = 0.1
	DefaultRangeMax = 20.0
)

// MaxOdomGap is how far in time (seconds) the ODOM line used for a reading
// may lie from it: a robot at 1 m/s moves a metre in that time, so an older
// pose is no pose for the scan.
const MaxOdomGap = 1.0

// CarmenAgents builds one agent per segment. Each agent's frame is the
// sensor pose of its first kept reading (its first scan's odom_pose is the
// identity), and every scan's odom_pose is the chosen pose source
// re-expressed in that frame. The first segment is the anchor: its guess is
// the laser-line pose of its first reading, exact in the log's frame, which
// thereby becomes the mission's map frame. A segment past the log's end, an
// agent without readings after keyframing, segments that overlap, a
// negative stride or keyframe threshold, or odometry (PosesOdom,
// GuessOdom) from a log without an ODOM line within MaxOdomGap of every
// reading used is an error.
func CarmenAgents(log *Log, opts CarmenOptions) ([]*typesv1.Agent, error) {
	if len(opts.Segments) == 0 {
		return nil, errors.New("no segments")
	}
	ids, err := agentIDs(opts.AgentIDs, len(opts.Segments))
	if err != nil {
		return nil, err
	}
	if opts.Poses == "" {
		opts.Poses = PosesLaser
	}
	if opts.Guesses == "" {
		opts.Guesses = GuessSource(opts.Poses)
	}
	if opts.Poses != PosesLaser && opts.Poses != PosesOdom {
		return nil, fmt.Errorf("pose source %q: want laser or odom", opts.Poses)
	}
	if opts.Guesses != GuessLaser && opts.Guesses != GuessOdom && opts.Guesses != GuessNone {
		return nil, fmt.Errorf("guess source %q: want laser, odom or none", opts.Guesses)
	}
	if err := checkSegments(opts.Segments); err != nil {
		return nil, err
	}
	if opts.Stride < 0 || !(opts.KeyframeDist >= 0) || !(opts.KeyframeAngle >= 0) || math.IsInf(opts.KeyframeDist, 0) || math.IsInf(opts.KeyframeAngle, 0) {
		return nil, fmt.Errorf("stride %d, keyframe distance %g m, keyframe angle %g rad: want stride >= 0 and finite thresholds >= 0", opts.Stride, opts.KeyframeDist, opts.KeyframeAngle)
	}
	if opts.RangeMin == 0 && opts.RangeMax == 0 {
		opts.RangeMin, opts.RangeMax = DefaultRangeMin, DefaultRangeMax
	}
	if !(opts.RangeMin >= 0 && opts.RangeMax > opts.RangeMin) || math.IsInf(opts.RangeMax, 0) {
		return nil, fmt.Errorf("range limits %g..%g m: want 0 <= min < max", opts.RangeMin, opts.RangeMax)
	}
	needOdom := opts.Poses == PosesOdom || opts.Guesses == GuessOdom
	odom := newOdomIndex(log.Odom)
	if needOdom && len(log.Odom) == 0 {
		return nil, fmt.Errorf("%s has no ODOM lines: use the laser poses", log.Name)
	}
	if needOdom {
		for _, seg := range opts.Segments {
			for i := seg.First; i <= seg.Last && i < len(log.Readings); i++ {
				r := &log.Readings[i]
				if o, _ := odom.nearest(r.Time); math.Abs(o.Time-r.Time) > MaxOdomGap {
					return nil, fmt.Errorf("%s:%d: reading %d at t=%g s: the nearest ODOM line (line %d) is %.3g s away, more than %g s: use the laser poses",
						log.Name, r.Line, r.Index, r.Time, o.Line, math.Abs(o.Time-r.Time), MaxOdomGap)
				}
			}
		}
	}
	// odomLaser is a reading's laser pose from odometry: the robot's pose
	// at the reading's time with the laser's mount on the robot.
	var mount slam.Pose2D
	if needOdom {
		mount = log.LaserMount().Pose
	}
	odomLaser := func(r *Reading) slam.Pose2D {
		p := odom.at(r.Time)
		if mount == (slam.Pose2D{}) {
			return p // exactly the odometry, not p∘identity's rounding
		}
		return p.Compose(mount)
	}
	poseOf := func(r *Reading) slam.Pose2D {
		if opts.Poses == PosesOdom {
			return odomLaser(r)
		}
		return r.Laser
	}

	agents := make([]*typesv1.Agent, len(opts.Segments))
	var anchorFirst *Reading
	for k, seg := range opts.Segments {
		if seg.Last >= len(log.Readings) {
			damage := ""
			if log.Damage != nil {
				damage = fmt.Sprintf(" before its damage (%v)", log.Damage)
			}
			return nil, fmt.Errorf("segment %d:%d: %s has readings 0..%d%s", seg.First, seg.Last, log.Name, len(log.Readings)-1, damage)
		}
		kept := keyframes(log.Readings[seg.First:seg.Last+1], poseOf, opts)
		first := kept[0]
		frame := poseOf(first).Inverse()
		a := &typesv1.Agent{AgentId: ids[k], Anchor: k == 0, Scans: make([]*typesv1.ScanFrame, len(kept))}
		for i, r := range kept {
			pose := slam.Pose2D{} // exactly the identity, not p⁻¹∘p's rounding
			if i > 0 {
				pose = frame.Compose(poseOf(r))
			}
			a.Scans[i] = &typesv1.ScanFrame{OdomPose: slamproto.PoseToProto(pose), Scan: scanOf(r, opts)}
		}
		switch {
		case k == 0:
			anchorFirst = first
			a.InitialGuess = slamproto.PoseToProto(first.Laser)
		case opts.Guesses == GuessLaser:
			a.InitialGuess = slamproto.PoseToProto(first.Laser)
		case opts.Guesses == GuessOdom:
			a.InitialGuess = slamproto.PoseToProto(anchorFirst.Laser.Compose(odomLaser(anchorFirst).Inverse().Compose(odomLaser(first))))
		}
		agents[k] = a
	}
	return agents, nil
}

// checkSegments refuses segments that share readings: two agents built of
// the same scans are no team, and an overlap is nearly always a typo in the
// reading ranges.
func checkSegments(segs []Segment) error {
	for i, a := range segs {
		if a.First < 0 || a.Last < a.First {
			return fmt.Errorf("segment %d:%d: want 0 <= FIRST <= LAST", a.First, a.Last)
		}
		for _, b := range segs[:i] {
			if a.First <= b.Last && b.First <= a.Last {
				return fmt.Errorf("segments %d:%d and %d:%d overlap (readings %d..%d would be in two agents)",
					b.First, b.Last, a.First, a.Last, max(a.First, b.First), min(a.Last, b.Last))
			}
		}
	}
	return nil
}

// keyframes applies the stride and the motion threshold to one segment's
// readings; the first reading is always kept.
func keyframes(rs []Reading, poseOf func(*Reading) slam.Pose2D, opts CarmenOptions) []*Reading {
	stride := max(opts.Stride, 1)
	var kept []*Reading
	var last slam.Pose2D
	for i := 0; i < len(rs); i += stride {
		r := &rs[i]
		p := poseOf(r)
		if len(kept) > 0 && (opts.KeyframeDist > 0 || opts.KeyframeAngle > 0) {
			moved := math.Hypot(p.X-last.X, p.Y-last.Y)
			turned := math.Abs(slam.AngleDiff(p.Theta, last.Theta))
			if !(opts.KeyframeDist > 0 && moved >= opts.KeyframeDist) && !(opts.KeyframeAngle > 0 && turned >= opts.KeyframeAngle) {
				continue
			}
		}
		kept = append(kept, r)
		last = p
	}
	return kept
}

// scanOf converts a reading's sweep, with the mission's range limits.
func scanOf(r *Reading, opts CarmenOptions) *typesv1.LaserScan {
	rangeMax := opts.RangeMax
	if r.MaxRange > 0 && r.MaxRange < rangeMax {
		rangeMax = r.MaxRange
	}
	return &typesv1.LaserScan{
		AngleMin:       float32(r.AngleMin),
		AngleIncrement: float32(r.AngleIncrement),
		RangeMin:       float32(opts.RangeMin),
		RangeMax:       float32(rangeMax),
		Ranges:         r.Ranges,
	}
}

// agentIDs returns the given ids (checked like the API checks them) or
// robot-0..robot-(n-1).
func agentIDs(given []string, n int) ([]string, error) {
	if len(given) == 0 {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = "robot-" + strconv.Itoa(i)
		}
		return ids, nil
	}
	if len(given) != n {
		return nil, fmt.Errorf("%d agent ids for %d agents", len(given), n)
	}
	seen := map[string]bool{}
	for _, id := range given {
		if err := CheckAgentID(id); err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("agent id %q given twice", id)
		}
		seen[id] = true
	}
	return given, nil
}

// CheckAgentID applies the API's rule for agent ids (types.proto): 1..64
// characters of [A-Za-z0-9_.-]. Checking here gives a file-based user the
// error before a request is sent.
func CheckAgentID(id string) error {
	if id == "" || len(id) > slamproto.MaxAgentIDLen {
		return fmt.Errorf("agent id %q: want 1..%d characters", id, slamproto.MaxAgentIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("agent id %q: only [A-Za-z0-9_.-] allowed", id)
		}
	}
	return nil
}
