package slamio

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// ROSMapOptions override what a map's YAML says; nil keeps the YAML's.
type ROSMapOptions struct {
	// OccupiedThresh and FreeThresh replace the YAML's thresholds, for maps
	// whose walls were blended with grey by an image editor (the Willow
	// Garage map needs occupied 0.22 to keep its walls).
	OccupiedThresh, FreeThresh *float64
	// Mode replaces the YAML's mode.
	Mode MapMode
}

// ROSMap is a map_server map loaded the way nav2_map_server loads it.
type ROSMap struct {
	// YAML is the description as read (after ROSMapOptions), with the
	// free_thresh used (see SaverUnknown).
	YAML *MapYAML
	// ImagePath is where the image was read from.
	ImagePath string
	// Grid is the map as nav_msgs/OccupancyGrid: row 0 is the image's bottom
	// row, cells -1 (unknown) or 0..100. Its meta origin is the YAML
	// origin's x, y with theta 0; the yaw is in Yaw.
	Grid *typesv1.OccupancyGrid
	// Yaw is the origin's rotation (radians): the grid is rotated by it
	// about the origin corner, as nav_msgs/MapMetaData's origin pose says.
	Yaw float64
	// SaverUnknown counts the pixels of map_saver's unknown grey (205) read
	// as unknown where the YAML's free_thresh would have read them as free
	// (Nav2's map_saver default, see ReadROSMap); 0 when the map was read
	// by its YAML as nav2 reads it. YAML then holds the free_thresh used,
	// ROS1FreeThresh.
	SaverUnknown int
	// SaverGreyAsFree counts the pixels of grey 205 read as free, by the
	// YAML's free_thresh, in an image that is not map_saver's alone (an
	// edited save, one with an alpha channel), which is read as nav2
	// reads it.
	SaverGreyAsFree int
	// SaverGreyFreeThresh is, with SaverGreyAsFree, the highest
	// free_thresh that reads those pixels as unknown: ROS1FreeThresh for
	// opaque pixels without an alpha channel, 0.147 for opaque ones with.
	SaverGreyFreeThresh float64
}

// ReadROSMap loads yamlPath and its image (relative to the YAML's folder
// unless absolute), converting pixels to cells exactly as nav2's
// loadMapFromFile does: shade = value/maxval (the mean of red, green and
// blue for a colour pixel), occ = 1−shade (or shade when negate), then
//
//	trinary: occ > occupied_thresh → 100, occ < free_thresh → 0, else −1
//	scale:   the same outside the thresholds, rint(100·(occ−free)/(occupied−free)) between
//	raw:     round(shade·255) when it lies in 0..100, else −1
//
// with alpha as CellsFromPicture says, with one exception: Nav2's
// map_saver writes a trinary map's unknown cells as grey 205 beside a
// free_thresh of 0.25, above that grey's occ (0.196), so that nav2 loads
// every unknown cell it saved as free (slam_toolbox issue 587). For
// localization and the merge, unknown read as free is floor where the map
// knows nothing, and refutes every pose (a review's Willow submaps saved so
// were refused with a free conflict of 1.23). So when the YAML's own
// free_thresh (not one from opts) reads 205 as free in trinary mode, and
// every pixel of the image is one of map_saver's 0, 205 and 254, the map is
// read with ROS 1 map_saver's free_thresh 0.196 instead, and SaverUnknown
// counts the pixels that stayed unknown. The image is recognised by its
// content: PGM (P2, P5, 8 or 16 bits), PNG, BMP, JPEG or GIF. Both files
// must be regular files (a FIFO would block, a device never end); a PGM is
// read no further than its header says it needs (readPGMFile), another
// image's dimensions are read before its pixels, an image of more than
// grid.MaxCells pixels is refused, and so is a YAML of more than 1 MiB.
// Errors name the file and line (the byte offset inside P5 samples).
func ReadROSMap(yamlPath string, opts ROSMapOptions) (*ROSMap, error) {
	data, err := readMapYAML(yamlPath)
	if err != nil {
		return nil, err
	}
	y, err := ParseMapYAML(data, yamlPath)
	if err != nil {
		return nil, err
	}
	if opts.OccupiedThresh != nil {
		y.OccupiedThresh = *opts.OccupiedThresh
	}
	if opts.FreeThresh != nil {
		y.FreeThresh = *opts.FreeThresh
	}
	if opts.Mode != "" {
		y.Mode = opts.Mode
	}
	if err := checkThresholds(y.OccupiedThresh, y.FreeThresh); err != nil {
		return nil, fmt.Errorf("%s: %w", yamlPath, err)
	}
	imgPath := y.Image
	if !filepath.IsAbs(imgPath) {
		imgPath = filepath.Join(filepath.Dir(yamlPath), imgPath)
	}
	raw, err := readPGMFile(imgPath)
	var perr *ParseError
	if errors.As(err, &perr) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s:%d: image %s: %w", yamlPath, y.imageLine, y.Image, err)
	}
	// By content, as map_server reads it: a PGM named .png or without an
	// extension is read as a PGM, a PNG named .pgm as a PNG.
	if !isPGM(raw) {
		pic, err := readPicture(imgPath, raw)
		if errors.Is(err, errNotPicture) {
			return nil, lineErr(imgPath, 1, "%s (the image of %s): map images are read as PGM (P2/P5), PNG, BMP, JPEG or GIF; convert it (e.g. with ImageMagick's convert) to one of them", pictureKind(raw), yamlPath)
		}
		if err != nil {
			return nil, fmt.Errorf("%w (the image of %s)", err, yamlPath)
		}
		y, unknown, asFree, thresh := readSaverUnknown(y, opts, func(free float64) (int, bool, float64) { return saverUnknownInPicture(pic, free) })
		return &ROSMap{YAML: y, ImagePath: imgPath, Grid: CellsFromPicture(pic, y), Yaw: y.Origin[2], SaverUnknown: unknown, SaverGreyAsFree: asFree, SaverGreyFreeThresh: thresh}, nil
	}
	img, err := DecodePGM(raw, imgPath)
	if err != nil {
		return nil, err
	}
	y, unknown, asFree, thresh := readSaverUnknown(y, opts, func(float64) (int, bool, float64) { return saverUnknownInGray(img) })
	return &ROSMap{YAML: y, ImagePath: imgPath, Grid: CellsFromImage(img, y), Yaw: y.Origin[2], SaverUnknown: unknown, SaverGreyAsFree: asFree, SaverGreyFreeThresh: thresh}, nil
}

// maxMapYAMLBytes bounds a map YAML: map_server's are seven short lines.
const maxMapYAMLBytes = 1 << 20

// readMapYAML reads a map YAML, a regular file of at most maxMapYAMLBytes.
func readMapYAML(path string) ([]byte, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxMapYAMLBytes {
		return nil, fmt.Errorf("%s: %d bytes: a map YAML is a few lines (at most %d bytes are read)", path, size, maxMapYAMLBytes)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// CellsFromImage converts an image to an occupancy grid with y's mode,
// negate, thresholds, resolution and origin (see ReadROSMap). The image's
// top row becomes the grid's last row.
func CellsFromImage(img *Gray, y *MapYAML) *typesv1.OccupancyGrid {
	data := make([]byte, img.Width*img.Height)
	for row := 0; row < img.Height; row++ {
		out := data[(img.Height-1-row)*img.Width:]
		for x, v := range img.Pix[row*img.Width : (row+1)*img.Width] {
			out[x] = byte(cellOf(float64(v)/float64(img.MaxVal), y))
		}
	}
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{
			Resolution: y.Resolution, Width: uint32(img.Width), Height: uint32(img.Height),
			Origin: &typesv1.Pose2D{X: y.Origin[0], Y: y.Origin[1]},
		},
		Data: data,
	}
}

// cellOf is map_io.cpp's per-pixel switch for one opaque grey pixel.
func cellOf(shade float64, y *MapYAML) int8 {
	occ := 1 - shade
	if y.Negate {
		occ = shade
	}
	switch y.Mode {
	case ModeRaw:
		v := math.Round(shade * 255)
		if v >= 0 && v <= 100 {
			return int8(v)
		}
		return -1
	case ModeScale:
		switch {
		case y.OccupiedThresh < occ:
			return 100
		case occ < y.FreeThresh:
			return 0
		}
		return int8(math.RoundToEven((occ - y.FreeThresh) / (y.OccupiedThresh - y.FreeThresh) * 100))
	default:
		switch {
		case y.OccupiedThresh < occ:
			return 100
		case occ < y.FreeThresh:
			return 0
		}
		return -1
	}
}

// Submap returns the map as an agent's submap, cut to its known cells
// (CropToKnown), and the pose of that agent's frame in the map's own
// (YAML) frame. The API's grids are axis-aligned in their frame, so the
// agent frame is the YAML frame rotated by the origin's yaw: the submap's
// origin is the YAML origin rotated back by yaw, and yamlFromAgent is
// (0, 0, yaw). With yaw 0 (nearly every saved map) the agent frame is the
// YAML frame itself.
func (m *ROSMap) Submap() (submap *typesv1.OccupancyGrid, yamlFromAgent slam.Pose2D) {
	yamlFromAgent = slam.Pose2D{Theta: slam.NormalizeAngle(m.Yaw)}
	ox, oy := yamlFromAgent.Inverse().Apply(m.Grid.GetMeta().GetOrigin().GetX(), m.Grid.GetMeta().GetOrigin().GetY())
	meta := &typesv1.GridMeta{
		Resolution: m.Grid.GetMeta().GetResolution(), Width: m.Grid.GetMeta().GetWidth(), Height: m.Grid.GetMeta().GetHeight(),
		Origin: &typesv1.Pose2D{X: ox, Y: oy},
	}
	return CropToKnown(&typesv1.OccupancyGrid{Meta: meta, Data: m.Grid.GetData()}), yamlFromAgent
}

// cropAlign is the step of the corners CropToKnown cuts at, in cells: the
// scan matcher groups a submap's cells in 2×2 and 4×4 blocks counted from
// cell (0, 0) (internal/slam/match), so a cut at a multiple of 4 keeps
// every block, and an agent at the mission's resolution localizes exactly
// as from the whole grid.
const cropAlign = 4

// CropToKnown returns g cut to the bounding box of its known cells (value
// ≠ -1), its lower corner moved down to a multiple of 4 cells (cropAlign),
// with the origin moved to the cut's corner so that every cell keeps its
// place in g's frame; g itself when that cuts nothing or g has no known
// cell. An unknown cell tells localization and the merge nothing, and
// saved maps often hold mostly that: map_server's maps of a gmapping run
// are 4000×4000 cells by default, 16 M cells where an agent may send 4 Mi
// (slamproto.MaxSubmapCells), around a building of a few hundred thousand.
func CropToKnown(g *typesv1.OccupancyGrid) *typesv1.OccupancyGrid {
	meta := g.GetMeta()
	w, h := int(meta.GetWidth()), int(meta.GetHeight())
	data := g.GetData()
	if w <= 0 || h <= 0 || len(data) != w*h {
		return g // malformed: the service names what is wrong with it
	}
	x0, y0, x1, y1 := w, h, -1, -1
	for y := 0; y < h; y++ {
		row := data[y*w : (y+1)*w]
		first := -1
		for x, c := range row {
			if int8(c) != -1 {
				first = x
				break
			}
		}
		if first < 0 {
			continue
		}
		last := first
		for x := w - 1; x > first; x-- {
			if int8(row[x]) != -1 {
				last = x
				break
			}
		}
		x0, x1 = min(x0, first), max(x1, last)
		y0, y1 = min(y0, y), y
	}
	x0, y0 = x0/cropAlign*cropAlign, y0/cropAlign*cropAlign
	if x1 < 0 || (x0 == 0 && y0 == 0 && x1 == w-1 && y1 == h-1) {
		return g
	}
	cw, ch := x1-x0+1, y1-y0+1
	cells := make([]byte, 0, cw*ch)
	for y := y0; y <= y1; y++ {
		cells = append(cells, data[y*w+x0:y*w+x1+1]...)
	}
	res := meta.GetResolution()
	origin := slamproto.PoseFromProto(meta.GetOrigin()).Compose(slam.Pose2D{X: float64(x0) * res, Y: float64(y0) * res})
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: res, Width: uint32(cw), Height: uint32(ch), Origin: slamproto.PoseToProto(origin)},
		Data: cells,
	}
}

// ROSMapAgent makes an agent of a map: its submap (see Submap) and, when
// mapFromYAML (the pose of the map's YAML frame in the mission map) is not
// nil, the initial guess mapFromYAML ∘ yaml_from_agent.
func ROSMapAgent(m *ROSMap, id string, anchor bool, mapFromYAML *slam.Pose2D) *typesv1.Agent {
	sub, yamlFromAgent := m.Submap()
	a := &typesv1.Agent{AgentId: id, Submap: sub, Anchor: anchor}
	if mapFromYAML != nil {
		a.InitialGuess = slamproto.PoseToProto(mapFromYAML.Compose(yamlFromAgent))
	}
	return a
}

// AgentIDFromPath names an agent after its file: the base name without
// extension(s), with characters outside [A-Za-z0-9_.-] replaced by '-'
// ("maps/floor 2.yaml" → "floor-2").
func AgentIDFromPath(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".gz", ".yaml", ".yml", ".log", ".clf"} {
		base = strings.TrimSuffix(base, ext)
	}
	id := []byte(base)
	for i, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			id[i] = '-'
		}
	}
	if len(id) > slamproto.MaxAgentIDLen {
		id = id[:slamproto.MaxAgentIDLen]
	}
	return string(id)
}

// ExportMode is how WriteROSMap encodes cells.
type ExportMode string

const (
	// ExportTrinary writes map_server's trinary image: what every ROS
	// consumer expects; cells keep their class (see TrinaryClass).
	ExportTrinary ExportMode = "trinary"
	// ExportRaw writes each cell's value as the pixel (unknown as 255):
	// mode raw, exact in value.
	ExportRaw ExportMode = "raw"
)

// Export thresholds: Nav2's map_saver defaults (free_thresh_default 0.25,
// occupied_thresh_default 0.65).
const (
	ExportOccupiedThresh = 0.65
	ExportFreeThresh     = 0.25
)

// Trinary pixels. Free and occupied are map_saver's 254 and 0. Unknown is
// 128, not map_saver's 205: with free_thresh 0.25, 205 reads back as occ
// 1−205/255 = 0.196 < 0.25, i.e. FREE (the trap of Nav2's own saver, see
// slam_toolbox issue 587); 128 gives occ 0.498, unknown under these
// thresholds and under ROS 1's 0.196 as well.
const (
	pixelFree     = 254
	pixelOccupied = 0
	pixelUnknown  = 128
)

// TrinaryClass is the class a cell keeps through a trinary export, by
// map_saver's rule with the export thresholds: 100 for v >= 65, 0 for
// 0 <= v <= 25, −1 otherwise (unknown, and the undecided 26..64).
func TrinaryClass(v int8) int8 {
	switch {
	case v < 0 || v > 100:
		return -1
	case v <= int8(math.Round(ExportFreeThresh*100)):
		return 0
	case v >= int8(math.Round(ExportOccupiedThresh*100)):
		return 100
	}
	return -1
}

// WriteROSMap writes og as base+".yaml" and base+".pgm" (P5, 8 bits), the
// YAML naming the image by its base name so the pair can be moved
// together. The map's origin theta is written as the YAML yaw.
func WriteROSMap(base string, og *typesv1.OccupancyGrid, mode ExportMode) error {
	meta := og.GetMeta()
	w, h := int(meta.GetWidth()), int(meta.GetHeight())
	if w <= 0 || h <= 0 || len(og.GetData()) != w*h {
		return fmt.Errorf("map %dx%d with %d cells", w, h, len(og.GetData()))
	}
	if mode != ExportTrinary && mode != ExportRaw {
		return fmt.Errorf("export mode %q: want trinary or raw", mode)
	}
	img := &Gray{Width: w, Height: h, MaxVal: 255, Pix: make([]uint16, w*h)}
	for row := 0; row < h; row++ {
		cells := og.GetData()[(h-1-row)*w : (h-row)*w]
		for x, c := range cells {
			img.Pix[row*w+x] = pixelFor(int8(c), mode)
		}
	}
	y := &MapYAML{
		Image:      filepath.Base(base) + ".pgm",
		Mode:       MapMode(mode),
		Resolution: meta.GetResolution(),
		Origin:     [3]float64{meta.GetOrigin().GetX(), meta.GetOrigin().GetY(), meta.GetOrigin().GetTheta()},
		// map_server requires both thresholds in every mode.
		OccupiedThresh: ExportOccupiedThresh, FreeThresh: ExportFreeThresh,
	}
	pgm := EncodePGM(img, fmt.Sprintf("slammesh %s map, %.3f m/pix", mode, meta.GetResolution()))
	return errors.Join(os.WriteFile(base+".pgm", pgm, 0o644), os.WriteFile(base+".yaml", FormatMapYAML(y), 0o644))
}

func pixelFor(c int8, mode ExportMode) uint16 {
	if mode == ExportRaw {
		if c < 0 || c > 100 {
			return 255
		}
		return uint16(c)
	}
	switch TrinaryClass(c) {
	case 0:
		return pixelFree
	case 100:
		return pixelOccupied
	}
	return pixelUnknown
}
