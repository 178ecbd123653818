package slamio

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/slammesh/slammesh/internal/slam"
)

// MapMode is how map_server turns pixels into cells (nav2_map_server
// map_io.cpp, MapMode).
type MapMode string

const (
	// ModeTrinary: occupied (100), free (0) or unknown (-1) by the two
	// thresholds. map_server's default.
	ModeTrinary MapMode = "trinary"
	// ModeScale: like trinary outside the thresholds, a linear 0..100
	// between them; transparent pixels are unknown (a PGM has none).
	ModeScale MapMode = "scale"
	// ModeRaw: the pixel value is the cell value; 101..255 are unknown.
	ModeRaw MapMode = "raw"
)

// MapYAML is a map_server map description, as nav2's loadMapYaml reads it.
type MapYAML struct {
	// Image is the image path as written (relative to the YAML's folder
	// unless absolute).
	Image string
	// Resolution is metres per pixel.
	Resolution float64
	// Origin is the pose of the lower-left pixel's outer corner in the map
	// frame: x, y in metres and yaw in radians.
	Origin [3]float64
	// Negate swaps black and white.
	Negate bool
	// OccupiedThresh and FreeThresh are occupancy probabilities in [0, 1].
	OccupiedThresh, FreeThresh float64
	// Mode defaults to trinary when the key is absent.
	Mode MapMode
	// imageLine is the 1-based line of the image key (ParseMapYAML), which
	// a missing image's error names.
	imageLine int
}

// The resolutions a submap may have (the API's limit on
// submap.meta.resolution, internal/slamproto): refusing others here names
// the YAML line instead of failing the request.
const (
	minResolution = 1e-3
	maxResolution = 100.0
)

// yamlKeys are the keys nav2 requires (mode is optional); other keys are
// ignored, as yaml-cpp's lookups ignore them.
var yamlKeys = []string{"image", "resolution", "origin", "negate", "occupied_thresh", "free_thresh"}

// ParseMapYAML reads the map_server subset of YAML: one "key: value" per
// line (not a flow mapping "{key: value, …}"), '#' comments, quoted or plain scalars, and origin as a flow
// sequence "[x, y, yaw]" or a block sequence of "- v" lines. negate is 0/1
// or a boolean, as nav2 accepts either. Keys may be quoted; keys it does
// not read may hold nested blocks; "..." ends the document, and so does a
// second document's "---" (yaml-cpp's LoadFile reads the first). Errors name file and line: a
// missing key names the last line.
func ParseMapYAML(data []byte, name string) (*MapYAML, error) {
	y := &MapYAML{Mode: ModeTrinary}
	seen := map[string]int{}
	// A byte order mark (a YAML saved by a Windows editor) would become part
	// of the first key.
	lines := strings.Split(strings.TrimPrefix(string(data), "\ufeff"), "\n")
	for i := 0; i < len(lines); i++ {
		line := stripComment(lines[i])
		if strings.TrimSpace(line) == "" {
			continue
		}
		if t := strings.TrimRight(line, " \t\r"); t == "---" && len(seen) == 0 {
			continue // the start of the first document
		} else if t == "---" || t == "..." {
			// The end of the document, or the start of a second one:
			// yaml-cpp's LoadFile, which map_server reads the YAML with,
			// returns the first document only.
			break
		}
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			return nil, lineErr(name, i+1, "a flow mapping {…} is not read: write one key: value per line, as map_saver does")
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, lineErr(name, i+1, "unexpected indented line %q", strings.TrimSpace(line))
		}
		key, val, ok := splitKey(line)
		if !ok {
			return nil, lineErr(name, i+1, "want key: value, got %q", strings.TrimSpace(line))
		}
		if prev, dup := seen[key]; dup {
			return nil, lineErr(name, i+1, "key %q already given on line %d", key, prev)
		}
		seen[key] = i + 1
		var err error
		switch key {
		case "image":
			y.imageLine = i + 1
			y.Image, err = unquote(val)
			if err == nil && y.Image == "" {
				err = fmt.Errorf("image is empty")
			}
		case "resolution":
			y.Resolution, err = parseFloat(val)
			if err == nil && !(y.Resolution >= minResolution && y.Resolution <= maxResolution) {
				err = fmt.Errorf("resolution %s: want %g..%g m per pixel", val, minResolution, maxResolution)
			}
		case "origin":
			var items []string
			if val == "" { // block sequence on the next lines
				for i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(stripComment(lines[i+1])), "-") {
					i++
					items = append(items, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stripComment(lines[i])), "-")))
				}
			} else if strings.HasPrefix(val, "[") && strings.HasSuffix(val, "]") {
				items = strings.Split(val[1:len(val)-1], ",")
			} else {
				err = fmt.Errorf("origin %s: want [x, y, yaw]", val)
			}
			if err == nil && len(items) != 3 {
				err = fmt.Errorf("origin has %d elements, want 3 (x, y, yaw)", len(items))
			}
			for j := 0; err == nil && j < len(items); j++ {
				y.Origin[j], err = parseFloat(strings.TrimSpace(items[j]))
			}
			if err == nil && (math.Abs(y.Origin[0]) > slam.MaxCoordinate || math.Abs(y.Origin[1]) > slam.MaxCoordinate) {
				err = fmt.Errorf("origin (%g, %g): x and y must lie within ±%g m", y.Origin[0], y.Origin[1], slam.MaxCoordinate)
			}
		case "negate":
			switch v, _ := unquote(val); v {
			case "0", "false", "False", "FALSE":
				y.Negate = false
			case "1", "true", "True", "TRUE":
				y.Negate = true
			default:
				err = fmt.Errorf("negate %s: want 0 or 1", val)
			}
		case "occupied_thresh":
			y.OccupiedThresh, err = parseFloat(val)
		case "free_thresh":
			y.FreeThresh, err = parseFloat(val)
		case "mode":
			m, _ := unquote(val)
			y.Mode = MapMode(strings.ToLower(m)) // nav2's map_mode_from_string lowercases too
			if y.Mode != ModeTrinary && y.Mode != ModeScale && y.Mode != ModeRaw {
				err = fmt.Errorf("mode %s: want trinary, scale or raw", val)
			}
		default:
			// A key map_server does not read (frame_id, a tool's metadata)
			// may hold a block: its indented lines and "- " items are its.
			for i+1 < len(lines) {
				next := stripComment(lines[i+1])
				if t := strings.TrimSpace(next); t != "" && next[0] != ' ' && next[0] != '\t' && !strings.HasPrefix(t, "-") {
					break
				}
				i++
			}
		}
		if err != nil {
			return nil, lineErr(name, i+1, "%v", err)
		}
	}
	for _, k := range yamlKeys {
		if _, ok := seen[k]; !ok {
			return nil, lineErr(name, max(len(lines)-1, 1), "key %q missing (map_server needs image, resolution, origin, negate, occupied_thresh, free_thresh)", k)
		}
	}
	if err := checkThresholds(y.OccupiedThresh, y.FreeThresh); err != nil {
		return nil, lineErr(name, seen["free_thresh"], "%v", err)
	}
	return y, nil
}

// checkThresholds requires 0 <= free < occupied <= 1, the order every mode
// needs (scale divides by their difference).
func checkThresholds(occ, free float64) error {
	if !(free >= 0 && free < occ && occ <= 1) {
		return fmt.Errorf("thresholds free %g, occupied %g: want 0 <= free < occupied <= 1", free, occ)
	}
	return nil
}

// splitKey splits a "key: value" line at the colon after its key, which
// may be quoted ("image": m.pgm reads as image, as in yaml-cpp); key and
// value come back trimmed and the key unquoted.
func splitKey(line string) (key, val string, ok bool) {
	if q := line[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(line[1:], q)
		if end < 0 {
			return "", "", false
		}
		rest, ok := strings.CutPrefix(strings.TrimLeft(line[end+2:], " \t"), ":")
		return line[1 : end+1], strings.TrimSpace(rest), ok
	}
	key, val, ok = strings.Cut(line, ":")
	return strings.TrimSpace(key), strings.TrimSpace(val), ok
}

func stripComment(s string) string {
	inQuote := byte(0)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote != 0:
			if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'':
			inQuote = c
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return strings.TrimRight(s[:i], " \t\r")
		}
	}
	return strings.TrimRight(s, " \t\r")
}

func unquote(s string) (string, error) {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1], nil
	}
	return s, nil
}

// parseFloat reads a plain or quoted scalar as a finite number: yaml-cpp,
// which map_server reads the YAML with, converts a quoted "0.05" as it does
// a plain one.
func parseFloat(s string) (float64, error) {
	s, _ = unquote(s)
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return v, nil
}

// FormatMapYAML writes y the way map_server's saver lays it out, with
// numbers in full precision (the saver's 3 digits would move a 5 cm map's
// origin by up to half a millimetre per save).
func FormatMapYAML(y *MapYAML) []byte {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	negate := 0
	if y.Negate {
		negate = 1
	}
	return fmt.Appendf(nil, "image: %s\nmode: %s\nresolution: %s\norigin: [%s, %s, %s]\nnegate: %d\noccupied_thresh: %s\nfree_thresh: %s\n",
		y.Image, y.Mode, f(y.Resolution), f(y.Origin[0]), f(y.Origin[1]), f(y.Origin[2]), negate, f(y.OccupiedThresh), f(y.FreeThresh))
}
