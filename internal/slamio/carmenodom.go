package slamio

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/slammesh/slammesh/internal/slam"
)

// odomIndex gives the robot's odometry pose at a reading's time. CARMEN
// loggers write the odometry a scan was taken at with the scan's own
// timestamp, but not always in timestamp order (the logs of
// ../shared/realdata put it right before the FLASER line, among others), and
// not always at the laser's rate, so the search is by time, not by position,
// and a reading between two ODOM lines gets the pose between them.
type odomIndex struct {
	byTime []Odom
}

func newOdomIndex(odom []Odom) odomIndex {
	s := append([]Odom(nil), odom...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Time < s[j].Time })
	return odomIndex{byTime: s}
}

// nearest returns the ODOM record closest in time to t (ties go to the
// earlier line); ok is false when the log has none.
func (x odomIndex) nearest(t float64) (Odom, bool) {
	s := x.byTime
	if len(s) == 0 {
		return Odom{}, false
	}
	i := sort.Search(len(s), func(i int) bool { return s[i].Time >= t })
	switch {
	case i == len(s):
		return s[len(s)-1], true
	case i == 0:
		return s[0], true
	}
	// s[i-1].Time < t <= s[i].Time; among equal timestamps take the first.
	if t-s[i-1].Time < s[i].Time-t {
		return s[i-1], true
	}
	return s[i], true
}

// at returns the robot's odometry pose at time t: an ODOM line's pose when
// one has t's timestamp, else interpolated between the lines just before
// and just after t (linearly in x and y, along the shorter arc in theta),
// the motion between two odometry readings being the shortest one. Outside
// the log's ODOM lines, or between two lines more than 2·MaxOdomGap apart,
// it is the nearest line's pose: no extrapolation, no guess across a gap.
// The log must have an ODOM line (CarmenAgents checks).
func (x odomIndex) at(t float64) slam.Pose2D {
	s := x.byTime
	i := sort.Search(len(s), func(i int) bool { return s[i].Time >= t })
	if i == 0 || i == len(s) || s[i].Time == t || s[i].Time-s[i-1].Time > 2*MaxOdomGap {
		o, _ := x.nearest(t)
		return o.Pose
	}
	a, b := s[i-1].Pose, s[i].Pose
	f := (t - s[i-1].Time) / (s[i].Time - s[i-1].Time)
	return slam.Pose2D{
		X:     a.X + f*(b.X-a.X),
		Y:     a.Y + f*(b.Y-a.Y),
		Theta: slam.NormalizeAngle(a.Theta + f*slam.AngleDiff(b.Theta, a.Theta)),
	}
}

// Mount is where the laser sits on the robot: the laser's pose in the robot
// frame (robot_from_laser; x forward, y left, metres; theta radians). An
// ODOM line is the robot's pose, so a scan's pose from odometry is the
// odometry composed with the mount.
type Mount struct {
	Pose slam.Pose2D
	// Source says where Pose came from, for the user: the laser lines, the
	// log's PARAM robot_frontlaser_* values, or neither (the identity).
	Source string
}

// Tolerances within which the laser lines must agree on the mount for it
// to be read from them: a mount is rigid, and the lines' poses are written
// with a millimetre or so of rounding. Lines that disagree by more carry
// poses of two frames (a corrected laser pose beside raw odometry), unless
// they are a few glitched lines among many: mountAgree of the lines must
// agree.
const (
	mountTolM   = 0.01
	mountTolRad = 0.5 * math.Pi / 180
	mountAgree  = 0.95
)

// CARMEN's parameters of the front laser's mount (carmen.ini: robot
// module), read when the laser lines do not give it.
const (
	paramFrontLaserOffset     = "robot_frontlaser_offset"
	paramFrontLaserSide       = "robot_frontlaser_side_offset"
	paramFrontLaserAngularOff = "robot_frontlaser_angular_offset"
)

// LaserMount returns where the front laser sits on the robot, for poses
// built from ODOM lines. Every FLASER and ROBOTLASER1 line carries the
// laser's pose and the robot's (Reading.Laser, Reading.Robot): when their
// offset Robot⁻¹∘Laser is the same on 95 % of the lines (within 1 cm and
// 0.5° of its median) it is the mount — in the corrected logs of
// ../shared/realdata the two poses are equal, so it is the identity. When
// the lines disagree, their two poses are in different frames, and the
// mount is the log's PARAM robot_frontlaser_offset, _side_offset and
// _angular_offset (metres, metres, radians; a value that is not a finite
// number of at most 10 is named and left out), else the identity; Source
// says which.
func (l *Log) LaserMount() Mount {
	if m, ok := mountFromLines(l.Readings); ok {
		return Mount{Pose: m, Source: "the laser lines' laser and robot poses"}
	}
	var p slam.Pose2D
	found := false
	var unusable []string
	for _, f := range []struct {
		name string
		v    *float64
	}{
		{paramFrontLaserOffset, &p.X}, {paramFrontLaserSide, &p.Y}, {paramFrontLaserAngularOff, &p.Theta},
	} {
		s, ok := l.Params[f.name]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 10 {
			unusable = append(unusable, fmt.Sprintf("%s %q", f.name, s))
			continue
		}
		*f.v, found = v, true
	}
	skipped := ""
	if len(unusable) > 0 {
		skipped = fmt.Sprintf(" (unusable, left out: PARAM %s)", strings.Join(unusable, ", "))
	}
	if found {
		p.Theta = slam.NormalizeAngle(p.Theta)
		return Mount{Pose: p, Source: "PARAM robot_frontlaser_*" + skipped}
	}
	why := "no PARAM robot_frontlaser_* is given"
	if skipped != "" {
		why = "no PARAM robot_frontlaser_* is usable" + skipped
	}
	return Mount{Source: fmt.Sprintf("none: the laser lines' laser and robot poses differ by more than %g cm or %g° from line to line, and %s", mountTolM*100, mountTolRad*180/math.Pi, why)}
}

// mountFromLines returns the component-wise median of the readings'
// Robot⁻¹∘Laser, and whether mountAgree of the readings lie within the
// mount tolerances of it. A median of exact zeros (the poses equal on
// every line) is exactly the identity.
func mountFromLines(rs []Reading) (slam.Pose2D, bool) {
	if len(rs) == 0 {
		return slam.Pose2D{}, false
	}
	xs, ys, ts := make([]float64, len(rs)), make([]float64, len(rs)), make([]float64, len(rs))
	for i, r := range rs {
		m := r.Robot.Inverse().Compose(r.Laser)
		if r.Robot == r.Laser {
			m = slam.Pose2D{}
		}
		xs[i], ys[i], ts[i] = m.X, m.Y, m.Theta
	}
	// Angles near ±π are taken relative to the first, so the median does
	// not straddle the wrap.
	ref := ts[0]
	for i := range ts {
		ts[i] = slam.AngleDiff(ts[i], ref)
	}
	dt := median(ts)
	med := slam.Pose2D{X: median(xs), Y: median(ys), Theta: slam.NormalizeAngle(ref + dt)}
	agree := 0
	for i := range xs {
		if math.Hypot(xs[i]-med.X, ys[i]-med.Y) <= mountTolM && math.Abs(ts[i]-dt) <= mountTolRad {
			agree++
		}
	}
	return med, float64(agree) >= mountAgree*float64(len(xs))
}

// median returns the median of v (the lower middle of an even count),
// leaving v as it is: its order pairs it with other slices.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
