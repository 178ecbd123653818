package slamio_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamio"
)

// writeMap writes name.yaml (yaml text) and name.pgm (image bytes) in dir
// and returns the yaml's path.
func writeMap(t *testing.T, dir, name, yaml string, pgm []byte) string {
	t.Helper()
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if pgm != nil {
		if err := os.WriteFile(filepath.Join(dir, name+".pgm"), pgm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// pixels is one 5x2 image used by the mode tests: top row 0 64 128 205 254,
// bottom row 255 26 100 101 51 (as a 255-maxval PGM).
var pixels = []uint16{0, 64, 128, 205, 254, 255, 26, 100, 101, 51}

func p5(w, h, maxVal int, pix []uint16) []byte {
	return slamio.EncodePGM(&slamio.Gray{Width: w, Height: h, MaxVal: maxVal, Pix: pix}, "test")
}

func p2(pix []uint16) []byte {
	s := "P2\n# a comment\n5 2 # width height\n# another\n255\n"
	for i, v := range pix {
		s += " " + strconv.Itoa(int(v))
		if i == 4 {
			s += " # end of row\n"
		}
	}
	return []byte(s + "\n")
}

// cells returns the grid's cells bottom row first, as int8.
func cells(og *typesv1.OccupancyGrid) []int8 {
	out := make([]int8, len(og.GetData()))
	for i, b := range og.GetData() {
		out[i] = int8(b)
	}
	return out
}

func TestReadROSMapModes(t *testing.T) {
	t.Parallel()
	// Expected cells per pixel, computed by hand from map_io.cpp's rules.
	// occ = 1 - p/255 (negate 0) or p/255 (negate 1).
	for _, tc := range []struct {
		name, yaml string
		// want is bottom image row first (the grid's row 0).
		want []int8
	}{
		{"trinary default thresholds", "negate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.196\n",
			// bottom row 255 26 100 101 51: occ 0, .898, .608, .604, .8
			// top row 0 64 128 205 254: occ 1, .749, .498, .196, .004
			[]int8{0, 100, -1, -1, 100, 100, 100, -1, -1, 0}},
		{"trinary mode given, free 0.25 makes 205 free", "mode: trinary\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
			[]int8{0, 100, -1, -1, 100, 100, 100, -1, 0, 0}},
		{"trinary negate", "negate: 1\noccupied_thresh: 0.65\nfree_thresh: 0.196\n",
			// occ = p/255: bottom 1, .102, .392, .396, .2; top 0, .251, .502, .804, .996
			[]int8{100, 0, -1, -1, -1, 0, -1, -1, 100, 100}},
		{"scale", "mode: scale\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
			// between thresholds rint(100*(occ-.25)/.4): occ .6078 → 89, .6039 → 88, .498 → 62
			[]int8{0, 100, 89, 88, 100, 100, 100, 62, 0, 0}},
		{"raw", "mode: raw\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
			[]int8{-1, 26, 100, -1, 51, 0, 64, -1, -1, -1}},
		{"raw ignores negate, mode in any case", "mode: Raw\nnegate: 1\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
			[]int8{-1, 26, 100, -1, 51, 0, 64, -1, -1, -1}},
	} {
		for _, format := range []string{"P2", "P5"} {
			t.Run(tc.name+" "+format, func(t *testing.T) {
				t.Parallel()
				img := p5(5, 2, 255, pixels)
				if format == "P2" {
					img = p2(pixels)
				}
				dir := t.TempDir()
				path := writeMap(t, dir, "m", "# saved by hand\nimage: m.pgm\nresolution: 0.05\norigin: [-1.5, 2.25, 0.0]\n"+tc.yaml, img)
				m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
				if err != nil {
					t.Fatal(err)
				}
				got := cells(m.Grid)
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("cells %v, want %v", got, tc.want)
					}
				}
				meta := m.Grid.GetMeta()
				if meta.GetWidth() != 5 || meta.GetHeight() != 2 || meta.GetResolution() != 0.05 || meta.GetOrigin().GetX() != -1.5 || meta.GetOrigin().GetY() != 2.25 {
					t.Errorf("meta %v", meta)
				}
			})
		}
	}
}

func TestReadROSMapSixteenBitAndThresholdOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// 16-bit samples: 0 (black), 65535 (white), 32768 (mid grey).
	path := writeMap(t, dir, "m", "image: m.pgm\nresolution: 0.1\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.196\n",
		p5(3, 1, 65535, []uint16{0, 65535, 32768}))
	m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cells(m.Grid); got[0] != 100 || got[1] != 0 || got[2] != -1 {
		t.Errorf("cells %v, want [100 0 -1]", got)
	}
	occ := 0.45 // mid grey (occ 0.49998) becomes occupied
	m, err = slamio.ReadROSMap(path, slamio.ROSMapOptions{OccupiedThresh: &occ})
	if err != nil {
		t.Fatal(err)
	}
	if got := cells(m.Grid); got[2] != 100 {
		t.Errorf("with occupied_thresh 0.45: cells %v, want mid grey occupied", got)
	}
}

func TestROSMapYawOrigin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeMap(t, dir, "m", "image: m.pgm\nresolution: 0.5\norigin:\n  - 2.0\n  - 1.0\n  - 1.5707963267948966 # 90°\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n",
		p5(2, 1, 255, []uint16{0, 254}))
	m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The grid is rotated 90° about its origin corner (2, 1): cell (0,0)'s
	// centre, at (0.25, 0.25) along the grid's axes, lies at (1.75, 1.25)
	// in the YAML frame. The agent frame is the YAML frame rotated by the
	// yaw, so the guess (map_from_yaml = identity) composed with the
	// submap's own origin must put it there.
	guess := slam.Pose2D{}
	a := slamio.ROSMapAgent(m, "m", true, &guess)
	g := a.GetInitialGuess()
	if math.Abs(g.GetTheta()-math.Pi/2) > 1e-12 || g.GetX() != 0 || g.GetY() != 0 {
		t.Fatalf("guess %v, want (0, 0, π/2)", g)
	}
	o := a.GetSubmap().GetMeta().GetOrigin()
	x, y := slam.Pose2D{X: g.GetX(), Y: g.GetY(), Theta: g.GetTheta()}.Apply(o.GetX()+0.25, o.GetY()+0.25)
	if math.Abs(x-1.75) > 1e-12 || math.Abs(y-1.25) > 1e-12 || o.GetTheta() != 0 {
		t.Errorf("cell (0,0) centre at (%g, %g) (submap origin %v), want (1.75, 1.25)", x, y, o)
	}
}

func TestROSMapErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	good := "image: m.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	img := p5(5, 2, 255, pixels)
	for _, tc := range []struct {
		name, yaml string
		pgm        []byte
		want       string // substring of the error
	}{
		{"no colon", "image m.pgm\n", img, "m.yaml:1: want key: value"},
		{"flow mapping", "{image: m.pgm, resolution: 0.1, origin: [0, 0, 0], negate: 0, occupied_thresh: 0.65, free_thresh: 0.2}\n", img, "m.yaml:1: a flow mapping"},
		{"bad resolution", "image: m.pgm\nresolution: fast\n", img, `m.yaml:2: "fast" is not a finite number`},
		{"zero resolution", "image: m.pgm\nresolution: 0\n", img, "m.yaml:2: resolution 0: want 0.001..100 m per pixel"},
		// Beyond the API's limits: refused here with the line, not sent as
		// an infinite map bound.
		{"huge resolution", "image: m.pgm\nresolution: 1e300\n", img, "m.yaml:2: resolution 1e300: want 0.001..100"},
		{"origin far away", strings.Replace(good, "[0, 0, 0]", "[1e300, 0, 0]", 1), img, "m.yaml:3: origin (1e+300, 0): x and y must lie within ±1e+06 m"},
		{"origin of two", strings.Replace(good, "[0, 0, 0]", "[0, 0]", 1), img, "m.yaml:3: origin has 2 elements"},
		{"bad negate", strings.Replace(good, "negate: 0", "negate: maybe", 1), img, "m.yaml:4: negate maybe"},
		{"bad mode", good + "mode: fancy\n", img, "m.yaml:7: mode fancy"},
		{"missing key", "image: m.pgm\nresolution: 0.05\n", img, `key "origin" missing`},
		{"duplicate key", good + "resolution: 0.1\n", img, `m.yaml:7: key "resolution" already given on line 2`},
		{"thresholds swapped", strings.Replace(good, "free_thresh: 0.25", "free_thresh: 0.7", 1), img, "m.yaml:6: thresholds free 0.7, occupied 0.65"},
		{"missing image", good, nil, "m.pgm: no such file"},
		{"cut png content named .pgm", good, []byte("\x89PNG\r\n\x1a\n\x00\x00"), "%DIR%/m.pgm: the file is truncated (unexpected EOF) (the image of %DIR%/m.yaml)"},
		{"ppm", good, []byte("P6\n1 1\n255\nabc"), "%DIR%/m.pgm:1: a PPM (colour) image (the image of %DIR%/m.yaml): map images are read as PGM (P2/P5), PNG, BMP, JPEG or GIF"},
		{"bad width on line 3", good, []byte("P5\n# c\nwide 2\n255\n"), `m.pgm:3: width "wide"`},
		{"P5 short raster", good, []byte("P5\n5 2\n255\n\x00\x01"), "m.pgm: byte 13: raster ends early"},
		{"P5 sample over maxval", good, append([]byte("P5\n5 2\n100\n"), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 200}...), "m.pgm: byte 20: sample 200 exceeds maxval 100"},
		{"P2 sample over maxval on line 4", good, []byte("P2\n5 2\n100\n0 0 0 0 0\n0 0 101 0 0\n"), `m.pgm:5: sample "101"`},
		{"P2 ends early", good, []byte("P2\n5 2\n255\n0 0 0\n"), "m.pgm:5: file ends before the sample"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := writeMap(t, dir, "m", tc.yaml, tc.pgm)
			_, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
			tc.want = strings.ReplaceAll(tc.want, "%DIR%", dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(tc.want, ":") && strings.Contains(tc.want, ".yaml:") && !errors.Is(err, slamio.ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
		})
	}
}

// TestROSMapImageReadByContent: map_server reads an image by its content,
// so a PGM whose name ends .png (or has no extension) is read as a PGM, and
// a PNG named .pgm as a PNG.
func TestROSMapImageReadByContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := "resolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	for name, content := range map[string][]byte{"pgm.png": p5(5, 2, 255, pixels), "pgm": p5(5, 2, 255, pixels), "png.pgm": greyImages(t)["grey.png"]} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		path := writeMap(t, dir, name+"-map", "image: "+name+"\n"+good, nil)
		m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
		if err != nil || m.Grid.GetMeta().GetWidth() != 5 {
			t.Errorf("%s: %v, %v", name, m, err)
		}
	}
}

// TestWillowMapImports reads the Willow Garage map of ../shared/realdata as
// the willow-3 mission's converter did (occupied_thresh 0.22, the YAML's
// free_thresh 0.196) and checks size, resolution, origin and the cell
// counts its .expected.json states.
func TestWillowMapImports(t *testing.T) {
	t.Parallel()
	occ := 0.22
	m, err := slamio.ReadROSMap(filepath.Join(realdata, "rosmaps", "willow-2010-02-18-0.10.yaml"), slamio.ROSMapOptions{OccupiedThresh: &occ})
	if err != nil {
		t.Fatal(err)
	}
	meta := m.Grid.GetMeta()
	if meta.GetWidth() != 566 || meta.GetHeight() != 608 || meta.GetResolution() != 0.1 || meta.GetOrigin().GetX() != 0 || meta.GetOrigin().GetY() != 0 || m.Yaw != 0 {
		t.Fatalf("meta %v yaw %g, want 566x608 at 0.1 m from (0, 0, 0)", meta, m.Yaw)
	}
	var occupied, free, unknown int
	for _, c := range cells(m.Grid) {
		switch c {
		case 100:
			occupied++
		case 0:
			free++
		case -1:
			unknown++
		default:
			t.Fatalf("trinary map has cell value %d", c)
		}
	}
	if occupied != 9946 || free != 109207 || unknown != 224975 {
		t.Errorf("occupied %d free %d unknown %d, want 9946 109207 224975 (willow-3.expected.json)", occupied, free, unknown)
	}
	// With the YAML's own threshold only the darkest wall pixels remain.
	m, err = slamio.ReadROSMap(filepath.Join(realdata, "rosmaps", "willow-2010-02-18-0.10.yaml"), slamio.ROSMapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	occupied = 0
	for _, c := range cells(m.Grid) {
		if c == 100 {
			occupied++
		}
	}
	if occupied != 544 {
		t.Errorf("with occupied_thresh 0.65: %d occupied, want 544 (SOURCES.md)", occupied)
	}
}

// TestMapYAMLByteOrderMark: a YAML behind a UTF-8 byte order mark, with
// CRLF line ends, reads as without them.
func TestMapYAMLByteOrderMark(t *testing.T) {
	t.Parallel()
	y, err := slamio.ParseMapYAML([]byte("\ufeffimage: m.pgm\r\nresolution: 0.05\r\norigin: [1, 2, 0]\r\nnegate: 0\r\noccupied_thresh: 0.65\r\nfree_thresh: 0.25\r\n"), "bom.yaml")
	if err != nil || y.Image != "m.pgm" || y.Origin[1] != 2 {
		t.Fatalf("%+v, %v", y, err)
	}
}

// TestMapYAMLBlocksOfOtherKeysAndTheDocumentEnd: a key map_server does not
// read may hold a nested block or a block list, "..." and a second
// document's "---" end the document, and keys may be quoted, as yaml-cpp
// reads them (found by helpers: each was refused).
func TestMapYAMLBlocksOfOtherKeysAndTheDocumentEnd(t *testing.T) {
	t.Parallel()
	doc := "image: m.pgm\nmetadata:\n  author: me\n  tools:\n    - gmapping\n\n    - map_saver\nresolution: 0.05\n" +
		"tags:\n- lab\n- floor 2\norigin: [1, 2, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n...\nnot: [a map key\n"
	y, err := slamio.ParseMapYAML([]byte(doc), "blocks.yaml")
	if err != nil || y.Image != "m.pgm" || y.Resolution != 0.05 || y.Origin != [3]float64{1, 2, 0} || y.FreeThresh != 0.25 {
		t.Fatalf("%+v, %v", y, err)
	}
	// A second document is not the map's, as yaml-cpp's LoadFile reads
	// only the first; quoted keys read as plain ones (both found by a
	// helper: the second document's keys were taken as duplicates, and
	// "image": as a key of its own).
	two := "---\n\"image\": m.pgm\n'resolution' : 0.05\norigin: [1, 2, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n---\nimage: other.pgm\n"
	if y, err := slamio.ParseMapYAML([]byte(two), "two.yaml"); err != nil || y.Image != "m.pgm" || y.Resolution != 0.05 {
		t.Errorf("two documents, quoted keys: %+v, %v", y, err)
	}
	// An indented line under a key map_server reads is still refused.
	if _, err := slamio.ParseMapYAML([]byte("image: m.pgm\n  extra: 1\n"), "indent.yaml"); err == nil || !strings.Contains(err.Error(), "indent.yaml:2") {
		t.Errorf("an indented line under image: %v, want an error naming line 2", err)
	}
}

// TestMapYAMLQuotedNumbers: quoted numbers read as plain ones, as
// yaml-cpp converts them for map_server (found by a review: a quoted
// resolution was refused as not a number).
func TestMapYAMLQuotedNumbers(t *testing.T) {
	t.Parallel()
	y, err := slamio.ParseMapYAML([]byte("image: \"m.pgm\"\nresolution: \"0.05\"\norigin: ['1.5', \"-2\", 0]\nnegate: '0'\noccupied_thresh: '0.65'\nfree_thresh: \"0.25\"\n"), "quoted.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if y.Image != "m.pgm" || y.Resolution != 0.05 || y.Origin != [3]float64{1.5, -2, 0} || y.OccupiedThresh != 0.65 || y.FreeThresh != 0.25 {
		t.Fatalf("%+v", y)
	}
	if _, err := slamio.ParseMapYAML([]byte("image: m.pgm\nresolution: \"five\"\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"), "words.yaml"); err == nil || !strings.Contains(err.Error(), "words.yaml:2") {
		t.Fatalf("a quoted word as resolution: %v, want an error naming line 2", err)
	}
}

// TestROSMapMissingImageNamesTheLine: a YAML whose image is not there
// names the YAML's image line and the path tried, and stays an
// fs.ErrNotExist (an I/O error, not a malformed file).
func TestROSMapMissingImageNamesTheLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeMap(t, dir, "m", "# saved by hand\n\nimage: gone.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n", nil)
	_, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
	want := path + ":3: image gone.pgm: stat " + filepath.Join(dir, "gone.pgm")
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want it to contain %q and wrap fs.ErrNotExist", err, want)
	}
}

// allocatedDuring returns the bytes the process allocated while f ran.
// Tests using it are not parallel: parallel tests wait until it is done.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// sparseImage writes header and then zeros up to size bytes (a sparse file,
// cheap on disk) as dir/m.pgm, with its map YAML, and returns the YAML's path.
func sparseImage(t *testing.T, dir, header string, size int64) string {
	t.Helper()
	path := writeMap(t, dir, "m", "image: m.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n", []byte(header))
	if err := os.Truncate(filepath.Join(dir, "m.pgm"), size); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestROSMapImageReadNoFurtherThanItsHeaderSays: an image whose header
// announces too many pixels is refused from its first bytes, not after
// reading a gigabyte; a raw image is read to the end of its raster and no
// further. (Not parallel: it counts the process's allocations.)
func TestROSMapImageReadNoFurtherThanItsHeaderSays(t *testing.T) {
	const limit = 4 << 20 // far below the files' sizes
	var err error
	huge := sparseImage(t, t.TempDir(), "P5\n# CREATOR: map_saver.cpp 0.050 m/pix\n30000 30000\n255\n", 1<<30)
	if n := allocatedDuring(func() { _, err = slamio.ReadROSMap(huge, slamio.ROSMapOptions{}) }); n > limit {
		t.Errorf("refusing a 1 GiB image allocated %d bytes", n)
	}
	if err == nil || !strings.Contains(err.Error(), "m.pgm:4: image 30000x30000 has more than") {
		t.Errorf("1 GiB image: %v", err)
	}

	var m *slamio.ROSMap
	trailing := sparseImage(t, t.TempDir(), "P5\n5 2\n255\n", 256<<20)
	if n := allocatedDuring(func() { m, err = slamio.ReadROSMap(trailing, slamio.ROSMapOptions{}) }); n > limit {
		t.Errorf("a 5x2 image followed by 256 MiB allocated %d bytes", n)
	}
	if err != nil || m.Grid.GetMeta().GetWidth() != 5 || m.Grid.GetMeta().GetHeight() != 2 {
		t.Errorf("5x2 image followed by 256 MiB: %v", err)
	}
}

// TestROSMapImageBeyondTheFirstRead: images whose raster runs past the
// bytes read first to learn the image's size read as a whole file does, and
// a header comment of 100 KiB is read; a header past 1 MiB is refused.
func TestROSMapImageBeyondTheFirstRead(t *testing.T) {
	t.Parallel()
	yaml := "image: m.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	long := "P5\n# " + strings.Repeat("a comment longer than the first read ", 3000) + "\n5 2\n255\n"
	pix := p5(5, 2, 255, pixels)
	raster := pix[len(pix)-10:]
	big := make([]uint16, 300*300)
	for i := range big {
		big[i] = uint16(i % 256)
	}
	bigImg := p5(300, 300, 255, big)
	// A width whose digits straddle the end of the header's bound.
	pad := "P5\n#" + strings.Repeat("x", 1<<20-len("P5\n#")-2) + "\n3"
	straddle := append([]byte(pad+"00 300\n255\n"), bigImg[len(bigImg)-300*300:]...)
	for _, tc := range []struct {
		name  string
		image []byte
		w     uint32
		want  string // substring of the error; empty: the image reads
	}{
		{"a long header comment", append([]byte(long), raster...), 5, ""},
		{"raster past the first read", bigImg, 300, ""},
		{"raster cut past the first read", bigImg[:70000], 0, "raster ends early"},
		{"header past its bound", straddle, 0, "m.pgm:1: the PGM header runs past the file's first 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := slamio.ReadROSMap(writeMap(t, t.TempDir(), "m", yaml, tc.image), slamio.ROSMapOptions{})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || m.Grid.GetMeta().GetWidth() != tc.w {
				t.Fatalf("%v, width %d, want %d", err, m.Grid.GetMeta().GetWidth(), tc.w)
			}
		})
	}
}

// TestROSMapRefusesFilesItCannotBoundOrFinish: a FIFO or a device as the
// image or the YAML, a YAML of more than a few lines, and a plain image
// larger than its samples could take are refused before they are read
// (a FIFO would block its reader, /dev/zero never ends).
func TestROSMapRefusesFilesItCannotBoundOrFinish(t *testing.T) {
	good := "image: m.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	imageAt := func(target string) string {
		d := t.TempDir()
		link := filepath.Join(d, "m.pgm")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		return writeMap(t, d, "m", good, nil)
	}
	bigYAML := writeMap(t, t.TempDir(), "m", good, p5(5, 2, 255, pixels))
	if err := os.Truncate(bigYAML, 2<<30); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"FIFO image", imageAt(fifo), "not a regular file"},
		{"/dev/zero image", imageAt("/dev/zero"), "not a regular file"},
		{"FIFO YAML", link("m.yaml", fifo), "not a regular file"},
		{"/dev/zero YAML", link("m.yaml", "/dev/zero"), "not a regular file"},
		{"2 GiB YAML", bigYAML, "2147483648 bytes: a map YAML is a few lines"},
		{"1 GiB plain image of 40x30", sparseImage(t, t.TempDir(), "P2\n40 30\n255\n", 1<<30), "m.pgm:3: a plain PGM of 40x30 pixels in 1073741824 bytes"},
	} {
		var err error
		if n := allocatedDuring(func() { _, err = slamio.ReadROSMap(tc.yaml, slamio.ROSMapOptions{}) }); n > 4<<20 {
			t.Errorf("%s: allocated %d bytes", tc.name, n)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A map saved the way gmapping and map_server save one (4000×4000 cells at
// 0.05 m, a building in a corner of it, the rest unknown) is 16 M cells,
// four times what an agent may send; imported, it is cut to its known
// cells, each in its place, and the request is accepted. The yaw keeps
// the cut in the agent frame.
func TestROSMapCutToItsKnownCells(t *testing.T) {
	t.Parallel()
	const w, h = 4000, 4000
	pix := make([]uint16, w*h)
	for i := range pix {
		pix[i] = 205 // unknown
	}
	// The building: free cells in image rows 3000..3499, columns 102..899,
	// one wall cell at its far corner (image row 3000 is grid row 999). The
	// cut starts at column 100, a multiple of 4, and at grid row 500.
	for r := 3000; r < 3500; r++ {
		for c := 102; c < 900; c++ {
			pix[r*w+c] = 254
		}
	}
	pix[3000*w+899] = 0
	dir := t.TempDir()
	path := writeMap(t, dir, "gmapping", "image: gmapping.pgm\nresolution: 0.05\norigin: [-100.0, -100.0, 0.5]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.196\n",
		p5(w, h, 255, pix))
	m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := slamio.ROSMapAgent(m, "gmapping", true, &slam.Pose2D{})
	sub := a.GetSubmap()
	meta := sub.GetMeta()
	if meta.GetWidth() != 800 || meta.GetHeight() != 500 || len(sub.GetData()) != 800*500 {
		t.Fatalf("submap %dx%d (%d cells), want the building's 800x500", meta.GetWidth(), meta.GetHeight(), len(sub.GetData()))
	}
	// The wall cell is the cut's top right cell; in the YAML frame its
	// centre lies where the uncut grid put it: origin + (899.5, 999.5)
	// cells along axes turned by the yaw.
	if c := int8(sub.GetData()[499*800+799]); c != 100 {
		t.Fatalf("cut's top right cell %d, want the wall (100)", c)
	}
	g := a.GetInitialGuess()
	o := meta.GetOrigin()
	x, y := slam.Pose2D{X: g.GetX(), Y: g.GetY(), Theta: g.GetTheta()}.Apply(o.GetX()+799.5*0.05, o.GetY()+499.5*0.05)
	wx, wy := slam.Pose2D{X: -100, Y: -100, Theta: 0.5}.Apply(899.5*0.05, 999.5*0.05)
	if math.Abs(x-wx) > 1e-9 || math.Abs(y-wy) > 1e-9 {
		t.Errorf("wall cell at (%g, %g) in the YAML frame, want (%g, %g)", x, y, wx, wy)
	}
	if _, err := slamio.Request("m", []*typesv1.Agent{a}, nil, nil, 0.05, 1); err != nil {
		t.Errorf("request of the cut map: %v", err)
	}
	// A grid with no unknown border, or no known cell, is returned as it is.
	for _, data := range [][]byte{{0, 100, 0, 0}, {0xff, 0xff, 0xff, 0xff}} {
		og := &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 1, Width: 2, Height: 2, Origin: &typesv1.Pose2D{X: 3}}, Data: data}
		if got := slamio.CropToKnown(og); got != og {
			t.Errorf("CropToKnown(%v) = %v, want the grid itself", data, got)
		}
	}
}

// TestNav2MapSaverUnknownStaysUnknown: Nav2's map_saver writes a trinary
// map's unknown cells as grey 205 beside free_thresh 0.25, under which nav2
// loads them as free (slam_toolbox issue 587). Such a map is read with ROS
// 1's free_thresh 0.196, its unknown cells unknown, and SaverUnknown counts
// them; a free_thresh given as an option, an image with another grey,
// negate, or an alpha channel keep nav2's reading.
func TestNav2MapSaverUnknownStaysUnknown(t *testing.T) {
	t.Parallel()
	const nav2 = "image: m.pgm\nmode: trinary\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	saved := []uint16{0, 205, 254, 205} // one row: occupied, unknown, free, unknown
	free := 0.25
	for _, tc := range []struct {
		name    string
		yaml    string
		img     []byte
		opts    slamio.ROSMapOptions
		want    []int8
		unknown int
		asFree  int // 205s read as free in an image that is not map_saver's alone
	}{
		{"map_saver's image and YAML", nav2, p5(4, 1, 255, saved), slamio.ROSMapOptions{}, []int8{100, -1, 0, -1}, 2, 0},
		{"16-bit samples of the same greys", nav2, p5(4, 1, 65535, []uint16{0, 205 * 257, 254 * 257, 205 * 257}), slamio.ROSMapOptions{}, []int8{100, -1, 0, -1}, 2, 0},
		{"plain PGM", nav2, []byte("P2\n4 1\n255\n0 205 254 205\n"), slamio.ROSMapOptions{}, []int8{100, -1, 0, -1}, 2, 0},
		{"free_thresh given as an option", nav2, p5(4, 1, 255, saved), slamio.ROSMapOptions{FreeThresh: &free}, []int8{100, 0, 0, 0}, 0, 0},
		{"another grey in the image", nav2, p5(4, 1, 255, []uint16{0, 205, 254, 200}), slamio.ROSMapOptions{}, []int8{100, 0, 0, 0}, 0, 1},
		{"ROS 1's free_thresh", strings.Replace(nav2, "0.25", "0.196", 1), p5(4, 1, 255, saved), slamio.ROSMapOptions{}, []int8{100, -1, 0, -1}, 0, 0},
		{"negate", strings.Replace(nav2, "negate: 0", "negate: 1", 1), p5(4, 1, 255, saved), slamio.ROSMapOptions{}, []int8{0, 100, 100, 100}, 0, 0},
		{"scale mode", strings.Replace(nav2, "trinary", "scale", 1), p5(4, 1, 255, saved), slamio.ROSMapOptions{}, []int8{100, 0, 0, 0}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeMap(t, t.TempDir(), "m", tc.yaml, tc.img)
			m, err := slamio.ReadROSMap(path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := cells(m.Grid); !slices.Equal(got, tc.want) || m.SaverUnknown != tc.unknown || m.SaverGreyAsFree != tc.asFree {
				t.Errorf("cells %v, SaverUnknown %d, SaverGreyAsFree %d; want %v, %d, %d", got, m.SaverUnknown, m.SaverGreyAsFree, tc.want, tc.unknown, tc.asFree)
			}
			if tc.asFree > 0 && m.SaverGreyFreeThresh != slamio.ROS1FreeThresh {
				t.Errorf("SaverGreyFreeThresh %g, want %g", m.SaverGreyFreeThresh, slamio.ROS1FreeThresh)
			}
			if tc.unknown > 0 && m.YAML.FreeThresh != slamio.ROS1FreeThresh {
				t.Errorf("YAML's free_thresh %g, want the one used, %g", m.YAML.FreeThresh, slamio.ROS1FreeThresh)
			}
		})
	}
}

// TestCoarsenToFit: a grid over the cell limit is coarsened by the
// smallest whole factor that fits, never coarser than the mission's
// resolution; a coarse cell holds the largest known value of its block.
func TestCoarsenToFit(t *testing.T) {
	t.Parallel()
	// 5 × 3 at 0.025 m, bottom row first.
	g := &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.025, Width: 5, Height: 3, Origin: &typesv1.Pose2D{X: -1, Y: 2}},
		Data: []byte{
			0xff, 0, 0xff, 0xff, 100,
			0xff, 0xff, 40, 0xff, 0xff,
			0, 0, 0xff, 0xff, 0xff,
		},
	}
	c, k := slamio.CoarsenToFit(g, 6, 0.05)
	if k != 2 {
		t.Fatalf("factor %d, want 2", k)
	}
	if m := c.GetMeta(); m.GetResolution() != 0.05 || m.GetWidth() != 3 || m.GetHeight() != 2 || m.GetOrigin().GetX() != -1 || m.GetOrigin().GetY() != 2 {
		t.Errorf("meta %v, want 3x2 at 0.05 m from (-1, 2)", m)
	}
	if got, want := cells(c), []int8{0, 40, 100, 0, -1, -1}; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if same, k := slamio.CoarsenToFit(g, 15, 0.05); same != g || k != 1 {
		t.Errorf("a grid that fits came back coarsened by %d", k)
	}
	if same, k := slamio.CoarsenToFit(g, 2, 0.05); same != g || k != 1 {
		t.Errorf("a grid that fits only coarser than the mission came back coarsened by %d", k)
	}
	// A YAML's rounded resolution: 3 × 0.0166667 counts as 0.05.
	rounded := &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.0166667, Width: 6, Height: 3, Origin: &typesv1.Pose2D{}}, Data: make([]byte, 18)}
	if c, k := slamio.CoarsenToFit(rounded, 2, 0.05); k != 3 || c.GetMeta().GetResolution() != 0.05 {
		t.Errorf("0.0166667 m to 2 cells within 0.05 m: factor %d, meta %v; want 3, at 0.05 m", k, c.GetMeta())
	}
	if c, k := slamio.CoarsenToFit(g, 2, 0.1); k != 3 || c.GetMeta().GetWidth() != 2 || c.GetMeta().GetHeight() != 1 || c.GetMeta().GetResolution() != 0.075 {
		t.Errorf("to 2 cells within 0.1 m: factor %d, meta %v; want 3, 2x1 at 0.075 m", k, c.GetMeta())
	}
}
