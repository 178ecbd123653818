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

// Bounds on what readPGMFile reads. A map_server header with its comment
// line is under 100 bytes; a plain (P2) sample is at most 5 digits and a
// separator, and the rest of maxPlainBytesPerPixel leaves room for line
// ends and comments between samples.
const (
	maxPGMHeaderBytes     = 1 << 20
	maxPlainBytesPerPixel = 16
)

// readPGMFile reads an image file for DecodePGM, no further than its header
// says it needs: the header is read from the file's first
// maxPGMHeaderBytes (a longer one is refused), so that an image of more
// than grid.MaxCells pixels is refused before the rest is read; a raw (P5)
// image is read to the end of its raster, trailing bytes left unread; a
// plain (P2) one whole, refused when the file is larger than its samples
// could take (maxPlainBytesPerPixel each). A file that is not a PGM is
// returned as its first bytes for the caller to say what it is. Only
// regular files are read: a FIFO or a device would block or never end.
func readPGMFile(path string) ([]byte, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, min(size, maxPGMHeaderBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(head)) == size {
		return head, nil // the whole file
	}
	hd, cut, err := decodePGMHeader(head, path)
	switch {
	case cut:
		return nil, lineErr(path, 1, "the PGM header runs past the file's first %d bytes", maxPGMHeaderBytes)
	case err != nil:
		if isPGM(head) {
			return nil, err
		}
		return head, nil // not a PGM: the caller says what it is
	case hd.plain:
		if limit := int64(hd.pos) + int64(hd.width*hd.height)*maxPlainBytesPerPixel + maxPGMHeaderBytes; size > limit {
			return nil, lineErr(path, hd.line, "a plain PGM of %dx%d pixels in %d bytes: more than its samples, line ends and comments could take (%d)",
				hd.width, hd.height, size, limit)
		}
		return readRest(f, path, head, size)
	}
	// The raster starts one whitespace byte after maxval (DecodePGM checks it).
	want := min(int64(hd.pos+1+hd.rasterBytes()), size)
	if want <= int64(len(head)) {
		return head[:want], nil
	}
	return readRest(f, path, head, want)
}

// readRest returns head followed by what f holds after it, up to size bytes
// in all.
func readRest(f *os.File, path string, head []byte, size int64) ([]byte, error) {
	data := make([]byte, size)
	copy(data, head)
	if _, err := io.ReadFull(f, data[len(head):]); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// openRegular opens path for reading when it is a regular file (after
// symbolic links), and returns its size. It looks before it opens: opening
// a FIFO blocks until a writer comes.
func openRegular(path string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file (%v)", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	return f, st.Size(), nil
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
