package world

import (
	"fmt"
	"math"
	"strings"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Kind selects the scenario a world is built for. Each non-default kind
// exists to make one failure of the mission saga reproducible from a seed.
type Kind int

// The scenario kinds, numbered like the proto enum minus its UNSPECIFIED.
const (
	// Office is the default: rooms off a corridor, doors, asymmetric
	// furniture, agents placed so that every one of them can be localized
	// and merged.
	Office Kind = iota
	// SealedAgent puts the last agent in a doorless, thick-walled room that
	// no other agent sees into: its localization fails with insufficient
	// overlap.
	SealedAgent
	// SymmetricCorridor is a single corridor with identical pilasters at a
	// fixed pitch: every non-anchor match is ambiguous.
	SymmetricCorridor
	// ChangedWorld is an office where the last agent mapped after a change
	// (doors closed, furniture moved): it localizes on the unchanged walls,
	// but fusing its submap fails the consistency gate.
	ChangedWorld
)

var kindNames = [...]string{"office", "sealed_agent", "symmetric_corridor", "changed_world"}

// String returns the lower-case name used by flags and logs.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParseKind accepts the names printed by String (case-insensitive, '-' or
// '_'), so command-line flags and config files can name a scenario.
func ParseKind(s string) (Kind, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_")
	for i, name := range kindNames {
		if n == name {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown scenario kind %q (want one of %s)", slam.ErrInvalidArgument, s, strings.Join(kindNames[:], ", "))
}

// Defaults of Config; a zero field means "use the default".
const (
	DefaultAgents        = 3
	MaxAgents            = 16
	DefaultWidthM        = 20.0
	DefaultHeightM       = 15.0
	DefaultResolution    = 0.05
	DefaultScansPerAgent = 12
	DefaultPathLengthM   = 3.0
	DefaultRangeNoise    = 0.015 // metres, 1 sigma
	DefaultDropoutRate   = 0.01
	DefaultOdomNoise     = 0.01  // fraction of distance travelled, 1 sigma
	DefaultOdomRotNoise  = 0.004 // rad per metre travelled, 1 sigma
	LidarBeams           = 360
	LidarRange           = 8.0
	LidarRangeMin        = 0.05

	// Off disables a noise source whose zero value would select the default.
	Off = -1.0

	// MinWidthM and MinHeightM are the smallest building, in metres: room
	// for a corridor and a row of offices either side.
	MinWidthM, MinHeightM = 10.0, 8.0
	maxSideM              = 200.0
)

// Config describes a synthetic world. The zero value is a valid 20×15 m
// office with three agents at 5 cm; everything is derived from Seed, so equal
// configs give equal worlds, bit for bit on one machine.
type Config struct {
	Seed       uint64
	Agents     int     // 1..16 (0: DefaultAgents); SealedAgent, SymmetricCorridor and ChangedWorld need 2
	WidthM     float64 // building extent along x (0: 20 m)
	HeightM    float64 // building extent along y (0: 15 m)
	Resolution float64 // metres per cell of the truth grid and the submaps (0: 5 cm)
	Kind       Kind

	ScansPerAgent int     // scans along each agent's path (0: 12)
	PathLengthM   float64 // length of each agent's path (0: 3 m)
	RangeNoise    float64 // lidar range noise sigma in m (0: 1.5 cm, Off: none)
	DropoutRate   float64 // probability a beam returns NaN (0: 1 %, Off: none)
	OdomNoise     float64 // odometry translation noise per metre (0: 1 %, Off: none)
	OdomRotNoise  float64 // odometry heading noise in rad per metre (0: 0.004, Off: none)
}

// withDefaults fills zero fields and validates; errors wrap
// slam.ErrInvalidArgument or slam.ErrTooLarge.
func (c Config) withDefaults() (Config, error) {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Agents == 0 {
		c.Agents = DefaultAgents
	}
	def(&c.WidthM, DefaultWidthM)
	def(&c.HeightM, DefaultHeightM)
	def(&c.Resolution, DefaultResolution)
	if c.ScansPerAgent == 0 {
		c.ScansPerAgent = DefaultScansPerAgent
	}
	def(&c.PathLengthM, DefaultPathLengthM)
	def(&c.RangeNoise, DefaultRangeNoise)
	def(&c.DropoutRate, DefaultDropoutRate)
	def(&c.OdomNoise, DefaultOdomNoise)
	def(&c.OdomRotNoise, DefaultOdomRotNoise)
	for _, v := range []*float64{&c.RangeNoise, &c.DropoutRate, &c.OdomNoise, &c.OdomRotNoise} {
		if *v == Off {
			*v = 0
		}
	}
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: world: "+format, append([]any{slam.ErrInvalidArgument}, args...)...)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"width", c.WidthM}, {"height", c.HeightM}, {"resolution", c.Resolution}, {"path length", c.PathLengthM},
		{"range noise", c.RangeNoise}, {"dropout rate", c.DropoutRate}, {"odometry noise", c.OdomNoise},
		{"odometry rotation noise", c.OdomRotNoise}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return bad("%s %g must be finite and not negative", f.name, f.v)
		}
	}
	switch {
	case c.Kind < Office || c.Kind > ChangedWorld:
		return bad("unknown kind %d", int(c.Kind))
	case c.Agents < 1 || c.Agents > MaxAgents:
		return bad("agents %d outside 1..%d", c.Agents, MaxAgents)
	case c.Kind != Office && c.Agents < 2:
		return bad("kind %s needs at least 2 agents", c.Kind)
	case c.WidthM > maxSideM || c.HeightM > maxSideM:
		return Config{}, fmt.Errorf("%w: world %gx%g m larger than %g m a side", slam.ErrTooLarge, c.WidthM, c.HeightM, maxSideM)
	case c.WidthM < MinWidthM || c.HeightM < MinHeightM:
		return bad("world %gx%g m smaller than %gx%g m", c.WidthM, c.HeightM, MinWidthM, MinHeightM)
	case c.Resolution < 0.01 || c.Resolution > 0.5:
		return bad("resolution %g m outside [0.01, 0.5]", c.Resolution)
	case c.ScansPerAgent < 1 || c.ScansPerAgent > 200:
		return bad("scans per agent %d outside 1..200", c.ScansPerAgent)
	case c.PathLengthM > 20:
		return bad("path length %g m beyond 20 m", c.PathLengthM)
	case c.RangeNoise > 0.5 || c.DropoutRate > 0.9 || c.OdomNoise > 0.5 || c.OdomRotNoise > 0.5:
		return bad("noise settings out of range")
	}
	return c, nil
}

// MapMeta returns the metadata of the map (and ground-truth) grid a world of
// this config needs, without generating it: the map frame's origin is the
// building's lower-left corner. The mapping service uses it to check a
// scenario against its capacity budget (meta.Cells()) before anything is
// built; oversized requests fail with slam.ErrTooLarge.
func MapMeta(c Config) (grid.Meta, error) {
	c, err := c.withDefaults()
	if err != nil {
		return grid.Meta{}, err
	}
	return grid.MetaForBounds(0, 0, c.WidthM, c.HeightM, c.Resolution)
}
