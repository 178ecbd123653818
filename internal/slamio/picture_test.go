package slamio_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/slammesh/slammesh/internal/slamio"
)

// mapYAML is a map YAML naming image, in mode (trinary, scale or raw).
func mapYAML(image, mode string) string {
	return "image: " + image + "\nmode: " + mode + "\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
}

// readImageMap writes img (encoded bytes) as dir/name and its YAML in
// mode, and reads the map.
func readImageMap(t *testing.T, name string, img []byte, mode string) (*slamio.ROSMap, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
		t.Fatal(err)
	}
	return slamio.ReadROSMap(writeMap(t, dir, "m", mapYAML(name, mode), nil), slamio.ROSMapOptions{})
}

func encoded(t *testing.T, encode func(*bytes.Buffer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// greyImages returns the mode tests' 5x2 pixels in every image kind that
// carries them exactly and has no alpha channel.
func greyImages(t *testing.T) map[string][]byte {
	gray := image.NewGray(image.Rect(0, 0, 5, 2))
	gray16 := image.NewGray16(gray.Rect)
	rgb := image.NewRGBA(gray.Rect)
	pal := image.NewPaletted(gray.Rect, nil)
	for i, v := range pixels {
		x, y := i%5, i/5
		gray.SetGray(x, y, color.Gray{uint8(v)})
		gray16.SetGray16(x, y, color.Gray16{v * 0x101})
		rgb.Set(x, y, color.RGBA{uint8(v), uint8(v), uint8(v), 0xff})
		pal.Palette = append(pal.Palette, color.RGBA{uint8(v), uint8(v), uint8(v), 0xff})
		pal.SetColorIndex(x, y, uint8(i))
	}
	return map[string][]byte{
		"grey.png":    encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, gray) }),
		"grey16.png":  encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, gray16) }),
		"rgb.png":     encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, rgb) }),
		"palette.png": encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, pal) }),
		"grey.bmp":    encoded(t, func(b *bytes.Buffer) error { return bmp.Encode(b, gray) }),
		"rgb.bmp":     encoded(t, func(b *bytes.Buffer) error { return bmp.Encode(b, rgb) }),
		"palette.gif": encoded(t, func(b *bytes.Buffer) error { return gif.Encode(b, pal, nil) }),
	}
}

// TestOpaqueImagesReadAsTheirPGM: an image without alpha, of any format,
// gives the cells its greys give as a PGM in every mode (nav2 reads a
// colour pixel's shade as the mean of its channels: a grey one is its
// value), and with negate.
func TestOpaqueImagesReadAsTheirPGM(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"trinary", "scale", "raw"} {
		for _, negate := range []string{"0", "1"} {
			dir := t.TempDir()
			yaml := strings.Replace(mapYAML("m.pgm", mode), "negate: 0", "negate: "+negate, 1)
			want, err := slamio.ReadROSMap(writeMap(t, dir, "m", yaml, p5(5, 2, 255, pixels)), slamio.ROSMapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for name, img := range greyImages(t) {
				if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
					t.Fatal(err)
				}
				yaml := strings.Replace(yaml, "m.pgm", name, 1)
				got, err := slamio.ReadROSMap(writeMap(t, dir, name, yaml, nil), slamio.ROSMapOptions{})
				if err != nil {
					t.Errorf("%s %s negate %s: %v", name, mode, negate, err)
					continue
				}
				if !slices.Equal(cells(got.Grid), cells(want.Grid)) || got.Grid.GetMeta().GetWidth() != 5 || got.Grid.GetMeta().GetHeight() != 2 {
					t.Errorf("%s %s negate %s: cells %v (%vx%v), the PGM's %v", name, mode, negate, cells(got.Grid),
						got.Grid.GetMeta().GetWidth(), got.Grid.GetMeta().GetHeight(), cells(want.Grid))
				}
			}
		}
	}
}

// alphaPixels and what nav2's loadMapFromFile makes of them with
// thresholds 0.65/0.25, worked by hand: trinary averages alpha in with
// the colour (shade = (r+g+b+a)/4/255), scale makes every pixel that is
// not opaque unknown, raw ignores alpha (shade = (r+g+b)/3/255, kept when
// round(shade·255) is 0..100).
var alphaPixels = []struct {
	c                   color.NRGBA
	trinary, scale, raw int8
}{
	{color.NRGBA{0, 0, 0, 0}, 100, -1, 0},          // shade 0: occ 1
	{color.NRGBA{128, 128, 128, 0}, -1, -1, -1},    // 96/255: occ 0.62; raw 128
	{color.NRGBA{255, 255, 255, 255}, 0, 0, -1},    // white; raw 255
	{color.NRGBA{0, 0, 0, 255}, 100, 100, 0},       // 63.75/255: occ 0.75
	{color.NRGBA{100, 100, 100, 128}, -1, -1, 100}, // 107/255: occ 0.58
	{color.NRGBA{255, 0, 0, 255}, -1, 100, 85},     // 127.5/255: occ 0.5; scale 85/255: occ 0.67
	{color.NRGBA{140, 140, 140, 255}, -1, 50, -1},  // 168.75/255: occ 0.34; scale occ 0.451: rint(50.2)
	{color.NRGBA{254, 254, 254, 255}, 0, 0, -1},    // map_saver's free
}

// v4BMP encodes img as a 32-bit BMP with a BITMAPV4HEADER and alpha mask,
// the kind whose alpha decoders keep (image editors write it).
func v4BMP(img *image.NRGBA) []byte {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("BM")
	le(uint32(14 + 108 + 4*w*h))
	le(uint32(0))
	le(uint32(14 + 108)) // pixels' offset
	le(uint32(108))      // BITMAPV4HEADER
	le(int32(w))
	le(int32(-h)) // top row first
	le(uint16(1))
	le(uint16(32))
	le(uint32(3)) // BI_BITFIELDS
	le(uint32(4 * w * h))
	le([4]uint32{2835, 2835, 0, 0})
	le([4]uint32{0xff0000, 0xff00, 0xff, 0xff000000}) // R, G, B, A masks
	b.Write(make([]byte, 108-56))                     // colour space, endpoints, gamma
	for y := range h {
		for x := range w {
			c := img.NRGBAAt(x, y)
			b.Write([]byte{c.B, c.G, c.R, c.A})
		}
	}
	return b.Bytes()
}

// TestAlphaReadAsNav2Does: RGBA pixels, as a PNG (colour type 6), a
// paletted PNG with tRNS and a 32-bit BMP with an alpha mask, in each
// mode, against alphaPixels' hand-worked cells.
func TestAlphaReadAsNav2Does(t *testing.T) {
	t.Parallel()
	n := len(alphaPixels)
	rgba := image.NewNRGBA(image.Rect(0, 0, n, 1))
	pal := image.NewPaletted(rgba.Rect, nil)
	for i, p := range alphaPixels {
		rgba.SetNRGBA(i, 0, p.c)
		pal.Palette = append(pal.Palette, p.c)
		pal.SetColorIndex(i, 0, uint8(i))
	}
	kinds := map[string][]byte{
		"rgba.png":    encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, rgba) }),
		"palette.png": encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, pal) }),
		"rgba.bmp":    v4BMP(rgba),
	}
	for name, img := range kinds {
		for _, mode := range []string{"trinary", "scale", "raw"} {
			m, err := readImageMap(t, name, img, mode)
			if err != nil {
				t.Fatalf("%s %s: %v", name, mode, err)
			}
			got := cells(m.Grid)
			for i, p := range alphaPixels {
				want := map[string]int8{"trinary": p.trinary, "scale": p.scale, "raw": p.raw}[mode]
				if got[i] != want {
					t.Errorf("%s %s: pixel %v → %d, want %d", name, mode, p.c, got[i], want)
				}
			}
		}
	}
}

// TestOpaqueAlphaChannelStillAveragedIn: nav2 averages alpha in whenever
// the file has an alpha channel, even if every pixel is opaque: black
// reads occ 0.75, so occupied_thresh 0.8 leaves it unknown as RGBA but
// occupied as RGB. (Go's PNG encoder writes an opaque image as RGB; the
// 32-bit BMP keeps its alpha channel.)
func TestOpaqueAlphaChannelStillAveragedIn(t *testing.T) {
	t.Parallel()
	black := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	black.SetNRGBA(0, 0, color.NRGBA{0, 0, 0, 255})
	occ := 0.8
	for name, img := range map[string][]byte{
		"rgba.bmp": v4BMP(black),
		"rgb.png":  encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, black) }),
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := slamio.ReadROSMap(writeMap(t, dir, "m", mapYAML(name, "trinary"), nil), slamio.ROSMapOptions{OccupiedThresh: &occ})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int8{"rgba.bmp": -1, "rgb.png": 100}[name]
		if got := cells(m.Grid)[0]; got != want {
			t.Errorf("%s: opaque black at occupied_thresh 0.8 → %d, want %d", name, got, want)
		}
	}
}

// TestJPEGMapReads: a lossy JPEG of black, free-white and unknown-grey
// blocks reads as those classes (its pixels are off by a few levels).
func TestJPEGMapReads(t *testing.T) {
	t.Parallel()
	img := image.NewGray(image.Rect(0, 0, 48, 16))
	for x := range 48 {
		for y := range 16 {
			img.SetGray(x, y, color.Gray{[]uint8{0, 254, 128}[x/16]})
		}
	}
	m, err := readImageMap(t, "m.jpg", encoded(t, func(b *bytes.Buffer) error { return jpeg.Encode(b, img, &jpeg.Options{Quality: 95}) }), "trinary")
	if err != nil {
		t.Fatal(err)
	}
	got := cells(m.Grid)
	for _, x := range []int{8, 24, 40} {
		if want := []int8{100, 0, -1}[x/16]; got[8*48+x] != want {
			t.Errorf("block %d: cell %d, want %d", x/16, got[8*48+x], want)
		}
	}
}

// TestWillowMapAsPNGAndBMP: the real Willow Garage map saved as an 8-bit
// grey PNG, an RGB PNG and a BMP reads cell for cell as its PGM, with the
// willow-3 mission's threshold.
func TestWillowMapAsPNGAndBMP(t *testing.T) {
	t.Parallel()
	src := filepath.Join(realdata, "rosmaps", "willow-2010-02-18-0.10")
	occ := 0.22
	want, err := slamio.ReadROSMap(src+".yaml", slamio.ROSMapOptions{OccupiedThresh: &occ})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(src + ".pgm")
	if err != nil {
		t.Fatal(err)
	}
	pgm, err := slamio.DecodePGM(raw, src+".pgm")
	if err != nil {
		t.Fatal(err)
	}
	yaml, err := os.ReadFile(src + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	gray := image.NewGray(image.Rect(0, 0, pgm.Width, pgm.Height))
	rgb := image.NewRGBA(gray.Rect)
	for i, v := range pgm.Pix {
		gray.Pix[i] = uint8(v)
		rgb.SetRGBA(i%pgm.Width, i/pgm.Width, color.RGBA{uint8(v), uint8(v), uint8(v), 0xff})
	}
	for name, img := range map[string][]byte{
		"willow.png":     encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, gray) }),
		"willow-rgb.png": encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, rgb) }),
		"willow.bmp":     encoded(t, func(b *bytes.Buffer) error { return bmp.Encode(b, gray) }),
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
			t.Fatal(err)
		}
		y := strings.Replace(string(yaml), "willow-2010-02-18-0.10.pgm", name, 1)
		got, err := slamio.ReadROSMap(writeMap(t, dir, "willow", y, nil), slamio.ROSMapOptions{OccupiedThresh: &occ})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Grid.GetData(), want.Grid.GetData()) || got.Grid.GetMeta().GetWidth() != 566 || got.Grid.GetMeta().GetHeight() != 608 {
			t.Errorf("%s: %vx%v, cells differ from the PGM's", name, got.Grid.GetMeta().GetWidth(), got.Grid.GetMeta().GetHeight())
		}
	}
}

// pngWithSize is a PNG signature and an IHDR claiming w x h 8-bit grey
// pixels, with no pixel data.
func pngWithSize(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, w), h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// TestPictureErrorsNameTheFiles: a truncated PNG, one claiming more
// pixels than a map may have (refused before any raster is allocated), a
// TIFF and a file that is no image each fail naming the image and its
// YAML.
func TestPictureErrorsNameTheFiles(t *testing.T) {
	full := encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, image.NewGray(image.Rect(0, 0, 64, 64))) })
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"truncated.png", full[:len(full)-20], "truncated.png: the file is truncated (png: invalid format: unexpected EOF) (the image of "},
		{"signature.png", []byte("\x89PNG\r\n\x1a\n"), "signature.png: the file is truncated (unexpected EOF) (the image of "},
		{"huge.png", pngWithSize(100000, 100000), "huge.png: a png image of 100000x100000 pixels: more than the 67108864 a map may have (the image of "},
		{"map.tif", []byte("II*\x00\x08\x00\x00\x00"), "map.tif:1: a TIFF image (the image of "},
		{"notes.txt", []byte("a map, honest"), "notes.txt:1: not an image (the image of "},
	} {
		var err error
		if n := allocatedDuring(func() { _, err = readImageMap(t, tc.name, tc.img, "trinary") }); n > 4<<20 {
			t.Errorf("%s: allocated %d bytes", tc.name, n)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestNav2MapSaverUnknownStaysUnknownInPictures is
// TestNav2MapSaverUnknownStaysUnknown for map_saver's PNG output: grey or
// RGB with equal channels, opaque, reads its 205 as unknown; with an alpha
// channel in the file (averaged in by nav2) it keeps nav2's reading.
func TestNav2MapSaverUnknownStaysUnknownInPictures(t *testing.T) {
	t.Parallel()
	saved := []uint8{0, 205, 254, 205}
	gray := image.NewGray(image.Rect(0, 0, 4, 1))
	rgb := image.NewRGBA(image.Rect(0, 0, 4, 1))
	matte := image.NewNRGBA(image.Rect(0, 0, 4, 1))
	for x, v := range saved {
		gray.SetGray(x, 0, color.Gray{v})
		rgb.SetRGBA(x, 0, color.RGBA{v, v, v, 255})
		matte.SetNRGBA(x, 0, color.NRGBA{v, v, v, 255 - uint8(x)}) // not all opaque: PNG keeps the channel
	}
	for _, tc := range []struct {
		name    string
		img     image.Image
		want    []int8
		unknown int
		asFree  int
	}{
		{"grey", gray, []int8{100, -1, 0, -1}, 2, 0},
		{"rgb", rgb, []int8{100, -1, 0, -1}, 2, 0},
		{"grey and alpha", matte, []int8{100, 0, 0, 0}, 0, 2},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "m.png"), encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, tc.img) }), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "m.yaml")
		if err := os.WriteFile(path, []byte(mapYAML("m.png", "trinary")), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := slamio.ReadROSMap(path, slamio.ROSMapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]int8, len(m.Grid.GetData()))
		for i, c := range m.Grid.GetData() {
			got[i] = int8(c)
		}
		if tc.asFree > 0 && m.SaverGreyFreeThresh != 0.148 { // the 205 of alpha 254: occ 1 − (3·205 + 254)/1020 = 0.14804
			t.Errorf("%s: SaverGreyFreeThresh %g, want 0.148", tc.name, m.SaverGreyFreeThresh)
		}
		if !slices.Equal(got, tc.want) || m.SaverUnknown != tc.unknown || m.SaverGreyAsFree != tc.asFree {
			t.Errorf("%s: cells %v, SaverUnknown %d, SaverGreyAsFree %d; want %v, %d, %d", tc.name, got, m.SaverUnknown, m.SaverGreyAsFree, tc.want, tc.unknown, tc.asFree)
		}
	}
}
