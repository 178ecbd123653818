// Package render draws occupancy grids as PNG images with the standard
// library: unknown grey, free white, occupied black, and optionally each
// agent's contribution in its own colour. North is up: the image is flipped
// so that the map frame's y axis points up, as in RViz.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Colours of cell states. Shades follow the int8 value so that uncertain
// cells look uncertain.
var (
	Unknown = color.NRGBA{R: 160, G: 160, B: 160, A: 255}
	Free    = color.NRGBA{R: 255, G: 255, B: 255, A: 255}
	Occ     = color.NRGBA{R: 0, G: 0, B: 0, A: 255}
)

// Palette holds the agent colours, chosen to stay distinguishable from each
// other and from black, white and grey; agents beyond its length reuse it.
var Palette = []color.NRGBA{
	{230, 25, 75, 255}, {60, 180, 75, 255}, {0, 130, 200, 255}, {245, 130, 48, 255},
	{145, 30, 180, 255}, {70, 240, 240, 255}, {240, 50, 230, 255}, {210, 245, 60, 255},
	{0, 128, 128, 255}, {170, 110, 40, 255}, {128, 0, 0, 255}, {128, 128, 0, 255},
	{0, 0, 128, 255}, {255, 215, 180, 255}, {170, 255, 195, 255}, {220, 190, 255, 255},
}

// Image draws a grid: each cell's shade is its occupancy probability (white
// free .. black occupied), unknown cells grey.
func Image(g *grid.Grid) *image.NRGBA {
	m := g.Meta()
	img := image.NewNRGBA(image.Rect(0, 0, m.Width, m.Height))
	cells := g.LogOdds()
	for y := range m.Height {
		row := (m.Height - 1 - y) * img.Stride
		for x := range m.Width {
			c := cellColour(cells[y*m.Width+x])
			copy(img.Pix[row+4*x:row+4*x+4], []uint8{c.R, c.G, c.B, c.A})
		}
	}
	return img
}

func cellColour(l float32) color.NRGBA {
	v := grid.LogOddsToInt8(l)
	if v < 0 {
		return Unknown
	}
	s := uint8(255 - int(v)*255/100)
	return color.NRGBA{R: s, G: s, B: s, A: 255}
}

// Agents draws base (normally the merged map) and paints every cell that
// layer i says is occupied in Palette[i], so that one can see which agent
// contributed which walls. Layers must share base's metadata; later layers
// paint over earlier ones.
func Agents(base *grid.Grid, layers []*grid.Grid) (*image.NRGBA, error) {
	img := Image(base)
	m := base.Meta()
	for i, l := range layers {
		if l.Meta() != m {
			return nil, fmt.Errorf("%w: layer %d metadata differs from the base grid", slam.ErrInvalidArgument, i)
		}
		c := Palette[i%len(Palette)]
		for y := range m.Height {
			row := (m.Height - 1 - y) * img.Stride
			for x, v := range l.LogOdds()[y*m.Width : (y+1)*m.Width] {
				if v > 0 {
					copy(img.Pix[row+4*x:row+4*x+4], []uint8{c.R, c.G, c.B, c.A})
				}
			}
		}
	}
	return img, nil
}

// SideBySide lays images out left to right on a dark background with a small
// gap, top-aligned, for comparing a merged map with the ground truth.
func SideBySide(imgs ...image.Image) (*image.NRGBA, error) {
	if len(imgs) == 0 {
		return nil, errors.New("render: no images to lay out")
	}
	const gap = 8
	w, h := gap, 0
	for _, im := range imgs {
		b := im.Bounds()
		w += b.Dx() + gap
		h = max(h, b.Dy())
	}
	out := image.NewNRGBA(image.Rect(0, 0, w, h+2*gap))
	for i := 0; i < len(out.Pix); i += 4 {
		copy(out.Pix[i:i+4], []uint8{40, 40, 40, 255})
	}
	x := gap
	for _, im := range imgs {
		b := im.Bounds()
		for yy := 0; yy < b.Dy(); yy++ {
			for xx := 0; xx < b.Dx(); xx++ {
				out.Set(x+xx, gap+yy, im.At(b.Min.X+xx, b.Min.Y+yy))
			}
		}
		x += b.Dx() + gap
	}
	return out, nil
}

// Encode writes img as PNG.
func Encode(w io.Writer, img image.Image) error {
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(w, img); err != nil {
		return fmt.Errorf("render: encode png: %w", err)
	}
	return nil
}

// PNG returns the PNG bytes of a grid, which is what GetMap serves.
func PNG(g *grid.Grid) ([]byte, error) {
	var buf bytes.Buffer
	if err := Encode(&buf, Image(g)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Scale enlarges img by an integer factor with nearest-neighbour sampling,
// so single cells stay crisp squares in a viewer.
func Scale(img *image.NRGBA, k int) *image.NRGBA {
	if k <= 1 {
		return img
	}
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx()*k, b.Dy()*k))
	for y := 0; y < b.Dy()*k; y++ {
		src := img.Pix[(y/k)*img.Stride:]
		dst := out.Pix[y*out.Stride:]
		for x := 0; x < b.Dx()*k; x++ {
			copy(dst[4*x:4*x+4], src[4*(x/k):4*(x/k)+4])
		}
	}
	return out
}
