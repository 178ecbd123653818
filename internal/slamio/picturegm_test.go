package slamio_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/slammesh/slammesh/internal/slamio"
)

// pngChunk is one PNG chunk: length, type, data, CRC of type and data.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(append(c, typ...), data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// pngFile writes a one-row PNG of colour type ct at 8 bits (row: the
// unfiltered samples) with the extra chunks before its IDAT: the colour
// types and chunks Go's encoder never writes.
func pngFile(w int, ct byte, row []byte, extra ...[]byte) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(append([]byte{0}, row...)) // filter type 0; a Buffer takes every write
	_ = zw.Close()
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(w)), 1)
	out := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", append(ihdr, 8, ct, 0, 0, 0))...)
	for _, c := range extra {
		out = append(out, c...)
	}
	out = append(out, pngChunk("IDAT", z.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// bmpFile writes a one-row BMP with a 40-byte info header: bits per
// pixel, compression, the palette (BGRX entries; nil for none), the bit
// fields (nil for none) and the pixel data as stored.
func bmpFile(w, bits int, compression uint32, palette, fields, pixels []byte) []byte {
	le := binary.LittleEndian
	off := 14 + 40 + len(fields) + len(palette)
	b := []byte("BM")
	b = le.AppendUint32(b, uint32(off+len(pixels)))
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(off))
	b = le.AppendUint32(b, 40)
	b = le.AppendUint32(b, uint32(w))
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, uint16(bits))
	b = le.AppendUint32(b, compression)
	b = le.AppendUint32(b, uint32(len(pixels)))
	b = le.AppendUint32(b, 2835)
	b = le.AppendUint32(b, 2835)
	b = le.AppendUint32(b, uint32(len(palette)/4))
	b = le.AppendUint32(b, 0)
	b = append(b, fields...)
	b = append(b, palette...)
	return append(b, pixels...)
}

// greyPalette is 256 BGRX grey entries: index v is grey v.
func greyPalette() []byte {
	p := make([]byte, 0, 1024)
	for v := range 256 {
		p = append(p, byte(v), byte(v), byte(v), 0)
	}
	return p
}

// TestImagesReadAsGraphicsMagickHandsThemToNav2: where Go's decoders and
// GraphicsMagick (which nav2's map_server reads images through) differ,
// a map loads as it does in Nav2. Each expected row is worked by hand from
// map_io.cpp with thresholds 0.65/0.25 (see picturegm.go); each case's
// first differing cell is what the plain decoder gave.
func TestImagesReadAsGraphicsMagickHandsThemToNav2(t *testing.T) {
	t.Parallel()
	// A GIF whose transparent index keeps its grey 128 in the colour
	// table: Go's encoder writes transparent entries black, so the table
	// is patched after encoding.
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{0, 0, 0, 255}, color.NRGBA{128, 128, 128, 0}})
	pal.SetColorIndex(1, 0, 1)
	var g bytes.Buffer
	if err := gif.Encode(&g, pal, nil); err != nil {
		t.Fatal(err)
	}
	gifBytes := g.Bytes()
	if gifBytes[10]&0x80 == 0 {
		t.Fatal("the encoder wrote no global colour table")
	}
	copy(gifBytes[13+3:], []byte{128, 128, 128})
	// The same behind a comment of 1.1 MB before the frame, past the first
	// bytes ReadROSMap reads to recognise a file.
	comment := []byte{0x21, 0xfe}
	for range 4400 {
		comment = append(comment, 250)
		comment = append(comment, bytes.Repeat([]byte("c"), 250)...)
	}
	comment = append(comment, 0)
	gifComment := append(append(slices.Clone(gifBytes[:13+6]), comment...), gifBytes[13+6:]...)

	for _, tc := range []struct {
		name, file, mode string
		img              []byte
		want             []int8
	}{
		// Grey+alpha PNG (colour type 4): per-pixel alpha dropped, the
		// channel set: opaque alpha is averaged in trinary ((3v+255)/4),
		// and scale mode sees every pixel opaque (plain: -1 -1 0).
		{"grey+alpha PNG, trinary", "ga.png", "trinary", pngFile(3, 4, []byte{0, 0, 128, 0, 254, 255}), []int8{100, -1, 0}},
		{"grey+alpha PNG, scale", "ga.png", "scale", pngFile(3, 4, []byte{0, 0, 128, 0, 254, 255}), []int8{100, 62, 0}},
		// An 8-bit RGB PNG's tRNS colour key: ignored, the channel set
		// (plain: -1 for the keyed grey in scale mode).
		{"RGB PNG with a tRNS key, scale", "key.png", "scale",
			pngFile(2, 2, []byte{128, 128, 128, 0, 0, 0}, pngChunk("tRNS", []byte{0, 128, 0, 128, 0, 128})), []int8{62, 100}},
		// 16-bit BMP, BI_RGB 5-5-5: field 12 is 12<<11 of 65535, raw
		// round(0.37501·255) = 96 (gobmp's full-range scaling: 99); 31 is
		// 247 > 100.
		{"16-bit BMP, raw", "565.bmp", "raw", bmpFile(2, 16, 0, nil, nil, []byte{0x8c, 0x31, 0xff, 0x7f}), []int8{96, -1}},
		// The same through bit fields, 5-6-5 (green 24 of 6 bits is 24<<10).
		{"16-bit bit-field BMP, raw", "bf.bmp", "raw",
			bmpFile(1, 16, 3, nil, []byte{0, 0xf8, 0, 0, 0xe0, 0x07, 0, 0, 0x1f, 0, 0, 0}, []byte{0x0c, 0x63, 0, 0}), []int8{96}},
		// RLE8, what GraphicsMagick writes a grey BMP as: runs of 1, then
		// end of line and end of bitmap.
		{"RLE8 BMP, trinary", "rle.bmp", "trinary",
			bmpFile(3, 8, 1, greyPalette(), nil, []byte{1, 0, 1, 128, 1, 254, 0, 0, 0, 1}), []int8{100, -1, 0}},
		// GIF transparent index: its colour, grey 128, averaged with alpha
		// 0 in trinary: occ 0.62 (plain: black, occupied).
		{"GIF transparent index, trinary", "t.gif", "trinary", gifBytes, []int8{100, -1}},
		{"GIF transparent index behind a long comment, trinary", "c.gif", "trinary", gifComment, []int8{100, -1}},
		// A palette PNG whose tRNS is longer than its PLTE: libpng drops the
		// tRNS as invalid, so every entry is opaque and there is no alpha
		// channel (Go applied it: white transparent, -1 in trinary).
		{"palette PNG with a tRNS past its PLTE, trinary", "long.png", "trinary",
			pngFile(2, 3, []byte{0, 1}, pngChunk("PLTE", []byte{0, 0, 0, 254, 254, 254}), pngChunk("tRNS", []byte{0, 0, 0, 0, 0})), []int8{100, 0}},
	} {
		m, err := readImageMap(t, tc.file, tc.img, tc.mode)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := cells(m.Grid); !slices.Equal(got, tc.want) {
			t.Errorf("%s: cells %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBMPAlphaChannels: GraphicsMagick sets an alpha channel on every
// 32-bit BMP, reading a BI_RGB file's fourth byte as alpha, and on a
// 24-bit one whose V4 header has an alpha mask (ImageMagick's default BMP):
// alphaPixels read through the first as through an RGBA PNG, and opaque
// black through the second reads occ 0.75, unknown at occupied_thresh 0.8.
func TestBMPAlphaChannels(t *testing.T) {
	t.Parallel()
	n := len(alphaPixels)
	rgba := image.NewNRGBA(image.Rect(0, 0, n, 1))
	for i, p := range alphaPixels {
		rgba.SetNRGBA(i, 0, p.c)
	}
	img := encoded(t, func(b *bytes.Buffer) error { return bmp.Encode(b, rgba) }) // 32-bit, 40-byte header
	if binary.LittleEndian.Uint32(img[14:]) != 40 || binary.LittleEndian.Uint16(img[28:]) != 32 {
		t.Fatal("the encoder did not write a 32-bit BI_RGB BMP")
	}
	for _, mode := range []string{"trinary", "scale", "raw"} {
		m, err := readImageMap(t, "birgb.bmp", img, mode)
		if err != nil {
			t.Fatal(err)
		}
		got := cells(m.Grid)
		for i, p := range alphaPixels {
			if want := map[string]int8{"trinary": p.trinary, "scale": p.scale, "raw": p.raw}[mode]; got[i] != want {
				t.Errorf("%s: pixel %v → %d, want %d", mode, p.c, got[i], want)
			}
		}
	}

	// 24 bits, BITMAPV4HEADER with alpha mask 0xff000000, one black pixel.
	v4 := v4BMP(image.NewNRGBA(image.Rect(0, 0, 1, 1)))
	binary.LittleEndian.PutUint16(v4[28:], 24)
	binary.LittleEndian.PutUint32(v4[30:], 0) // BI_RGB
	v4 = append(v4[:14+108], 0, 0, 0, 0)      // one BGR pixel and its padding
	occ := 0.8
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "im.bmp"), v4, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := slamio.ReadROSMap(writeMap(t, dir, "m", mapYAML("im.bmp", "trinary"), nil), slamio.ROSMapOptions{OccupiedThresh: &occ})
	if err != nil {
		t.Fatal(err)
	}
	if got := cells(m.Grid)[0]; got != -1 {
		t.Errorf("24-bit BMP with an alpha mask: black at occupied_thresh 0.8 → %d, want -1 (alpha averaged in)", got)
	}
}

// TestPictureDecodeBudget: an image whose decoding would take more than
// 256 MiB (a 16-bit RGBA PNG of 8192² pixels, a 522 kB file once; a
// 16-bit BMP of 6000²) is refused from its header, before anything is
// allocated for it.
func TestPictureDecodeBudget(t *testing.T) {
	img := pngWithSize(8192, 8192)
	img[8+8+8], img[8+8+9] = 16, 6 // bit depth, colour type RGBA
	binary.BigEndian.PutUint32(img[8+8+13:], crc32.ChecksumIEEE(img[8+4:8+8+13]))
	var err error
	if n := allocatedDuring(func() { _, err = readImageMap(t, "rgba16.png", img, "trinary") }); n > 4<<20 {
		t.Errorf("allocated %d bytes", n)
	}
	if err == nil || !strings.Contains(err.Error(), "rgba16.png: a png image of 8192x8192 pixels decodes to 512 MiB, more than the 256 MiB a map image may take") {
		t.Errorf("%v", err)
	}
	// A 16-bit BMP of 6000² pixels: 4 bytes a pixel decoded, and the 8 of
	// the 16-bit copy GraphicsMagick's reading takes.
	bmp16 := bmpFile(6000, 16, 0, nil, nil, nil)
	binary.LittleEndian.PutUint32(bmp16[22:], 6000)
	if n := allocatedDuring(func() { _, err = readImageMap(t, "big16.bmp", bmp16, "trinary") }); n > 4<<20 {
		t.Errorf("allocated %d bytes", n)
	}
	if err == nil || !strings.Contains(err.Error(), "big16.bmp: a bmp image of 6000x6000 pixels decodes to 411 MiB") {
		t.Errorf("%v", err)
	}
}
