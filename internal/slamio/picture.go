package slamio

// map_server reads every format its image library does (nav2:
// GraphicsMagick, ROS 1: SDL_image). These decoders are the formats maps
// are saved in: PNG is what Nav2's saver writes scale maps as, BMP the
// third of its formats beside PGM (gobmp reads the BMPs x/image/bmp does
// not: RLE4 and RLE8, which GraphicsMagick writes by default, 16-bit,
// bit fields, OS/2); JPEG and GIF turn up in hand-made maps.
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
	"strings"

	_ "github.com/jsummers/gobmp"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Picture is a map image other than a PGM, decoded: PNG (8 or 16 bits;
// grey, grey+alpha, RGB, RGBA, palette), BMP, JPEG or GIF.
type Picture struct {
	// Image is the decoded image, its top row first.
	Image image.Image
	// Matte reports an alpha channel in the file as GraphicsMagick's
	// Image::matte() does (see asGraphicsMagick). nav2 averages alpha in
	// with the colour channels in trinary mode only then, even where every
	// pixel is opaque.
	Matte bool
}

// maxPictureBytes bounds the file of a Picture: a 32-bit BMP of
// grid.MaxCells pixels, the largest raster a map may have, and its headers.
const maxPictureBytes = 4*grid.MaxCells + 1<<20

// errNotPicture says that a file is no image format ReadROSMap reads.
var errNotPicture = errors.New("not an image")

// readPicture decodes the map image at path, whose first bytes are head
// (see decodePicture). Returns errNotPicture when no decoder knows the
// format.
func readPicture(path string, head []byte) (*Picture, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxPictureBytes {
		return nil, fmt.Errorf("%s: %d bytes: more than an image of %d pixels takes (%d)", path, size, grid.MaxCells, int64(maxPictureBytes))
	}
	return decodePicture(f, size, path, head)
}

// decodePicture decodes the image of size bytes in r (named name in
// errors), whose first bytes are head: its dimensions are read first, and
// an image of more than grid.MaxCells pixels, or whose decoding would take
// more than maxPictureDecodeBytes, is refused before its raster is read.
// Returns errNotPicture when no decoder knows the format.
func decodePicture(r io.ReaderAt, size int64, name string, head []byte) (*Picture, error) {
	cfg, format, err := image.DecodeConfig(bufio.NewReader(io.NewSectionReader(r, 0, size)))
	if errors.Is(err, image.ErrFormat) {
		return nil, errNotPicture
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, truncated(err))
	}
	if int64(cfg.Width)*int64(cfg.Height) > grid.MaxCells {
		return nil, fmt.Errorf("%s: a %s image of %dx%d pixels: more than the %d a map may have", name, format, cfg.Width, cfg.Height, grid.MaxCells)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		return nil, fmt.Errorf("%s: a %s image of %dx%d pixels: a map needs at least one", name, format, cfg.Width, cfg.Height)
	}
	if need := decodedBytes(format, cfg, head); need > maxPictureDecodeBytes {
		return nil, fmt.Errorf("%s: a %s image of %dx%d pixels decodes to %d MiB, more than the %d MiB a map image may take: save the map as an 8-bit grey PGM or PNG",
			name, format, cfg.Width, cfg.Height, need>>20, maxPictureDecodeBytes>>20)
	}
	img, _, err := image.Decode(bufio.NewReader(io.NewSectionReader(r, 0, size)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, truncated(err))
	}
	img, matte, err := asGraphicsMagick(r, format, head, img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, truncated(err))
	}
	return &Picture{Image: img, Matte: matte}, nil
}

// maxPictureDecodeBytes bounds what decoding a map image may allocate: an
// RGBA image of 8192² pixels, 256 MiB. Its pixel count alone does not:
// a progressive CMYK JPEG keeps 20 bytes a pixel while it decodes, so
// 1.5 MB of one took 2 GB.
const maxPictureDecodeBytes = 256 << 20

// decodedBytes is what decoding an image of cfg in format (first bytes
// head) allocates, by its colour model: the pixels, a JPEG's coefficients
// (4 bytes per component and pixel, kept for a progressive one), and for a
// 16-bit BMP the 16-bit copy asGraphicsMagick makes.
func decodedBytes(format string, cfg image.Config, head []byte) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	if format == "bmp" && len(head) > bmpBitCount+1 && binary.LittleEndian.Uint16(head[bmpBitCount:]) == 16 {
		return 12 * px
	}
	switch cfg.ColorModel {
	case color.GrayModel:
		if format == "jpeg" {
			return 5 * px
		}
		return px
	case color.Gray16Model:
		return 2 * px
	case color.YCbCrModel:
		return 15 * px
	case color.CMYKModel:
		return 20 * px
	case color.RGBA64Model, color.NRGBA64Model:
		return 8 * px
	}
	if _, ok := cfg.ColorModel.(color.Palette); ok {
		return px
	}
	return 4 * px
}

// truncated says what a decoder's running out of data means. The PNG, GIF
// and JPEG decoders turn an unexpected EOF into a format error of their
// own words, so those are matched by their text; a JPEG's entropy-coded
// data ending early may also be damage inside the file.
func truncated(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.HasSuffix(msg, "unexpected EOF") ||
		strings.HasSuffix(msg, "not enough pixel data") || strings.HasSuffix(msg, "not enough image data"):
		return fmt.Errorf("the file is truncated (%w)", err)
	case strings.HasSuffix(msg, "short Huffman data"):
		return fmt.Errorf("the file is truncated or damaged (%w)", err)
	}
	return err
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
