package slamproto

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/localslam"
)

// SubmapOptions tune how an agent's scans become its submap; the zero value
// is what the services use.
type SubmapOptions struct {
	// UsableRange (metres; 0: grid.DefaultUsableRange) bounds the free space
	// a no-return beam clears, and so the submap's extent (see
	// grid.Inserter).
	UsableRange float64
	// OdometryOnly integrates every scan at its sent pose, without the
	// local front end (localslam): for poses already corrected by a SLAM
	// system, and to measure what the front end changes.
	OdometryOnly bool
	// FrontEnd tunes the local front end; its UsableRange is taken from
	// UsableRange.
	FrontEnd localslam.Options
	// MinSharpening (0: DefaultMinSharpening; in (0, 1)) is the fraction of
	// occupied cells the front end's submap must save over the submap at
	// the sent poses to be used instead of it.
	MinSharpening float64
}

// DefaultMinSharpening: the front end's submap replaces the one at the sent
// poses only when it has at least 7 % fewer occupied cells, i.e. when the
// sent poses visibly smear the walls. On the real missions the jittery
// odomline poses give 10–21 % (docs/slam.md), while on the corrected
// trajectories the front end changes the count by −3.0 … +0.8 %: there the
// sent poses are already as consistent as the matcher can tell, and the
// matcher's own small errors would only add drift.
const DefaultMinSharpening = 0.07

// SubmapInfo says how BuildSubmap placed the scans.
type SubmapInfo struct {
	Scans            []slam.LaserScan // the scans, decoded, in order
	Poses            []slam.Pose2D    // the pose each scan was inserted at
	FrontEnd         bool             // Poses are the front end's (else the sent ones)
	FrontEndPoses    []slam.Pose2D    // the front end's poses, used or not (nil with OdometryOnly)
	OccupiedSent     int              // occupied cells of the submap at the sent poses
	OccupiedFrontEnd int              // occupied cells of the front end's submap (0 with OdometryOnly)
}

// frontEndMaxCells bounds the front end's working grid: the submap limit
// plus the working grid's growth margin.
const frontEndMaxCells = 2 * MaxSubmapCells

// BuildSubmap turns scans, each with its sent (odometry) pose in the agent's
// start frame, into a submap of resolution res in that frame, and says how
// it placed them.
//
// By default the poses are estimated by the local front end (localslam:
// incremental scan-to-submap matching with the sent poses as the prior;
// the first scan keeps its sent pose, so the agent frame is unchanged), and
// its submap is used when it is sharper than the one at the sent poses by
// MinSharpening; otherwise the sent poses stand. Each submap covers what the
// scans observed from their poses: returned beams, and no-return beams (at
// or beyond range_max, or +Inf) only up to the usable range; NaN beams add
// nothing. Errors are *FieldError with paths "scans" and "scans[k]...",
// wrapping slam.ErrInvalidArgument or slam.ErrTooLarge.
func BuildSubmap(frames []*typesv1.ScanFrame, res float64, opts SubmapOptions) (*grid.Grid, SubmapInfo, error) {
	var info SubmapInfo
	if len(frames) > MaxScansPerAgent {
		return nil, info, invalid("scans", "%d scans, limit %d", len(frames), MaxScansPerAgent)
	}
	if len(frames) == 0 {
		return nil, info, invalid("scans", "no scans")
	}
	sharpening := opts.MinSharpening
	if sharpening == 0 {
		sharpening = DefaultMinSharpening
	}
	if !(sharpening > 0 && sharpening < 1) {
		return nil, info, fmt.Errorf("%w: min sharpening %g outside (0, 1)", slam.ErrInvalidArgument, sharpening)
	}
	lf := make([]localslam.Frame, len(frames))
	sent := make([]slam.Pose2D, len(frames))
	for k, f := range frames {
		at := "scans[" + strconv.Itoa(k) + "]"
		if err := PoseField(at+".odom_pose", f.GetOdomPose()); err != nil {
			return nil, info, err
		}
		s, err := ScanFromProto(f.GetScan())
		if err != nil {
			return nil, info, &FieldError{Field: at + ".scan", Err: err}
		}
		sent[k] = PoseFromProto(f.GetOdomPose())
		lf[k] = localslam.Frame{Odom: sent[k], Scan: s}
	}
	in := grid.Inserter{UsableRange: opts.UsableRange}
	// The submap at the sent poses first: its size check refuses a request
	// spanning kilometres before the front end allocates anything.
	g, err := integrate(&in, lf, sent, res)
	if err != nil {
		return nil, info, err
	}
	info.Scans = make([]slam.LaserScan, len(lf))
	for k, f := range lf {
		info.Scans[k] = f.Scan
	}
	info.Poses, info.OccupiedSent = sent, occupiedCells(g)
	if opts.OdometryOnly {
		return g, info, nil
	}
	fo := opts.FrontEnd
	fo.UsableRange = opts.UsableRange
	if fo.MaxCells == 0 {
		fo.MaxCells = frontEndMaxCells
	}
	results, err := localslam.Track(lf, fo)
	if err != nil {
		var fe *localslam.FrameError
		if errors.As(err, &fe) && !errors.Is(err, slam.ErrTooLarge) {
			return nil, info, &FieldError{Field: "scans[" + strconv.Itoa(fe.Index) + "]", Err: fe.Err}
		}
		return nil, info, &FieldError{Field: "scans", Err: err}
	}
	poses := make([]slam.Pose2D, len(results))
	for k, r := range results {
		poses[k] = r.Pose
	}
	gf, err := integrate(&in, lf, poses, res)
	if err != nil {
		return nil, info, err
	}
	info.OccupiedFrontEnd, info.FrontEndPoses = occupiedCells(gf), poses
	if float64(info.OccupiedFrontEnd) > (1-sharpening)*float64(info.OccupiedSent) {
		return g, info, nil
	}
	info.Poses, info.FrontEnd = poses, true
	return gf, info, nil
}

// integrate builds the submap of frames at poses (see submapMeta).
func integrate(in *grid.Inserter, frames []localslam.Frame, poses []slam.Pose2D, res float64) (*grid.Grid, error) {
	meta, err := submapMeta(in, frames, poses, res)
	if err != nil {
		return nil, err
	}
	g, err := grid.New(meta)
	if err != nil {
		return nil, &FieldError{Field: "scans", Err: err}
	}
	for k := range frames {
		if _, err := in.Integrate(g, poses[k], frames[k].Scan); err != nil {
			return nil, &FieldError{Field: "scans[" + strconv.Itoa(k) + "]", Err: err}
		}
	}
	return g, nil
}

// occupiedCells counts the cells that lean occupied.
func occupiedCells(g *grid.Grid) int {
	o, _, _ := g.Counts()
	return o
}

// submapMeta returns the grid covering what the frames observe from poses
// (grid.Inserter.Observed) with a two-cell margin, its origin snapped to the
// resolution so cells align with the map's; beyond MaxSubmapCells it is a
// *FieldError at "scans" wrapping slam.ErrTooLarge.
func submapMeta(in *grid.Inserter, frames []localslam.Frame, poses []slam.Pose2D, res float64) (grid.Meta, error) {
	var b grid.Bounds
	for k, f := range frames {
		ob, err := in.Observed(poses[k], f.Scan)
		if err != nil {
			return grid.Meta{}, &FieldError{Field: "scans[" + strconv.Itoa(k) + "]", Err: err}
		}
		b.Union(ob)
	}
	pad := 2 * res
	ox, oy := math.Floor((b.MinX-pad)/res)*res, math.Floor((b.MinY-pad)/res)*res
	w, h := b.MaxX+pad-ox, b.MaxY+pad-oy
	if cells := math.Ceil(w/res) * math.Ceil(h/res); !(cells <= MaxSubmapCells) {
		return grid.Meta{}, &FieldError{Field: "scans", Err: &detail{sentinel: slam.ErrTooLarge, msg: fmt.Sprintf("scans span %.0fx%.0f m, %.0f cells at %g m, limit %d", w, h, cells, res, MaxSubmapCells)}}
	}
	meta, err := grid.MetaForBounds(ox, oy, w, h, res)
	if err != nil {
		return grid.Meta{}, &FieldError{Field: "scans", Err: err}
	}
	return meta, nil
}
