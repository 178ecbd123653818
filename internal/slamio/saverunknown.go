package slamio

import (
	"image"
	"math"
)

// Map_saver's trinary pixels (ROS 1's map_saver and Nav2's alike): occupied
// 0, free 254, unknown 205.
const (
	saverOccupied = 0
	saverFree     = 254
	saverUnknown  = 205
)

// ROS1FreeThresh is ROS 1 map_saver's free_thresh. It lies just under the
// occ of map_saver's unknown grey (1 − 205/255 = 0.19608), so that grey
// reads back as unknown.
const ROS1FreeThresh = 0.196

// saverUnknownOcc is the occ of map_saver's unknown grey.
const saverUnknownOcc = 1 - float64(saverUnknown)/255

// saverTrap reports whether y reads map_saver's unknown grey as free: a
// trinary map, not negated, whose free_thresh lies above that grey's occ.
// Nav2's map_saver writes exactly that by default (free_thresh 0.25 beside
// pixels of 205; slam_toolbox issue 587), and Nav2's map_server then loads
// every unknown cell as free floor.
func saverTrap(y *MapYAML) bool {
	return y.Mode == ModeTrinary && !y.Negate && y.FreeThresh > saverUnknownOcc && y.OccupiedThresh > saverUnknownOcc
}

// saverPixel reports whether v (of maxVal) is one of map_saver's three
// trinary pixels, and counts the unknown ones (205, whatever else the
// image holds).
func saverPixel(v, maxVal uint32, unknown *int) bool {
	if maxVal != 255 && maxVal != math.MaxUint16 {
		return false
	}
	if maxVal == math.MaxUint16 {
		if v%0x101 != 0 { // not an 8-bit value widened
			return false
		}
		v /= 0x101
	}
	switch v {
	case saverUnknown:
		*unknown++
		return true
	case saverOccupied, saverFree:
		return true
	}
	return false
}

// saverUnknownInGray counts the pixels of map_saver's unknown grey in a
// PGM, and reports whether every pixel is one of map_saver's three; the
// grey reads as occ saverUnknownOcc.
func saverUnknownInGray(img *Gray) (unknown int, saver bool, minOcc float64) {
	saver = true
	for _, v := range img.Pix {
		saver = saverPixel(uint32(v), uint32(img.MaxVal), &unknown) && saver
	}
	return unknown, saver, saverUnknownOcc
}

// saverUnknownInPicture is saverUnknownInGray for a picture, whose pixels
// count when grey (red, green and blue equal) and read as free below
// freeThresh; it also returns the lowest occ they read as. It is a
// map_saver image only when every pixel is also opaque and the file has no
// alpha channel: nav2 averages that alpha in (CellsFromPicture), so that an
// opaque 205 reads as occ 0.147, free under ROS 1's threshold too.
func saverUnknownInPicture(p *Picture, freeThresh float64) (unknown int, saver bool, minOcc float64) {
	saver, minOcc = !p.Matte, saverUnknownOcc
	if g, ok := p.Image.(*image.Gray); ok && !p.Matte {
		b := g.Bounds()
		for row := 0; row < b.Dy(); row++ {
			for _, v := range g.Pix[row*g.Stride : row*g.Stride+b.Dx()] {
				saver = saverPixel(uint32(v), 255, &unknown) && saver
			}
		}
		return unknown, saver, minOcc
	}
	b := p.Image.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := nrgba64(p.Image.At(x, y))
			grey := c.R == c.G && c.G == c.B
			saver = grey && c.A == math.MaxUint16 && saver
			if !grey {
				continue
			}
			n := 0
			saver = saverPixel(uint32(c.R), math.MaxUint16, &n) && saver
			if n == 0 {
				continue
			}
			shade := float64(c.R) / math.MaxUint16
			if p.Matte {
				shade = (3*float64(c.R) + float64(c.A)) / 4 / math.MaxUint16
			}
			if occ := 1 - shade; occ < freeThresh {
				unknown++
				minOcc = min(minOcc, occ)
			}
		}
	}
	return unknown, saver, minOcc
}

// readSaverUnknown returns the description to convert an image with, how
// many of its pixels are map_saver's unknown grey that y would have read as
// free and that it reads as unknown instead, how many it still reads as
// free, and the highest free_thresh, to three decimals, that would read
// those as unknown. count counts that grey as read free under a
// free_thresh, reports whether the image is a map_saver trinary image (only
// its three greys, opaque) and the lowest occ the grey reads as. When y
// falls in the trap (saverTrap) and its free_thresh came from the YAML: a
// map_saver image holding the grey is read with a copy of y whose
// free_thresh is ROS1FreeThresh, under which the grey is unknown again, as
// in the map it was saved from; any other image is read by y, its greys
// 205 read as free counted in the third result, for the caller to warn of
// (an edited save, one with an alpha channel). Otherwise y is returned and
// the counts are 0.
func readSaverUnknown(y *MapYAML, opts ROSMapOptions, count func(freeThresh float64) (int, bool, float64)) (*MapYAML, int, int, float64) {
	if opts.FreeThresh != nil || !saverTrap(y) {
		return y, 0, 0, 0
	}
	n, saver, minOcc := count(y.FreeThresh)
	if n == 0 {
		return y, 0, 0, 0
	}
	if !saver {
		return y, 0, n, math.Floor(minOcc*1000-1e-9) / 1000
	}
	fixed := *y
	fixed.FreeThresh = ROS1FreeThresh
	return &fixed, n, 0, 0
}
