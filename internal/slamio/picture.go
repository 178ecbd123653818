package slamio

// map_server reads every format its image library does (nav2:
// GraphicsMagick, ROS 1: SDL_image). These decoders are the formats maps
// are saved in: PNG is what Nav2's saver writes scale maps as, BMP the
// third of its formats beside PGM; JPEG and GIF turn up in hand-made maps.
import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"

	_ "golang.org/x/image/bmp"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Picture is a map image other than a PGM, decoded: PNG (8 or 16 bits;
// grey, grey+alpha, RGB, RGBA, palette), BMP, JPEG or GIF.
type Picture struct {
	// Image is the decoded image, its top row first.
	Image image.Image
	// Matte reports an alpha channel in the file (PNG colour types 4 and
	// 6 or a tRNS chunk, a 32-bit BMP with an alpha mask, a GIF's
	// transparent index), as GraphicsMagick's Image::matte() does. nav2
	// averages alpha in with the colour channels in trinary mode only
	// then, even where every pixel is opaque.
	Matte bool
}

// maxPictureBytes bounds the file of a Picture: a 32-bit BMP of
// grid.MaxCells pixels, the largest raster a map may have, and its headers.
const maxPictureBytes = 4*grid.MaxCells + 1<<20

// errNotPicture says that a file is no image format ReadROSMap reads.
var errNotPicture = errors.New("not an image")

// readPicture decodes the map image at path, whose first bytes are head:
// its dimensions are read first, and an image of more than grid.MaxCells
// pixels is refused before its raster is. Returns errNotPicture when no
// decoder knows the format.
func readPicture(path string, head []byte) (*Picture, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxPictureBytes {
		return nil, fmt.Errorf("%s: %d bytes: more than an image of %d pixels takes (%d)", path, size, grid.MaxCells, int64(maxPictureBytes))
	}
	cfg, format, err := image.DecodeConfig(bufio.NewReader(f))
	if errors.Is(err, image.ErrFormat) {
		return nil, errNotPicture
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > grid.MaxCells {
		return nil, fmt.Errorf("%s: a %s image of %dx%d pixels: more than the %d a map may have", path, format, cfg.Width, cfg.Height, grid.MaxCells)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		return nil, fmt.Errorf("%s: a %s image of %dx%d pixels: a map needs at least one", path, format, cfg.Width, cfg.Height)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	img, _, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	matte, err := hasMatte(f, format, head, img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Picture{Image: img, Matte: matte}, nil
}

// hasMatte reports whether the file of img, in format, has an alpha
// channel (see Picture.Matte).
func hasMatte(f io.ReaderAt, format string, head []byte, img image.Image) (bool, error) {
	switch format {
	case "png":
		return pngHasAlpha(f)
	case "bmp":
		// BITMAPINFOHEADER's size at byte 14 and bit count at byte 28: the
		// decoder keeps alpha only for 32 bits with a V4 or V5 header.
		return len(head) >= 30 && binary.LittleEndian.Uint32(head[14:]) > 40 && binary.LittleEndian.Uint16(head[28:]) == 32, nil
	case "gif":
		if p, ok := img.(*image.Paletted); ok {
			for _, c := range p.Palette {
				if _, _, _, a := c.RGBA(); a != 0xffff {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// pngHasAlpha walks a PNG's chunks up to its first IDAT: colour type 4
// (grey+alpha) or 6 (RGBA) in IHDR, or a tRNS chunk, is an alpha channel.
func pngHasAlpha(f io.ReaderAt) (bool, error) {
	var hdr [8]byte
	off := int64(8) // the signature
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return false, fmt.Errorf("PNG chunk at byte %d: %w", off, err)
		}
		n, typ := int64(binary.BigEndian.Uint32(hdr[:4])), string(hdr[4:])
		switch typ {
		case "IHDR":
			var ct [1]byte
			if _, err := f.ReadAt(ct[:], off+8+9); err != nil {
				return false, fmt.Errorf("PNG IHDR: %w", err)
			}
			if ct[0] == 4 || ct[0] == 6 {
				return true, nil
			}
		case "tRNS":
			return true, nil
		case "IDAT", "IEND":
			return false, nil
		}
		off += 12 + n // length, type, data, CRC
	}
}

// CellsFromPicture converts a decoded image to an occupancy grid as nav2's
// loadMapFromFile does (see ReadROSMap): each pixel's shade is the mean of
// its red, green and blue in 0..1, with alpha (0 transparent, 1 opaque)
// averaged in too in trinary mode when the file has one; in scale mode a
// pixel that is not fully opaque is unknown (−1); raw mode ignores alpha.
// The image's top row becomes the grid's last row.
func CellsFromPicture(p *Picture, y *MapYAML) *typesv1.OccupancyGrid {
	b := p.Image.Bounds()
	w, h := b.Dx(), b.Dy()
	data := make([]byte, w*h)
	// An 8-bit grey image is one table of 256 shades; any other goes
	// through NRGBA64.
	if g, ok := p.Image.(*image.Gray); ok && !p.Matte {
		var table [256]byte
		for v := range table {
			table[v] = byte(cellOf(float64(v)/255, y))
		}
		for row := 0; row < h; row++ {
			out := data[(h-1-row)*w:]
			for x, v := range g.Pix[row*g.Stride : row*g.Stride+w] {
				out[x] = table[v]
			}
		}
	} else {
		for row := 0; row < h; row++ {
			out := data[(h-1-row)*w:]
			for x := range w {
				out[x] = byte(cellOfColor(nrgba64(p.Image.At(b.Min.X+x, b.Min.Y+row)), p.Matte, y))
			}
		}
	}
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{
			Resolution: y.Resolution, Width: uint32(w), Height: uint32(h),
			Origin: &typesv1.Pose2D{X: y.Origin[0], Y: y.Origin[1]},
		},
		Data: data,
	}
}

// nrgba64 is c with its colour not premultiplied by its alpha, as
// GraphicsMagick keeps it: a transparent pixel keeps its colour, which
// nav2's trinary and raw modes read. (Converting through RGBA() would
// make it black.)
func nrgba64(c color.Color) color.NRGBA64 {
	switch c := c.(type) {
	case color.NRGBA:
		return color.NRGBA64{R: uint16(c.R) * 0x101, G: uint16(c.G) * 0x101, B: uint16(c.B) * 0x101, A: uint16(c.A) * 0x101}
	case color.NRGBA64:
		return c
	}
	return color.NRGBA64Model.Convert(c).(color.NRGBA64)
}

// cellOfColor is map_io.cpp's per-pixel switch for a colour pixel.
func cellOfColor(c color.NRGBA64, matte bool, y *MapYAML) int8 {
	sum, n := float64(c.R)+float64(c.G)+float64(c.B), 3.0
	switch {
	case y.Mode == ModeScale && c.A != math.MaxUint16:
		return -1
	case y.Mode != ModeScale && y.Mode != ModeRaw && matte:
		sum, n = sum+float64(c.A), 4
	}
	return cellOf(sum/n/math.MaxUint16, y)
}

// pictureKind names what head is when it is no image ReadROSMap reads,
// for the error.
func pictureKind(head []byte) string {
	for _, k := range []struct{ magic, kind string }{
		{"P1", "a PBM (bitmap) image"}, {"P4", "a PBM (bitmap) image"},
		{"P3", "a PPM (colour) image"}, {"P6", "a PPM (colour) image"},
		{"II*\x00", "a TIFF image"}, {"MM\x00*", "a TIFF image"},
		{"RIFF", "a RIFF (e.g. WebP) file"},
	} {
		if bytes.HasPrefix(head, []byte(k.magic)) {
			return k.kind
		}
	}
	return "not an image"
}
