package slamio_test

import (
	"bytes"
	"image"
	"math"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slamio"
)

// FuzzParseCarmen: any input parses or fails with an error; a parsed log's
// readings are consistent with their own beam geometry. An angle increment
// may be negative: a ROBOTLASER1 laser sweeping right to left (877bb3a).
func FuzzParseCarmen(f *testing.F) {
	f.Add([]byte(smallLog))
	f.Add([]byte("FLASER 2 1 1 0 0 0 0 0 0 1 h 1\n"))
	f.Add([]byte("ROBOTLASER1 0 -0.5 0.5 0.25 8.0 0.01 0 3 1 2 9 0 3 3 1 3 3 1 0 0 0 0 0 3.0 host 3.0\n"))
	f.Add([]byte("ROBOTLASER1 0 0 0 -1 1 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0")) // right to left, once refused by this test
	f.Fuzz(func(t *testing.T, data []byte) {
		log, err := slamio.ParseCarmen(strings.NewReader(string(data)), "fuzz.log")
		if err != nil {
			return
		}
		for i, r := range log.Readings {
			if inc := math.Abs(r.AngleIncrement); r.Index != i || len(r.Ranges) == 0 || !(inc > 0 && inc <= 2*math.Pi) || r.Line < 1 {
				t.Fatalf("reading %d: %+v", i, r)
			}
		}
	})
}

// FuzzROSMap feeds a map YAML and a PGM image to their parsers: any input
// parses or fails with an error; an accepted YAML satisfies the checks
// ReadROSMap relies on; a decoded image has width*height samples within
// maxval and re-encodes to the same samples.
func FuzzROSMap(f *testing.F) {
	f.Add([]byte("image: m.pgm\nresolution: 0.05\norigin: [0, 0, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"),
		[]byte("P2\n# c\n2 2\n255\n0 128\n205 254\n"))
	f.Add([]byte("image: 'a b.pgm' # c\nmode: raw\nresolution: 1\norigin:\n  - 1\n  - 2\n  - 3\nnegate: true\noccupied_thresh: 1\nfree_thresh: 0\n"),
		append([]byte("P5\n2 1\n255\n"), 0, 254))
	f.Add([]byte("image: m.pgm\n"), append([]byte("P5 1 1 65535\n"), 1, 2))
	f.Fuzz(func(t *testing.T, yaml, pgm []byte) {
		if y, err := slamio.ParseMapYAML(yaml, "fuzz.yaml"); err == nil {
			if y.Image == "" || !(y.Resolution > 0) || !(y.FreeThresh >= 0 && y.FreeThresh < y.OccupiedThresh && y.OccupiedThresh <= 1) {
				t.Fatalf("accepted %+v", y)
			}
		}
		img, err := slamio.DecodePGM(pgm, "fuzz.pgm")
		if err != nil {
			return
		}
		if len(img.Pix) != img.Width*img.Height {
			t.Fatalf("%dx%d image with %d samples", img.Width, img.Height, len(img.Pix))
		}
		back, err := slamio.DecodePGM(slamio.EncodePGM(img, "again"), "again.pgm")
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range img.Pix {
			if int(v) > img.MaxVal || back.Pix[i] != v {
				t.Fatalf("sample %d: %d (maxval %d), re-encoded %d", i, v, img.MaxVal, back.Pix[i])
			}
		}
	})
}

// FuzzMapImage feeds arbitrary bytes to the map image decoders ReadROSMap
// uses besides the PGM one, and GraphicsMagick's rules on top of them: any
// input decodes or fails with an error, and a decoded image converts to
// one cell per pixel, each −1 or 0..100, in every mode.
func FuzzMapImage(f *testing.F) {
	for _, img := range [][]byte{
		pngFile(3, 4, []byte{0, 0, 128, 0, 254, 255}),
		pngFile(2, 2, []byte{128, 128, 128, 0, 0, 0}, pngChunk("tRNS", []byte{0, 128, 0, 128, 0, 128})),
		bmpFile(2, 16, 0, nil, nil, []byte{0x8c, 0x31, 0xff, 0x7f}),
		bmpFile(3, 8, 1, greyPalette(), nil, []byte{1, 0, 1, 128, 1, 254, 0, 0, 0, 1}),
		bmpFile(1, 32, 0, nil, nil, []byte{1, 2, 3, 4}),
		[]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x01\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"),
	} {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A few bytes of RLE or PNG can announce 2²⁶ pixels, which decode
		// and convert in seconds: legitimate, but it stalls the fuzzer.
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil && cfg.Width*cfg.Height > 1<<16 {
			return
		}
		pic, err := slamio.DecodePicture(bytes.NewReader(data), int64(len(data)), "fuzz", data)
		if err != nil {
			return
		}
		b := pic.Image.Bounds()
		for _, mode := range []slamio.MapMode{slamio.ModeTrinary, slamio.ModeScale, slamio.ModeRaw} {
			og := slamio.CellsFromPicture(pic, &slamio.MapYAML{Mode: mode, Resolution: 0.05, OccupiedThresh: 0.65, FreeThresh: 0.25})
			if len(og.GetData()) != b.Dx()*b.Dy() {
				t.Fatalf("%v image, %s: %d cells", b, mode, len(og.GetData()))
			}
			for i, c := range og.GetData() {
				if v := int8(c); v < -1 || v > 100 {
					t.Fatalf("%s: cell %d is %d", mode, i, v)
				}
			}
		}
	})
}
