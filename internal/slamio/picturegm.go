package slamio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"math/bits"
)

// asGraphicsMagick returns img, decoded from f (format, first bytes
// head), as GraphicsMagick 1.3 hands it to nav2's loadMapFromFile for the
// same file (img changed in place, or a new image), and reports whether
// GraphicsMagick sets an alpha channel on it (Image::matte(),
// Picture.Matte). Where Go's decoders and GraphicsMagick differ, a map
// would otherwise load one way in Nav2 and another here:
//
//   - PNG: an alpha channel is colour type 4 or 6, or a tRNS chunk. A grey
//     and alpha image (type 4) reaches nav2 with every pixel opaque
//     (GraphicsMagick reads it as a palette image; map_io.cpp's saver
//     notes its trouble with GreyscaleMatte), and so does an 8-bit RGB
//     image's tRNS colour key, though the channel is set in both. A
//     palette image's tRNS longer than its palette is invalid, and libpng
//     drops it.
//   - BMP: an alpha channel is 32 bits a pixel, or an alpha mask in a V3
//     or later header; a 32-bit BI_RGB file's fourth byte is its alpha
//     (gobmp makes it opaque, as the format's definition says); a 16-bit
//     pixel's fields are shifted up to 16 bits with their low bits zero
//     (31 of 5 bits is 63488 of 65535; gobmp scales it to full range).
//   - GIF: the transparent index keeps its colour (Go's decoder makes it
//     transparent black), which trinary and raw modes read.
func asGraphicsMagick(f io.ReaderAt, format string, head []byte, img image.Image) (image.Image, bool, error) {
	switch format {
	case "png":
		matte, err := pngAsGraphicsMagick(f, img)
		return img, matte, err
	case "bmp":
		return bmpAsGraphicsMagick(f, head, img)
	case "gif":
		return img, gifAsGraphicsMagick(f, img), nil
	}
	return img, false, nil
}

// pngAsGraphicsMagick walks a PNG's chunks up to its first IDAT for the
// colour type, bit depth and tRNS (see asGraphicsMagick).
func pngAsGraphicsMagick(f io.ReaderAt, img image.Image) (bool, error) {
	var hdr [8]byte
	var colourType, depth byte
	trns := false
	var plteEntries, trnsEntries int64
	for off := int64(8); ; { // past the signature
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return false, fmt.Errorf("PNG chunk at byte %d: %w", off, err)
		}
		n, typ := int64(binary.BigEndian.Uint32(hdr[:4])), string(hdr[4:])
		switch typ {
		case "IHDR":
			var ihdr [13]byte
			if _, err := f.ReadAt(ihdr[:], off+8); err != nil {
				return false, fmt.Errorf("PNG IHDR: %w", err)
			}
			depth, colourType = ihdr[8], ihdr[9]
		case "PLTE":
			plteEntries = n / 3
		case "tRNS":
			trns, trnsEntries = true, n
		}
		if typ == "IDAT" || typ == "IEND" {
			break
		}
		off += 12 + n // length, type, data, CRC
	}
	switch {
	case colourType == 4, colourType == 2 && depth == 8 && trns:
		makeOpaque(img)
		return true, nil
	case colourType == 3 && trnsEntries > plteEntries:
		// libpng drops a tRNS longer than the palette as invalid; Go
		// applies it.
		makeOpaque(img)
		return false, nil
	}
	return colourType == 6 || trns, nil
}

// makeOpaque sets every pixel of a decoded NRGBA or paletted image
// opaque.
func makeOpaque(img image.Image) {
	switch m := img.(type) {
	case *image.Paletted:
		for i, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			n.A = 0xff
			m.Palette[i] = n
		}
	case *image.NRGBA:
		for i := 3; i < len(m.Pix); i += 4 {
			m.Pix[i] = 0xff
		}
	case *image.NRGBA64:
		for i := 6; i < len(m.Pix); i += 8 {
			m.Pix[i], m.Pix[i+1] = 0xff, 0xff
		}
	}
}

// BMP header fields (BITMAPFILEHEADER, then the info header at byte 14).
const (
	bmpInfoLen     = 14 // info header size
	bmpHeight      = 22
	bmpBitCount    = 28
	bmpCompression = 30
	bmpMasks       = 14 + 40 // red, green, blue: after a 40-byte header or inside a later one
	bmpAlphaMask   = 14 + 52 // in a V3 (56-byte) or later header
	bmpBIRGB       = 0
	bmpBIBitFields = 3
)

// bmpAsGraphicsMagick applies GraphicsMagick's alpha rules (see
// asGraphicsMagick) to a BMP whose first bytes are head.
func bmpAsGraphicsMagick(f io.ReaderAt, head []byte, img image.Image) (image.Image, bool, error) {
	if len(head) < bmpCompression+4 {
		return img, false, nil
	}
	info := binary.LittleEndian.Uint32(head[bmpInfoLen:])
	if info < 40 { // OS/2 BITMAPCOREHEADER: no alpha
		return img, false, nil
	}
	depth := binary.LittleEndian.Uint16(head[bmpBitCount:])
	compression := binary.LittleEndian.Uint32(head[bmpCompression:])
	alphaMask := info >= 56 && len(head) >= bmpAlphaMask+4 && binary.LittleEndian.Uint32(head[bmpAlphaMask:]) != 0
	switch {
	case depth == 32 && compression == bmpBIRGB:
		if err := bmpFourthByteAlpha(f, head, img); err != nil {
			return nil, false, err
		}
	case depth == 16 && (compression == bmpBIRGB || compression == bmpBIBitFields && len(head) >= bmpMasks+12):
		masks := [4]uint32{0x7c00, 0x03e0, 0x001f, 0} // BI_RGB: 5-5-5
		if compression == bmpBIBitFields {
			for k := range 3 {
				masks[k] = binary.LittleEndian.Uint32(head[bmpMasks+4*k:]) & 0xffff
			}
			if alphaMask {
				masks[3] = binary.LittleEndian.Uint32(head[bmpAlphaMask:]) & 0xffff
			}
		}
		shifted, err := bmpShiftedFields(f, head, img.Bounds(), masks)
		if err != nil {
			return nil, false, err
		}
		img = shifted
	}
	return img, depth == 32 || alphaMask, nil
}

// bmpShiftedFields reads a 16-bit BMP's pixels (red, green, blue and
// alpha in masks; no alpha mask: opaque) into a new image of bounds r as
// GraphicsMagick reads them (see asGraphicsMagick).
func bmpShiftedFields(f io.ReaderAt, head []byte, r image.Rectangle, masks [4]uint32) (image.Image, error) {
	m := image.NewNRGBA64(r)
	w, h := r.Dx(), r.Dy()
	bottomUp := int32(binary.LittleEndian.Uint32(head[bmpHeight:])) > 0
	off := int64(binary.LittleEndian.Uint32(head[10:]))
	row := make([]byte, (2*w+3)&^3)
	for y := range h {
		if _, err := f.ReadAt(row, off+int64(y)*int64(len(row))); err != nil {
			return nil, fmt.Errorf("BMP pixel row %d: %w", y, err)
		}
		dy := y
		if bottomUp {
			dy = h - 1 - y
		}
		pix := m.Pix[dy*m.Stride:]
		for x := range w {
			v := uint32(binary.LittleEndian.Uint16(row[2*x:]))
			for k, mask := range masks {
				q := uint32(0xffff) // no alpha mask: opaque
				if mask != 0 {
					q = (v & mask) >> bits.TrailingZeros32(mask) << (16 - bits.OnesCount32(mask))
				} else if k < 3 {
					q = 0
				}
				binary.BigEndian.PutUint16(pix[8*x+2*k:], uint16(q))
			}
		}
	}
	return m, nil
}

// bmpFourthByteAlpha copies each pixel's fourth byte of a 32-bit BI_RGB
// BMP into img's alpha.
func bmpFourthByteAlpha(f io.ReaderAt, head []byte, img image.Image) error {
	m, ok := img.(*image.NRGBA)
	if !ok {
		return errors.New("BMP: a 32-bit image did not decode to NRGBA")
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	bottomUp := int32(binary.LittleEndian.Uint32(head[bmpHeight:])) > 0
	off := int64(binary.LittleEndian.Uint32(head[10:])) // the pixels' offset
	row := make([]byte, 4*w)
	for y := range h {
		if _, err := f.ReadAt(row, off+int64(y)*int64(len(row))); err != nil {
			return fmt.Errorf("BMP pixel row %d: %w", y, err)
		}
		dy := y
		if bottomUp {
			dy = h - 1 - y
		}
		pix := m.Pix[dy*m.Stride:]
		for x := range w {
			pix[4*x+3] = row[4*x+3]
		}
	}
	return nil
}

// gifAsGraphicsMagick gives the first frame's transparent index back its
// colour from the file's colour table (see asGraphicsMagick), read from r
// up to the first frame's descriptor.
func gifAsGraphicsMagick(r io.ReaderAt, img image.Image) bool {
	p, ok := img.(*image.Paletted)
	if !ok {
		return false
	}
	idx, table, ok := gifTransparent(bufio.NewReader(io.NewSectionReader(r, 0, math.MaxInt64)))
	if !ok {
		return false
	}
	if i := int(idx); i < len(p.Palette) && 3*i+2 < len(table) {
		p.Palette[i] = color.NRGBA{R: table[3*i], G: table[3*i+1], B: table[3*i+2]}
	}
	return true
}

// gifTransparent reads a GIF up to its first image descriptor: the
// transparent index of the graphic control extension before it, and the
// colour table that frame uses (its local one, else the global one). ok is
// false without a transparent index, or for a file that ends first.
func gifTransparent(r *bufio.Reader) (idx byte, table []byte, ok bool) {
	var b [13]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, false
	}
	readTable := func(packed byte) ([]byte, bool) {
		t := make([]byte, 3<<(packed&7+1))
		_, err := io.ReadFull(r, t)
		return t, err == nil
	}
	var global []byte
	if b[10]&0x80 != 0 {
		if global, ok = readTable(b[10]); !ok {
			return 0, nil, false
		}
	}
	transparent := false
	for {
		intro, err := r.ReadByte()
		if err != nil {
			return 0, nil, false
		}
		switch intro {
		case 0x21: // extension: label, then data sub-blocks
			label, err := r.ReadByte()
			if err != nil {
				return 0, nil, false
			}
			for first := true; ; first = false {
				n, err := r.ReadByte()
				if err != nil {
					return 0, nil, false
				}
				if n == 0 {
					break
				}
				if label != 0xf9 || !first || n != 4 {
					if _, err := r.Discard(int(n)); err != nil {
						return 0, nil, false
					}
					continue
				}
				var gce [4]byte // graphic control extension
				if _, err := io.ReadFull(r, gce[:]); err != nil {
					return 0, nil, false
				}
				transparent, idx = gce[0]&1 != 0, gce[3]
			}
		case 0x2c: // the first image descriptor
			var d [9]byte
			if _, err := io.ReadFull(r, d[:]); err != nil || !transparent {
				return 0, nil, false
			}
			if d[8]&0x80 != 0 {
				local, ok := readTable(d[8])
				return idx, local, ok
			}
			return idx, global, global != nil
		default:
			return 0, nil, false
		}
	}
}
