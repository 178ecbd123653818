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
// trinary pixels, and counts the unknown ones.
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

// saverUnknownInGray counts map_saver's unknown pixels in a PGM whose every
// pixel is one of map_saver's three; 0 when any pixel is another grey.
func saverUnknownInGray(img *Gray) int {
	n := 0
	for _, v := range img.Pix {
		if !saverPixel(uint32(v), uint32(img.MaxVal), &n) {
			return 0
		}
	}
	return n
}

// saverUnknownInPicture is saverUnknownInGray for a picture: every pixel
// grey (red, green and blue equal) and opaque, without an alpha channel in
// the file (nav2 would average that alpha in, and the unknown grey would
// read otherwise).
func saverUnknownInPicture(p *Picture) int {
	if p.Matte {
		return 0
	}
	n := 0
	if g, ok := p.Image.(*image.Gray); ok {
		b := g.Bounds()
		for row := 0; row < b.Dy(); row++ {
			for _, v := range g.Pix[row*g.Stride : row*g.Stride+b.Dx()] {
				if !saverPixel(uint32(v), 255, &n) {
					return 0
				}
			}
		}
		return n
	}
	b := p.Image.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := nrgba64(p.Image.At(x, y))
			if c.R != c.G || c.G != c.B || c.A != math.MaxUint16 || !saverPixel(uint32(c.R), math.MaxUint16, &n) {
				return 0
			}
		}
	}
	return n
}

// readSaverUnknown returns the description to convert an image with, and
// how many of its pixels are map_saver's unknown grey that y would have
// read as free. count returns that number for a map_saver trinary image (0
// for any other). When y falls in the trap (saverTrap), its free_thresh
// came from the YAML and count finds the grey, the description returned is
// a copy of y with free_thresh ROS1FreeThresh, under which the grey is
// unknown again, as in the map it was saved from; otherwise it is y.
func readSaverUnknown(y *MapYAML, opts ROSMapOptions, count func() int) (*MapYAML, int) {
	if opts.FreeThresh != nil || !saverTrap(y) {
		return y, 0
	}
	n := count()
	if n == 0 {
		return y, 0
	}
	fixed := *y
	fixed.FreeThresh = ROS1FreeThresh
	return &fixed, n
}
