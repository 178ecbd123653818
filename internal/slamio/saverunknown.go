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
// PGM, and reports whether every pixel is one of map_saver's three.
func saverUnknownInGray(img *Gray) (unknown int, saver bool) {
	saver = true
	for _, v := range img.Pix {
		saver = saverPixel(uint32(v), uint32(img.MaxVal), &unknown) && saver
	}
	return unknown, saver
}

// saverUnknownInPicture is saverUnknownInGray for a picture, whose pixels
// count when grey (red, green and blue equal). It is a map_saver image
// only when every pixel is also opaque and the file has no alpha channel:
// nav2 averages that alpha in, and the unknown grey reads otherwise.
func saverUnknownInPicture(p *Picture) (unknown int, saver bool) {
	saver = !p.Matte
	if g, ok := p.Image.(*image.Gray); ok {
		b := g.Bounds()
		for row := 0; row < b.Dy(); row++ {
			for _, v := range g.Pix[row*g.Stride : row*g.Stride+b.Dx()] {
				saver = saverPixel(uint32(v), 255, &unknown) && saver
			}
		}
		return unknown, saver
	}
	b := p.Image.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := nrgba64(p.Image.At(x, y))
			grey := c.R == c.G && c.G == c.B
			saver = grey && c.A == math.MaxUint16 && saver
			if grey {
				saver = saverPixel(uint32(c.R), math.MaxUint16, &unknown) && saver
			}
		}
	}
	return unknown, saver
}

// readSaverUnknown returns the description to convert an image with, how
// many of its pixels are map_saver's unknown grey that y would have read as
// free and that it reads as unknown instead, and how many it still reads
// as free. count counts that grey and reports whether the image is a
// map_saver trinary image (only its three greys). When y falls in the trap
// (saverTrap) and its free_thresh came from the YAML: a map_saver image
// holding the grey is read with a copy of y whose free_thresh is
// ROS1FreeThresh, under which the grey is unknown again, as in the map it
// was saved from; any other image is read by y, its greys 205 counted in
// the third result, for the caller to warn of (an edited save, one with an
// alpha channel). Otherwise y is returned and both counts are 0.
func readSaverUnknown(y *MapYAML, opts ROSMapOptions, count func() (int, bool)) (*MapYAML, int, int) {
	if opts.FreeThresh != nil || !saverTrap(y) {
		return y, 0, 0
	}
	n, saver := count()
	if n == 0 {
		return y, 0, 0
	}
	if !saver {
		return y, 0, n
	}
	fixed := *y
	fixed.FreeThresh = ROS1FreeThresh
	return &fixed, n, 0
}
