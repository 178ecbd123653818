package slam_test

import (
	"errors"
	"path/filepath"
	"testing"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// coarsen returns the w×h cells of og (int8 cells, row-major from the
// bottom) from cell (x0, y0) at k times og's cell size, in a frame whose
// origin is their corner: a k×k block is occupied (100) when any of its
// cells is, else free (0) when any is, else unknown — what an image
// editor's "darkest pixel" downsampling of a map_server image gives.
func coarsen(og *typesv1.OccupancyGrid, x0, y0, w, h, k int) *typesv1.OccupancyGrid {
	meta := og.GetMeta()
	cw, ch := w/k, h/k
	data := make([]byte, cw*ch)
	for cy := range ch {
		for cx := range cw {
			v := int8(-1)
			for dy := range k {
				for dx := range k {
					c := int8(og.GetData()[(y0+cy*k+dy)*int(meta.GetWidth())+x0+cx*k+dx])
					switch {
					case c >= 65:
						v = 100
					case c >= 0 && c <= 19 && v < 0:
						v = 0
					}
				}
			}
			data[cy*cw+cx] = byte(v)
		}
	}
	return &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: meta.GetResolution() * float64(k), Width: uint32(cw), Height: uint32(ch),
		Origin: &typesv1.Pose2D{}}, Data: data}
}

// TestCoarserMapMergesWithTheMapItWasCutFrom: a team whose maps were made
// at different resolutions. A 15 × 15 m part of the Willow Garage map (0.1
// m cells) downsampled to 0.2 m, sent without a guess beside the whole map
// as the anchor, must localize within 2 cells of the 0.1 m map and merge
// into the 0.05 m mission map: a 0.2 m wall fills 4 map cells where the 0.1
// m wall fills 2, and was refused as a changed world (consistency 0.934)
// before the merge's boundary tolerance followed the coarser grid. Moved
// 0.5 m off, well past that tolerance, the coarse map must still be
// refused.
func TestCoarserMapMergesWithTheMapItWasCutFrom(t *testing.T) {
	occupiedThresh := 0.22
	rm, err := slamio.ReadROSMap(filepath.Join("..", "..", "..", "shared", "realdata", "rosmaps", "willow-2010-02-18-0.10.yaml"), slamio.ROSMapOptions{OccupiedThresh: &occupiedThresh})
	if err != nil {
		t.Fatal(err)
	}
	const x0, y0 = 100, 170 // the part's corner, in 0.1 m cells of the YAML frame (origin 0, 0)
	truth := []slam.Pose2D{{}, {X: x0 * 0.1, Y: y0 * 0.1}}
	agents := []*typesv1.Agent{
		slamio.ROSMapAgent(rm, "willow", true, &slam.Pose2D{}),
		{AgentId: "part-0.2m", Submap: coarsen(rm.Grid, x0, y0, 152, 152, 2)},
	}
	out, merge, base, err := localizeAndMerge(agents, truth, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.locErr != nil || out.mergeErr != nil {
		t.Fatalf("localization: %v; merge: %v", out.locErr, out.mergeErr)
	}
	if out.worstT > 0.1 || out.worstR > 0.02 {
		t.Errorf("the 0.2 m part localized %.3f m, %.4f rad from where it was cut", out.worstT, out.worstR)
	}

	off := merge[1]
	off.Pose = truth[1].Compose(slam.Pose2D{X: 0.5})
	_, rep, err := fuse.Merge(base, []fuse.Input{merge[0], off}, fuse.Options{})
	var ie *fuse.InconsistencyError
	if !errors.As(err, &ie) {
		t.Fatalf("the 0.2 m part 0.5 m off merged: %v (report %+v)", err, rep.Agents)
	}
	t.Logf("0.5 m off: %v", err)

	// The tolerance is the cells' own: a 0.3 m part merged elsewhere (its
	// cells 40–55 m, 30–45 m) must not let a 0.1 m part merge 0.2 m off
	// where it lies alone (found by a review: 0.972 merged).
	elsewhere := input(t, coarsen(rm.Grid, 400, 300, 150, 150, 3), slam.Pose2D{X: 40, Y: 30})
	fine := input(t, coarsen(rm.Grid, x0, y0, 152, 152, 1), truth[1])
	fine.Agent = 2
	if _, _, err := fuse.Merge(base, []fuse.Input{merge[0], elsewhere, fine}, fuse.Options{}); err != nil {
		t.Fatalf("a 0.3 m part and a 0.1 m part at their places: %v", err)
	}
	fine.Pose = truth[1].Compose(slam.Pose2D{X: 0.2})
	if _, _, err := fuse.Merge(base, []fuse.Input{merge[0], elsewhere, fine}, fuse.Options{}); !errors.As(err, &ie) || ie.Agent != 2 {
		t.Errorf("the 0.1 m part 0.2 m off merged beside a 0.3 m part elsewhere: %v", err)
	}
}

// input is og as a merge's input at pose.
func input(t *testing.T, og *typesv1.OccupancyGrid, pose slam.Pose2D) fuse.Input {
	t.Helper()
	g, err := slamproto.GridFromProto(og)
	if err != nil {
		t.Fatal(err)
	}
	return fuse.Input{Agent: 1, Submap: g, Pose: pose}
}
