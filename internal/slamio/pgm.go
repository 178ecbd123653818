package slamio

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Gray is a decoded greyscale image: Pix[y*Width+x] for row y from the top,
// as the image is stored; each sample is in 0..MaxVal.
type Gray struct {
	Width, Height int
	MaxVal        int
	Pix           []uint16
}

// pgmHeader is what a PGM file's header says; the ASCII samples of a plain
// image, or the raster of a raw one, start at byte pos.
type pgmHeader struct {
	width, height, maxVal int
	plain                 bool
	pos, line             int
}

// decodePGMHeader reads the magic, width, height and maxval at the start of
// data, refusing an image of more than grid.MaxCells pixels. cut reports
// that the header runs to the end of data, so that a prefix of a file may
// have cut a number short or left it out: only the whole file tells.
func decodePGMHeader(data []byte, name string) (hd pgmHeader, cut bool, err error) {
	p := &pnmReader{data: data, name: name, line: 1}
	defer func() { cut = p.pos >= len(data) }()
	if !isPGM(data) {
		return pgmHeader{}, false, lineErr(name, 1, "not a PGM image: want magic P2 or P5")
	}
	p.pos = 2
	w, err := p.header("width", 1, 1<<20)
	if err != nil {
		return pgmHeader{}, false, err
	}
	h, err := p.header("height", 1, 1<<20)
	if err != nil {
		return pgmHeader{}, false, err
	}
	maxVal, err := p.header("maxval", 1, 65535)
	if err != nil {
		return pgmHeader{}, false, err
	}
	if int64(w)*int64(h) > grid.MaxCells {
		return pgmHeader{}, false, lineErr(name, p.line, "image %dx%d has more than %d pixels", w, h, grid.MaxCells)
	}
	return pgmHeader{width: w, height: h, maxVal: maxVal, plain: data[1] == '2', pos: p.pos, line: p.line}, false, nil
}

// bytesPerSample is a raw image's: two (big-endian) past maxval 255.
func (h pgmHeader) bytesPerSample() int {
	if h.maxVal > 255 {
		return 2
	}
	return 1
}

// rasterBytes is the size of a raw image's raster.
func (h pgmHeader) rasterBytes() int { return h.width * h.height * h.bytesPerSample() }

// isPGM reports whether data starts with a PGM magic, P2 (plain) or P5 (raw).
func isPGM(data []byte) bool {
	return len(data) >= 2 && data[0] == 'P' && (data[1] == '2' || data[1] == '5')
}

// DecodePGM reads a Netpbm greyscale image, plain (P2) or raw (P5), 8 or 16
// bits per sample, with '#' comments anywhere in the header (and, for P2,
// between samples). name is used in errors, which give the line for P2 and
// the header, and the byte offset for P5 samples. Images of more than
// grid.MaxCells pixels are refused before any allocation.
func DecodePGM(data []byte, name string) (*Gray, error) {
	hd, _, err := decodePGMHeader(data, name)
	if err != nil {
		return nil, err
	}
	w, h, maxVal := hd.width, hd.height, hd.maxVal
	p := &pnmReader{data: data, name: name, pos: hd.pos, line: hd.line}
	img := &Gray{Width: w, Height: h, MaxVal: maxVal}
	if hd.plain {
		img.Pix = make([]uint16, 0, min(w*h, len(data)/2+1))
		for len(img.Pix) < w*h {
			v, err := p.header("sample", 0, maxVal)
			if err != nil {
				return nil, err
			}
			img.Pix = append(img.Pix, uint16(v))
		}
		return img, nil
	}
	// Exactly one whitespace byte separates maxval from the raster.
	if p.pos >= len(data) || !isSpace(data[p.pos]) {
		return nil, byteErr(name, int64(p.pos), "want one whitespace byte after maxval")
	}
	p.pos++
	bps, need := hd.bytesPerSample(), hd.rasterBytes()
	if have := len(data) - p.pos; have < need {
		return nil, byteErr(name, int64(len(data)), "raster ends early: %dx%d at %d byte(s) per sample needs %d bytes from byte %d, file has %d",
			w, h, bps, need, p.pos, have)
	}
	img.Pix = make([]uint16, w*h)
	for i := range img.Pix {
		off := p.pos + i*bps
		v := uint16(data[off])
		if bps == 2 {
			v = v<<8 | uint16(data[off+1])
		}
		if int(v) > maxVal {
			return nil, byteErr(name, int64(off), "sample %d exceeds maxval %d", v, maxVal)
		}
		img.Pix[i] = v
	}
	return img, nil
}

// pgmHeadBytes is how much of an image file is read to learn its size: a
// map_server header with its comment line is under 100 bytes.
const pgmHeadBytes = 64 << 10

// readPGMFile reads an image file for DecodePGM without reading more than
// its header says it needs: a PGM whose header announces more than
// grid.MaxCells pixels is refused from the file's first pgmHeadBytes, a raw
// (P5) image is read up to the end of its raster (trailing bytes are not
// read), and a file that is not a PGM is returned as its first bytes for
// the caller to say what it is. A plain (P2) image, whose samples are text of
// any length, is read whole.
func readPGMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, pgmHeadBytes)
	n, err := io.ReadFull(f, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return head[:n], nil // the whole file
	}
	if err != nil {
		return nil, err
	}
	hd, cut, err := decodePGMHeader(head, path)
	switch {
	case cut:
		// A header longer than the prefix (comments): only the whole file says.
		rest, err := io.ReadAll(f)
		return append(head, rest...), err
	case err != nil:
		if isPGM(head) {
			return nil, err
		}
		return head, nil // not a PGM: the caller says what it is
	case hd.plain:
		rest, err := io.ReadAll(f)
		return append(head, rest...), err
	}
	// The raster starts one whitespace byte after maxval (DecodePGM checks it).
	size := hd.pos + 1 + hd.rasterBytes()
	if size <= len(head) {
		return head[:size], nil
	}
	data := make([]byte, size)
	copy(data, head)
	m, err := io.ReadFull(f, data[len(head):])
	if err == io.ErrUnexpectedEOF {
		err = nil // a short raster: DecodePGM says where it ends
	}
	return data[:len(head)+m], err
}

// pnmReader walks the ASCII part of a PNM file, counting lines.
type pnmReader struct {
	data []byte
	name string
	pos  int
	line int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// header reads the next decimal token, skipping whitespace and comments,
// and checks it against lo..hi.
func (p *pnmReader) header(what string, lo, hi int) (int, error) {
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '#':
			for p.pos < len(p.data) && p.data[p.pos] != '\n' {
				p.pos++
			}
		case isSpace(c):
			if c == '\n' {
				p.line++
			}
			p.pos++
		default:
			start := p.pos
			for p.pos < len(p.data) && !isSpace(p.data[p.pos]) && p.data[p.pos] != '#' {
				p.pos++
			}
			tok := p.data[start:p.pos]
			v, err := strconv.Atoi(string(tok))
			if err != nil || v < lo || v > hi {
				return 0, lineErr(p.name, p.line, "%s %q: want an integer in %d..%d", what, truncate(tok), lo, hi)
			}
			return v, nil
		}
	}
	return 0, lineErr(p.name, p.line, "file ends before the %s", what)
}

func truncate(b []byte) string {
	if len(b) > 20 {
		return string(b[:20]) + "..."
	}
	return string(b)
}

// EncodePGM writes img as a raw (P5) PGM with a comment line; samples are
// one byte when MaxVal <= 255, two (big-endian) otherwise.
func EncodePGM(img *Gray, comment string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "P5\n# %s\n%d %d\n%d\n", comment, img.Width, img.Height, img.MaxVal)
	for _, v := range img.Pix {
		if img.MaxVal > 255 {
			b.WriteByte(byte(v >> 8))
		}
		b.WriteByte(byte(v))
	}
	return b.Bytes()
}
