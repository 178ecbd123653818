package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slamio"
)

// runImport runs slamctl import with args; no server is involved.
func runImport(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"import"}, args...), func(string) string { return "" }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestImportWritesTheMissionJSON: slamctl import of the intel log with the
// flags of intel-rangemax-3 writes a proto3 JSON request that grpcurl can
// send, with the provided mission's agents, scans, guesses and bounds.
func TestImportWritesTheMissionJSON(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "mission.json")
	_, summary, err := runImport("--carmen", filepath.Join(realdata, "carmen", "intel-corrected.log.gz"),
		"--segments", "6:35,189:218,90:119", "--range-max", "81.83", "--id", "real-intel-rangemax-3", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "agent robot-0 anchor: 30 scans") || !strings.Contains(summary, "map 32.25 x 32.3 m from (-11.75, -24.45)") {
		t.Errorf("summary:\n%s", summary)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := loadMission(t, "intel-rangemax-3")
	if got.GetMissionId() != want.GetMissionId() || len(got.GetAgents()) != 3 ||
		got.GetMap().GetOriginX() != want.GetMap().GetOriginX() || got.GetMap().GetWidthM() != want.GetMap().GetWidthM() ||
		got.GetMap().GetHeightM() != want.GetMap().GetHeightM() || got.GetMap().GetResolution() != 0.05 {
		t.Fatalf("request %s %v, want the JSON's %s %v", got.GetMissionId(), got.GetMap(), want.GetMissionId(), want.GetMap())
	}
	for i, a := range got.GetAgents() {
		w := want.GetAgents()[i]
		g, wg := a.GetInitialGuess(), w.GetInitialGuess()
		if a.GetAgentId() != w.GetAgentId() || a.GetAnchor() != w.GetAnchor() || len(a.GetScans()) != len(w.GetScans()) ||
			math.Abs(g.GetX()-wg.GetX()) > 1e-5 || math.Abs(g.GetTheta()-wg.GetTheta()) > 1e-5 ||
			a.GetScans()[7].GetScan().GetRanges()[90] != w.GetScans()[7].GetScan().GetRanges()[90] {
			t.Errorf("agent %d: %s guess %v, want %s guess %v", i, a.GetAgentId(), g, w.GetAgentId(), wg)
		}
	}
}

// TestImportROSMaps: agents named after the files, the first the anchor at
// the identity, --guess placing another, the thresholds overridable, and
// the search window passed on.
func TestImportROSMaps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	grid := &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.1, Width: 4, Height: 2, Origin: &typesv1.Pose2D{X: -0.2, Y: -0.1}},
		Data: []byte{0, 0, 100, 0xff, 0, 100, 100, 0},
	}
	for _, name := range []string{"dock", "lab 2"} {
		if err := slamio.WriteROSMap(filepath.Join(dir, name), grid, slamio.ExportTrinary); err != nil {
			t.Fatal(err)
		}
	}
	stdout, _, err := runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", filepath.Join(dir, "lab 2.yaml"),
		"--guess", "lab-2=1.5,0.5,0.25", "--search-window-m", "3", "--search-window-deg", "90", "--map-margin", "1")
	if err != nil {
		t.Fatal(err)
	}
	var req orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	a, b := req.GetAgents()[0], req.GetAgents()[1]
	if a.GetAgentId() != "dock" || !a.GetAnchor() || a.GetInitialGuess() == nil || a.GetInitialGuess().GetX() != 0 ||
		b.GetAgentId() != "lab-2" || b.GetAnchor() || b.GetInitialGuess().GetX() != 1.5 || b.GetInitialGuess().GetTheta() != 0.25 {
		t.Fatalf("agents %v", req.GetAgents())
	}
	if string(b.GetSubmap().GetData()) != string(grid.GetData()) || b.GetSubmap().GetMeta().GetOrigin().GetX() != -0.2 {
		t.Errorf("submap %v, want the grid written", b.GetSubmap())
	}
	if req.GetSearchWindowM() != 3 || math.Abs(req.GetSearchWindowRad()-math.Pi/2) > 1e-12 {
		t.Errorf("search window %g m %g rad", req.GetSearchWindowM(), req.GetSearchWindowRad())
	}
	// A per-map option replaces that map's YAML threshold only: grey 128
	// (unknown, occ 0.498) becomes occupied in the first map alone.
	stdout, _, err = runImport("--ros-map", filepath.Join(dir, "dock.yaml")+",occupied_thresh=0.45", "--ros-map", filepath.Join(dir, "lab 2.yaml"), "--guess", "lab-2=0,0,0")
	if err != nil {
		t.Fatal(err)
	}
	req.Reset()
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	if d0, d1 := req.GetAgents()[0].GetSubmap().GetData(), req.GetAgents()[1].GetSubmap().GetData(); d0[3] != 100 || d1[3] != 0xff {
		t.Errorf("unknown cell with occupied_thresh=0.45: %d in dock, %d in lab-2; want 100 and -1", int8(d0[3]), int8(d1[3]))
	}

	// Without a guess the second map is searched for, and the bounds grow
	// by its extent.
	stdout, _, err = runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", filepath.Join(dir, "lab 2.yaml"), "--agent-ids", "a,b")
	if err != nil {
		t.Fatal(err)
	}
	req.Reset()
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	if req.GetAgents()[1].GetInitialGuess() != nil || req.GetAgents()[1].GetAgentId() != "b" || req.GetMap().GetWidthM() < 4.4 {
		t.Errorf("unguessed agent: %v, map %v", req.GetAgents()[1].GetInitialGuess(), req.GetMap())
	}
}

// TestImportNav2ScaleMapPNG: a map as Nav2's map_saver writes it in scale
// mode (a PNG with alpha: each known cell v the grey (100−v)/100, opaque;
// unknown a transparent grey) is imported with the cells Nav2's
// map_server loads from it.
func TestImportNav2ScaleMapPNG(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	saved := []int8{0, 20, 50, 100, -1} // one row
	img := image.NewNRGBA(image.Rect(0, 0, len(saved), 1))
	for x, v := range saved {
		if v < 0 {
			img.SetNRGBA(x, 0, color.NRGBA{128, 128, 128, 0})
			continue
		}
		q := uint8(math.Round(255 * float64(100-v) / 100)) // GraphicsMagick's ColorGray, 8 bits
		img.SetNRGBA(x, 0, color.NRGBA{q, q, q, 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "floor.png"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := "image: floor.png\nmode: scale\nresolution: 0.05\norigin: [-1.5, 2.25, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	if err := os.WriteFile(filepath.Join(dir, "floor.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runImport("--ros-map", filepath.Join(dir, "floor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var req orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	sub := req.GetAgents()[0].GetSubmap()
	// 20: occ 0.2 < free_thresh; 50: grey 128, occ 0.498, rint(62.0).
	want := []int8{0, 0, 62, 100, -1}
	for x, c := range sub.GetData() {
		if int8(c) != want[x] {
			t.Errorf("cell %d (saved %d): %d, want %d", x, saved[x], int8(c), want[x])
		}
	}
	// The unknown last cell is cut (slamio.CropToKnown).
	if sub.GetMeta().GetOrigin().GetX() != -1.5 || sub.GetMeta().GetOrigin().GetY() != 2.25 || sub.GetMeta().GetWidth() != 4 || len(sub.GetData()) != 4 {
		t.Errorf("submap meta %v", sub.GetMeta())
	}
}

func TestImportRefusesBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badLog := filepath.Join(dir, "bad.log")
	if err := os.WriteFile(badLog, []byte("ODOM 0 0 0 0 0 0 1 h 1\nFLASER 2 1.0 1.0x 0 0 0 0 0 0 1 h 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(realdata, "carmen", "intel-corrected.log.gz")
	for _, tc := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"--segments", "1:2"}, "name a --carmen log or --ros-map files", true},
		{[]string{"--carmen", good, "--ros-map", "a.yaml", "--segments", "1:2"}, "either --carmen or --ros-map", true},
		{[]string{"--carmen", good, "--segments", "9:3"}, "--segments", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--guess", "robot-1=1,2"}, "want 3 comma-separated numbers", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--guess", "nobody=1,2,3"}, `guess for agent "nobody": no such agent`, false},
		{[]string{"--carmen", good, "--segments", "1:2", "--map", "0,0,-1,5"}, "--map", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--poses", "gps"}, `pose source "gps"`, false},
		{[]string{"--carmen", good, "--segments", "900:910"}, "segment 900:910: " + good + " has readings 0..909", false},
		{[]string{"--carmen", badLog, "--segments", "0:0"}, `bad.log:2: FLASER: range 2 "1.0x" is not a number`, false},
		{[]string{"--carmen", filepath.Join(dir, "missing.log"), "--segments", "0:0"}, "missing.log: no such file", false},
		{[]string{"--ros-map", filepath.Join(dir, "missing.yaml")}, "missing.yaml: no such file", false},
		{[]string{"--ros-map", "a.yaml", "--occupied-thresh", "2"}, "want a number in [0, 1]", true},
		{[]string{"--ros-map", "a.yaml,occupied=0.3"}, `unknown option "occupied=0.3"`, true},
		{[]string{"--ros-map", "a.yaml,free_thresh=x"}, `free_thresh "x"`, true},
		{[]string{"--ros-map", "a.yaml,mode=fancy"}, `mode "fancy"`, true},
		{[]string{"--carmen", good, "--segments", "1:2", "stray"}, "unexpected arguments", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--search-window-m", "NaN"}, "--search-window-m NaN: want 0..1000", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--search-window-deg", "1e9"}, "--search-window-deg 1e+09: want 0..180", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--search-window-deg", "-5"}, "--search-window-deg -5", true},
		{[]string{"--carmen", good, "--segments", "1:2,2:3"}, "segments 1:2 and 2:3 overlap", false},
		{[]string{"--carmen", good, "--segments", "1:2", "--max-changed-share", "2"}, "--max-changed-share 2: want 0..1", true},
		{[]string{"--carmen", good, "--segments", "1:2", "--min-consistency", "NaN"}, "--min-consistency NaN: want 0..1", true},
	} {
		_, _, err := runImport(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, errUsage) != tc.usage {
			t.Errorf("import %v: error %v, want %q (usage error: %v)", tc.args, err, tc.want, tc.usage)
		}
		if err != nil && strings.Count(err.Error(), good) > 1 {
			t.Errorf("import %v: error %v names the log twice", tc.args, err)
		}
	}
}

func TestMapRefusesBadFormat(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"map", "--format", "tiff", "m"}, {"map", "--format", "ros", "--ros-mode", "scale", "m"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"--addr", "127.0.0.1:1"}, args...), func(string) string { return "" }, &out, &errOut)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestImportWarnsOfGreyWalls: a map whose walls an image editor blended
// with grey (occupancy 0.41) loses them at its YAML's occupied_thresh of
// 0.65, and an agent made of it could never be localized. slamctl says so
// before anything is sent, with the threshold that keeps them; a map
// without walls at any threshold gets the advice that fits it.
func TestImportWarnsOfGreyWalls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A 5 × 5 m room at 0.05 m: walls two pixels thick of grey 150,
	// floor white, the outside unknown grey 205.
	const side = 100
	img := make([]byte, side*side)
	for y := range side {
		for x := range side {
			switch {
			case x < 2 || y < 2 || x >= side-2 || y >= side-2:
				img[y*side+x] = 150
			default:
				img[y*side+x] = 254
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "room.pgm"), append([]byte("P5\n100 100\n255\n"), img...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dock", "room"} {
		yaml := "image: room.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.196\n"
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	room := filepath.Join(dir, "room.yaml")
	_, stderr, err := runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", room)
	if err != nil {
		t.Fatal(err)
	}
	want := "warning: " + room + ": 0 occupied cells at occupied_thresh 0.65, localization needs 300: if its walls are grey (as an image editor may blend them), a lower threshold keeps them: --ros-map " + room + ",occupied_thresh=0.4 gives 784\n"
	if !strings.Contains(stderr, want) {
		t.Errorf("import printed\n%s\nwant the line\n%s", stderr, want)
	}
	if strings.Contains(stderr, "dock.yaml") {
		t.Errorf("the anchor was warned of, its walls are no search's:\n%s", stderr)
	}
	// Its walls kept, by its own option or by the flag for every map (and
	// with a guess, which needs only 100): no warning.
	for _, args := range [][]string{{"--ros-map", room + ",occupied_thresh=0.4"}, {"--ros-map", room, "--guess", "room=0,0,0", "--occupied-thresh", "0.4"}} {
		_, stderr, err := runImport(append([]string{"--ros-map", filepath.Join(dir, "dock.yaml")}, args...)...)
		if err != nil || strings.Contains(stderr, "warning") {
			t.Errorf("import %v: %v\n%s", args, err, stderr)
		}
	}
	// A wide window around a guess needs as many as no guess (found by a
	// review: it was not warned of).
	_, stderr, _ = runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", room, "--guess", "room=0,0,0", "--search-window-m", "50")
	if !strings.Contains(stderr, "warning: "+room+": 0 occupied cells at occupied_thresh 0.65, localization needs 300: ") {
		t.Errorf("import with a 50 m window printed\n%s", stderr)
	}
	// Grey walls under the YAML's free threshold read as free: both
	// thresholds must come down (found by a review).
	yaml := "image: room.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.5\n"
	if err := os.WriteFile(filepath.Join(dir, "freeish.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	freeish := filepath.Join(dir, "freeish.yaml")
	_, stderr, _ = runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", freeish)
	if want := "lower thresholds keep them: --ros-map " + freeish + ",occupied_thresh=0.4,free_thresh=0.196 gives 784\n"; !strings.Contains(stderr, want) {
		t.Errorf("import of grey walls under free_thresh printed\n%s\nwant %q", stderr, want)
	}
	// Walls nothing keeps: a white room (its floor only). A guess would
	// not help: a window around one needs 100.
	for i := range img {
		img[i] = 254
	}
	if err := os.WriteFile(filepath.Join(dir, "room.pgm"), append([]byte("P5\n100 100\n255\n"), img...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ = runImport("--ros-map", filepath.Join(dir, "dock.yaml"), "--ros-map", room)
	if want := "0 occupied cells at occupied_thresh 0.65, localization needs 300: the map holds too few walls to be matched: send a larger part of the building\n"; !strings.Contains(stderr, want) {
		t.Errorf("import of a map without walls printed\n%s\nwant %q", stderr, want)
	}
}

// writeNav2Map saves grid as Nav2's map_saver does by default: a trinary
// PGM of 0 (occupied, cell ≥ 65), 254 (free, 0..25) and 205 (anything
// else), top row first, and a YAML with free_thresh 0.25.
func writeNav2Map(t *testing.T, base string, grid *typesv1.OccupancyGrid) {
	t.Helper()
	meta := grid.GetMeta()
	w, h := int(meta.GetWidth()), int(meta.GetHeight())
	img := fmt.Appendf(nil, "P5\n%d %d\n255\n", w, h)
	for row := h - 1; row >= 0; row-- {
		for _, c := range grid.GetData()[row*w : (row+1)*w] {
			switch v := int8(c); {
			case v >= 65:
				img = append(img, 0)
			case v >= 0 && v <= 25:
				img = append(img, 254)
			default:
				img = append(img, 205)
			}
		}
	}
	if err := os.WriteFile(base+".pgm", img, 0o644); err != nil {
		t.Fatal(err)
	}
	o := meta.GetOrigin()
	yaml := fmt.Sprintf("image: %s.pgm\nmode: trinary\nresolution: %v\norigin: [%v, %v, %v]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
		filepath.Base(base), meta.GetResolution(), o.GetX(), o.GetY(), o.GetTheta())
	if err := os.WriteFile(base+".yaml", []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImportNav2SavedMap: a map saved by Nav2's map_saver keeps its unknown
// cells unknown, and the import says so and how to read it otherwise; a
// free_thresh given reads it by that value, silently.
func TestImportNav2SavedMap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := filepath.Join(dir, "saved")
	writeNav2Map(t, base, &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.1, Width: 4, Height: 2, Origin: &typesv1.Pose2D{}},
		Data: []byte{100, 0, 0xff, 0, 0xff, 100, 0, 0},
	})
	stdout, stderr, err := runImport("--ros-map", base+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "warning: " + base + ".yaml: its free_thresh reads the 2 pixels of grey 205, map_saver's unknown, as free floor (Nav2's map_saver writes free_thresh 0.25 beside them); read as unknown, with ROS 1's free_thresh 0.196 (--ros-map " + base + ".yaml,free_thresh=V reads the map by V)\n"
	if !strings.Contains(stderr, want) {
		t.Errorf("import printed\n%s\nwant the line\n%s", stderr, want)
	}
	var req orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	if got := req.GetAgents()[0].GetSubmap().GetData(); string(got) != string([]byte{100, 0, 0xff, 0, 0xff, 100, 0, 0}) {
		t.Errorf("cells %v, want the grid saved", got)
	}

	// The same save touched by an editor (one pixel of grey 128) is read
	// as nav2 reads it, with a warning once its 205s are many.
	big := &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.1, Width: 50, Height: 40, Origin: &typesv1.Pose2D{}}, Data: make([]byte, 2000)}
	for i := range big.Data {
		big.Data[i] = 0xff
	}
	big.Data[0], big.Data[1] = 100, 0
	edited := filepath.Join(dir, "edited")
	writeNav2Map(t, edited, big)
	pgm, err := os.ReadFile(edited + ".pgm")
	if err != nil {
		t.Fatal(err)
	}
	pgm[len(pgm)-1] = 128
	if err := os.WriteFile(edited+".pgm", pgm, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = runImport("--ros-map", edited+".yaml")
	if err != nil || !strings.Contains(stderr, "warning: "+edited+".yaml: its free_thresh reads its 1997 pixels of grey 205 as free floor; if they are unknown") ||
		!strings.Contains(stderr, edited+".yaml,free_thresh=0.196 reads them so") {
		t.Errorf("an edited save: %v\n%s", err, stderr)
	}

	stdout, stderr, err = runImport("--ros-map", base+".yaml,free_thresh=0.25")
	if err != nil || strings.Contains(stderr, "warning") {
		t.Fatalf("import with free_thresh=0.25: %v\n%s", err, stderr)
	}
	req.Reset()
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	if got := req.GetAgents()[0].GetSubmap().GetData(); string(got) != string([]byte{100, 0, 0, 0, 0, 100, 0, 0}) {
		t.Errorf("cells %v with free_thresh=0.25, want the unknown ones free, as nav2 reads them", got)
	}
}

// upsampledWillow writes the Willow Garage map (0.1 m) at 0.1/k m, each
// pixel k × k times, as base.pgm and base.yaml, and returns the YAML path.
func upsampledWillow(t *testing.T, base string, k int) string {
	t.Helper()
	path := filepath.Join(realdata, "rosmaps", "willow-2010-02-18-0.10.pgm")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := slamio.DecodePGM(raw, path)
	if err != nil {
		t.Fatal(err)
	}
	up := &slamio.Gray{Width: src.Width * k, Height: src.Height * k, MaxVal: src.MaxVal, Pix: make([]uint16, 0, src.Width*src.Height*k*k)}
	for y := range up.Height {
		for x := range up.Width {
			up.Pix = append(up.Pix, src.Pix[(y/k)*src.Width+x/k])
		}
	}
	out := slamio.EncodePGM(up, base+".pgm")
	if err := os.WriteFile(base+".pgm", out, 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("image: %s.pgm\nresolution: %v\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.22\nfree_thresh: 0.196\n", filepath.Base(base), 0.1/float64(k))
	if err := os.WriteFile(base+".yaml", []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return base + ".yaml"
}

// TestImportCoarsensAMapTooFineToSend: the Willow map at 0.025 m (2260 ×
// 2428 cells cut to its known ones, over the 4 Mi an agent may send) is sent at the mission's
// 0.05 m, and says so; each sent cell holds what the same map saved at
// 0.05 m holds at that place.
func TestImportCoarsensAMapTooFineToSend(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fine := upsampledWillow(t, filepath.Join(dir, "fine"), 4)
	at5 := upsampledWillow(t, filepath.Join(dir, "at5"), 2)
	stdout, stderr, err := runImport("--ros-map", fine)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "note: "+fine+": 2260x2428 cells at 0.025 m, more than the 4194304 an agent may send: sent at 0.05 m") {
		t.Errorf("import printed\n%s\nwant a note that the map is sent at 0.05 m", stderr)
	}
	var req, want orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal([]byte(stdout), &req); err != nil {
		t.Fatal(err)
	}
	// In a 0.04 m mission it would have to be sent coarser than the
	// mission: refused, naming the resolution that would send it.
	if _, stderr, err := runImport("--ros-map", fine, "--resolution", "0.04"); err == nil || !strings.Contains(stderr, "0.05 m, coarser than the mission's --resolution 0.04: give that --resolution") {
		t.Errorf("a 0.04 m mission: %v\n%s", err, stderr)
	}
	stdout, _, err = runImport("--ros-map", at5)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal([]byte(stdout), &want); err != nil {
		t.Fatal(err)
	}
	got, ref := req.GetAgents()[0].GetSubmap(), want.GetAgents()[0].GetSubmap()
	gm, rm := got.GetMeta(), ref.GetMeta()
	if gm.GetResolution() != 0.05 {
		t.Fatalf("sent at %g m, want 0.05", gm.GetResolution())
	}
	// The crops may start at different cells: compare by place.
	dx := int(math.Round((gm.GetOrigin().GetX() - rm.GetOrigin().GetX()) / 0.05))
	dy := int(math.Round((gm.GetOrigin().GetY() - rm.GetOrigin().GetY()) / 0.05))
	known := 0
	for y := range int(gm.GetHeight()) {
		for x := range int(gm.GetWidth()) {
			v := int8(got.GetData()[y*int(gm.GetWidth())+x])
			rx, ry := x+dx, y+dy
			w := int8(-1)
			if rx >= 0 && ry >= 0 && rx < int(rm.GetWidth()) && ry < int(rm.GetHeight()) {
				w = int8(ref.GetData()[ry*int(rm.GetWidth())+rx])
			}
			if v != w {
				t.Fatalf("cell (%d, %d): %d sent from the 0.025 m map, %d in the 0.05 m one", x, y, v, w)
			}
			if v >= 0 {
				known++
			}
		}
	}
	if known < 100000 {
		t.Errorf("%d known cells compared, want the building's", known)
	}
}
