package slamproto_test

import (
	"errors"
	"math"
	"testing"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
)

func TestGridRoundTrip(t *testing.T) {
	t.Parallel()
	meta := grid.Meta{Resolution: 0.1, Width: 7, Height: 5, Origin: slam.Pose2D{X: -1.5, Y: 2}}
	g, err := grid.New(meta)
	if err != nil {
		t.Fatal(err)
	}
	g.Add(0, 0, grid.Clamp)
	g.Add(6, 4, -grid.Clamp)
	g.Add(3, 2, 0.3)

	pb := slamproto.GridToProto(g)
	if got := len(pb.GetData()); got != 35 {
		t.Fatalf("data has %d bytes, want 35", got)
	}
	if pb.GetData()[0] != 100 || int8(pb.GetData()[1]) != -1 || pb.GetData()[34] != 0 {
		t.Errorf("cells 0,1,34 = %d,%d,%d; want 100,-1,0", int8(pb.GetData()[0]), int8(pb.GetData()[1]), int8(pb.GetData()[34]))
	}
	back, err := slamproto.GridFromProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	if back.Meta() != meta {
		t.Errorf("meta = %+v, want %+v", back.Meta(), meta)
	}
	want, got := g.ToInt8(), back.ToInt8()
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("cell %d = %d, want %d", i, got[i], want[i])
		}
	}
}

func TestGridFromProtoRejects(t *testing.T) {
	t.Parallel()
	meta := &typesv1.GridMeta{Resolution: 0.05, Width: 2, Height: 2}
	tests := []struct {
		name string
		og   *typesv1.OccupancyGrid
		want error
	}{
		{name: "nil", og: nil, want: slam.ErrInvalidArgument},
		{name: "no meta", og: &typesv1.OccupancyGrid{Data: make([]byte, 4)}, want: slam.ErrInvalidArgument},
		{name: "short data", og: &typesv1.OccupancyGrid{Meta: meta, Data: make([]byte, 3)}, want: slam.ErrInvalidArgument},
		{name: "cell out of range", og: &typesv1.OccupancyGrid{Meta: meta, Data: []byte{0, 101, 0, 0}}, want: slam.ErrInvalidArgument},
		{name: "nan resolution", og: &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: math.NaN(), Width: 1, Height: 1}, Data: []byte{0}}, want: slam.ErrInvalidArgument},
		{name: "rotated origin", og: &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 1, Height: 1, Origin: &typesv1.Pose2D{Theta: 0.1}}, Data: []byte{0}}, want: slam.ErrInvalidArgument},
		{name: "huge", og: &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 1 << 20, Height: 1 << 20}}, want: slam.ErrTooLarge},
		{name: "beyond int32", og: &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: math.MaxUint32, Height: 1}}, want: slam.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := slamproto.GridFromProto(tt.og)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPoseRoundTrip(t *testing.T) {
	t.Parallel()
	p := slam.Pose2D{X: 1.25, Y: -3.5, Theta: 0.7}
	if got := slamproto.PoseFromProto(slamproto.PoseToProto(p)); got != p {
		t.Errorf("round trip = %v, want %v", got, p)
	}
	if got := slamproto.PoseFromProto(nil); got != (slam.Pose2D{}) {
		t.Errorf("nil pose = %v, want identity", got)
	}
}

func TestScanRoundTrip(t *testing.T) {
	t.Parallel()
	s := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: math.Pi / 180, RangeMin: 0.05, RangeMax: 8, Ranges: []float32{1, 2, float32(math.Inf(1))}}
	pb := slamproto.ScanToProto(s)
	s.Ranges[0] = 42 // the message must not alias the domain scan
	if pb.GetRanges()[0] != 1 {
		t.Errorf("ScanToProto aliases ranges")
	}
	back, err := slamproto.ScanFromProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(back.AngleIncrement-s.AngleIncrement) > 1e-7 || back.RangeMax != 8 || len(back.Ranges) != 3 {
		t.Errorf("round trip = %+v", back)
	}
	if _, err := slamproto.ScanFromProto(&typesv1.LaserScan{RangeMin: 1, RangeMax: 0.5, Ranges: []float32{1}}); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("bad range limits: err = %v", err)
	}
}
