package slam

import (
	"fmt"
	"math"
)

// MaxBeams bounds the number of beams in one scan; real 2D lidars give a few
// thousand at most, and the bound keeps a malformed message from turning into
// minutes of ray casting.
const MaxBeams = 1 << 16

// LaserScan is one sweep of a 2D range sensor, laid out as in ROS
// sensor_msgs/LaserScan: beam i points at AngleMin + i*AngleIncrement
// (radians, in the sensor frame) and measured Ranges[i] metres.
//
// A range that is NaN, -Inf or below RangeMin is an invalid beam and is
// ignored. A range at or beyond RangeMax (including +Inf, "no return") is a
// max-range beam: it proves the space up to RangeMax is free but hit nothing.
type LaserScan struct {
	AngleMin       float64
	AngleIncrement float64
	RangeMin       float64
	RangeMax       float64
	Ranges         []float32
}

// Validate checks the scan header; individual ranges are never an error
// because real sensors produce garbage beams routinely.
func (s LaserScan) Validate() error {
	switch {
	case len(s.Ranges) == 0:
		return fmt.Errorf("%w: scan has no beams", ErrInvalidArgument)
	case len(s.Ranges) > MaxBeams:
		return fmt.Errorf("%w: scan has %d beams, more than %d", ErrInvalidArgument, len(s.Ranges), MaxBeams)
	case !finite(s.AngleMin) || !finite(s.AngleIncrement):
		return fmt.Errorf("%w: scan angles not finite", ErrInvalidArgument)
	case math.Abs(s.AngleMin) > 4*math.Pi || math.Abs(s.AngleIncrement) > 2*math.Pi:
		return fmt.Errorf("%w: scan angles out of range", ErrInvalidArgument)
	case s.AngleIncrement == 0 && len(s.Ranges) > 1:
		// Every beam in one direction is no sweep: a driver that leaves the
		// field unset, not a scan whose beams can be placed.
		return fmt.Errorf("%w: scan angle_increment is 0 for %d beams", ErrInvalidArgument, len(s.Ranges))
	case math.Abs(s.AngleIncrement)*float64(len(s.Ranges)-1) > 2*math.Pi+math.Abs(s.AngleIncrement)+1e-9:
		// No 2D lidar sweeps more than a turn (a full turn's driver may
		// repeat its first direction at the end: one increment of slack);
		// beyond it the header is wrong, most often degrees sent as radians.
		return fmt.Errorf("%w: scan spans %.4g rad over %d beams of %.4g rad, more than a full turn: angle_increment must be in radians", ErrInvalidArgument, math.Abs(s.AngleIncrement)*float64(len(s.Ranges)-1), len(s.Ranges), s.AngleIncrement)
	case !finite(s.RangeMin) || !finite(s.RangeMax) || s.RangeMin < 0 || s.RangeMax <= s.RangeMin:
		// %.6g: the limits arrive as float32, whose 0.1 is 0.10000000149… here.
		return fmt.Errorf("%w: scan range limits [%.6g, %.6g] invalid", ErrInvalidArgument, s.RangeMin, s.RangeMax)
	case s.RangeMax > 1000:
		return fmt.Errorf("%w: scan range_max %g m beyond 1000 m", ErrInvalidArgument, s.RangeMax)
	}
	return nil
}

// Returns counts the beams that hit something: a range in [RangeMin,
// RangeMax). The others are no-return beams (at or beyond RangeMax, +Inf)
// or invalid ones (NaN, -Inf, below RangeMin).
func (s LaserScan) Returns() int {
	n := 0
	for _, r := range s.Ranges {
		if v := float64(r); v >= s.RangeMin && v < s.RangeMax {
			n++
		}
	}
	return n
}

// BeamAngle returns the direction of beam i in the sensor frame.
func (s LaserScan) BeamAngle(i int) float64 {
	return s.AngleMin + float64(i)*s.AngleIncrement
}

// PosedScan is a scan and the pose of the sensor that took it, in the
// frame of the submap it was integrated into.
type PosedScan struct {
	Pose Pose2D
	Scan LaserScan
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
