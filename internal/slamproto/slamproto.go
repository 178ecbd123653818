// Package slamproto converts between the domain types of internal/slam and
// the slammesh.types.v1 messages. It exists so that internal/slam stays free
// of proto imports while the services and the orchestrator share one
// conversion, with one set of checks on what arrives over the wire.
//
// Conversions from proto never trust their input: sizes are checked against
// the grid metadata and every int8 cell is range-checked by grid.FromInt8.
// They do not name request fields in their errors; callers that validate
// requests (the services) prefix the field path.
package slamproto

import (
	"fmt"
	"math"
	"unsafe"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// PoseToProto converts a domain pose.
func PoseToProto(p slam.Pose2D) *typesv1.Pose2D {
	return &typesv1.Pose2D{X: p.X, Y: p.Y, Theta: p.Theta}
}

// PoseFromProto converts a proto pose; a nil pose is the identity, as proto3
// reads an absent message as all zeros.
func PoseFromProto(p *typesv1.Pose2D) slam.Pose2D {
	return slam.Pose2D{X: p.GetX(), Y: p.GetY(), Theta: p.GetTheta()}
}

// MetaToProto converts grid metadata.
func MetaToProto(m grid.Meta) *typesv1.GridMeta {
	return &typesv1.GridMeta{
		Resolution: m.Resolution,
		Width:      uint32(m.Width),
		Height:     uint32(m.Height),
		Origin:     PoseToProto(m.Origin),
	}
}

// MetaFromProto converts and validates grid metadata (see grid.Meta.Validate),
// so that a nil or zero meta is an error wrapping slam.ErrInvalidArgument and
// an oversized one wraps slam.ErrTooLarge.
func MetaFromProto(m *typesv1.GridMeta) (grid.Meta, error) {
	if m == nil {
		return grid.Meta{}, fmt.Errorf("%w: grid meta missing", slam.ErrInvalidArgument)
	}
	if m.GetWidth() > math.MaxInt32 || m.GetHeight() > math.MaxInt32 {
		return grid.Meta{}, fmt.Errorf("%w: grid %dx%d", slam.ErrTooLarge, m.GetWidth(), m.GetHeight())
	}
	meta := grid.Meta{
		Resolution: m.GetResolution(),
		Width:      int(m.GetWidth()),
		Height:     int(m.GetHeight()),
		Origin:     PoseFromProto(m.GetOrigin()),
	}
	if err := meta.Validate(); err != nil {
		return grid.Meta{}, err
	}
	return meta, nil
}

// GridToProto exports a grid as a ROS-style occupancy grid.
func GridToProto(g *grid.Grid) *typesv1.OccupancyGrid {
	return &typesv1.OccupancyGrid{Meta: MetaToProto(g.Meta()), Data: Int8Bytes(g.ToInt8())}
}

// GridFromProto builds a grid from an occupancy grid message, checking the
// metadata, the cell count and every cell value.
func GridFromProto(og *typesv1.OccupancyGrid) (*grid.Grid, error) {
	if og == nil {
		return nil, fmt.Errorf("%w: occupancy grid missing", slam.ErrInvalidArgument)
	}
	meta, err := MetaFromProto(og.GetMeta())
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	g, err := grid.FromInt8(meta, BytesInt8(og.GetData()))
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return g, nil
}

// Int8Bytes reinterprets int8 cells as the bytes of OccupancyGrid.data without
// copying: maps are megabytes and are converted on every step. The result
// aliases cells.
func Int8Bytes(cells []int8) []byte {
	if len(cells) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(cells))), len(cells))
}

// BytesInt8 reinterprets OccupancyGrid.data as int8 cells without copying; the
// result aliases b.
func BytesInt8(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

// ScanToProto converts a domain scan. The proto carries float32 like
// sensor_msgs/LaserScan; ranges are float32 on both sides and are copied so
// the message does not alias the domain value.
func ScanToProto(s slam.LaserScan) *typesv1.LaserScan {
	return &typesv1.LaserScan{
		AngleMin:       float32(s.AngleMin),
		AngleIncrement: float32(s.AngleIncrement),
		RangeMin:       float32(s.RangeMin),
		RangeMax:       float32(s.RangeMax),
		Ranges:         append([]float32(nil), s.Ranges...),
	}
}

// ScanFromProto converts and validates a scan header (see
// slam.LaserScan.Validate). The ranges alias the message's.
func ScanFromProto(s *typesv1.LaserScan) (slam.LaserScan, error) {
	if s == nil {
		return slam.LaserScan{}, fmt.Errorf("%w: scan missing", slam.ErrInvalidArgument)
	}
	out := slam.LaserScan{
		AngleMin:       float64(s.GetAngleMin()),
		AngleIncrement: float64(s.GetAngleIncrement()),
		RangeMin:       float64(s.GetRangeMin()),
		RangeMax:       float64(s.GetRangeMax()),
		Ranges:         s.GetRanges(),
	}
	if err := out.Validate(); err != nil {
		return slam.LaserScan{}, err
	}
	return out, nil
}
