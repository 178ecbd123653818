package slamio

import (
	"bytes"
	"fmt"
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

// DecodePGM reads a Netpbm greyscale image, plain (P2) or raw (P5), 8 or 16
// bits per sample, with '#' comments anywhere in the header (and, for P2,
// between samples). name is used in errors, which give the line for P2 and
// the header, and the byte offset for P5 samples. Images of more than
// grid.MaxCells pixels are refused before any allocation.
func DecodePGM(data []byte, name string) (*Gray, error) {
	p := &pnmReader{data: data, name: name, line: 1}
	if len(data) < 2 || data[0] != 'P' || (data[1] != '2' && data[1] != '5') {
		return nil, lineErr(name, 1, "not a PGM image: want magic P2 or P5")
	}
	plain := data[1] == '2'
	p.pos = 2
	w, err := p.header("width", 1, 1<<20)
	if err != nil {
		return nil, err
	}
	h, err := p.header("height", 1, 1<<20)
	if err != nil {
		return nil, err
	}
	maxVal, err := p.header("maxval", 1, 65535)
	if err != nil {
		return nil, err
	}
	if int64(w)*int64(h) > grid.MaxCells {
		return nil, lineErr(name, p.line, "image %dx%d has more than %d pixels", w, h, grid.MaxCells)
	}
	img := &Gray{Width: w, Height: h, MaxVal: maxVal}
	if plain {
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
	bps := 1
	if maxVal > 255 {
		bps = 2
	}
	need := w * h * bps
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
