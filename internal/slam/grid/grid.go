// Package grid holds the occupancy grid every SLAM step reads and writes:
// per-cell log-odds of occupancy as float32, clamped so that a cell can always
// be changed again by new evidence, and converted at the edges to the ROS
// convention of int8 cells (-1 unknown, 0..100 percent occupied).
//
// Log-odds are used instead of probabilities because the Bayesian update of a
// cell with independent measurements is then a plain addition, which makes
// scan integration and map fusion the same operation.
package grid

import (
	"fmt"
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// Log-odds increments of the inverse sensor model: a beam ending in a cell
// says "occupied with probability 0.7", a beam passing through says
// "occupied with probability 0.4". Clamp bounds the accumulated value so a
// cell seen free a thousand times can still become occupied after a change.
const (
	LogOddsHit  = 0.8472978603872037  // ln(0.7/0.3)
	LogOddsMiss = -0.4054651081081644 // ln(0.4/0.6)
	Clamp       = 5.0
)

// MaxCells is the hard upper bound on the cells of one grid (64 Mi cells,
// 256 MiB of float32). Anything larger is refused with slam.ErrTooLarge
// before a byte is allocated; capacity budgets below it are the map store's
// business (see CheckCapacity).
const MaxCells = 1 << 26

// FewerCells is the advice for a mission map refused for its cells, beyond
// MaxCells or a capacity budget: what a user can change (found by a
// review: the refusals of a fine resolution named neither).
const FewerCells = "a coarser resolution or smaller bounds need fewer cells (StartMission map.resolution and bounds; slamctl start --resolution and --map with real data, --width and --height for a scenario): twice the metres per cell, a quarter of the cells"

// Meta places a grid in its parent frame.
//
// The origin is the pose of the outer corner of cell (0, 0), as in ROS
// nav_msgs/MapMetaData. Its Theta must be zero: a rotated grid buys nothing
// here (submaps live in their agent's own frame anyway) and axis-aligned
// grids keep warping and lookups cheap.
type Meta struct {
	Resolution float64     // metres per cell edge
	Width      int         // cells along x
	Height     int         // cells along y
	Origin     slam.Pose2D // corner of cell (0,0) in the parent frame; Theta must be 0
}

// Validate rejects metadata that cannot describe a grid, and grids beyond
// MaxCells with slam.ErrTooLarge.
func (m Meta) Validate() error {
	if math.IsNaN(m.Resolution) || math.IsInf(m.Resolution, 0) || m.Resolution <= 0 {
		return fmt.Errorf("%w: resolution %g m is not positive", slam.ErrInvalidArgument, m.Resolution)
	}
	if m.Resolution < 1e-3 || m.Resolution > 100 {
		return fmt.Errorf("%w: resolution %g m outside [0.001, 100]", slam.ErrInvalidArgument, m.Resolution)
	}
	if m.Width <= 0 || m.Height <= 0 {
		return fmt.Errorf("%w: grid size %dx%d is not positive", slam.ErrInvalidArgument, m.Width, m.Height)
	}
	if err := m.Origin.Validate(); err != nil {
		return fmt.Errorf("grid origin: %w", err)
	}
	if m.Origin.Theta != 0 {
		return fmt.Errorf("%w: grid origin must not be rotated (theta %g)", slam.ErrInvalidArgument, m.Origin.Theta)
	}
	if c := m.Cells(); c > MaxCells {
		if c == math.MaxInt64 { // saturated: the product is not the count
			return fmt.Errorf("%w: %dx%d cells, limit %d", slam.ErrTooLarge, m.Width, m.Height, MaxCells)
		}
		return fmt.Errorf("%w: %dx%d = %d cells, limit %d", slam.ErrTooLarge, m.Width, m.Height, c, MaxCells)
	}
	return nil
}

// Cells returns Width*Height without overflowing for any int inputs that
// Validate could see.
func (m Meta) Cells() int64 {
	if m.Width <= 0 || m.Height <= 0 {
		return 0
	}
	w, h := int64(m.Width), int64(m.Height)
	if w > math.MaxInt32 || h > math.MaxInt32 {
		return math.MaxInt64
	}
	return w * h
}

// SizeM returns the extent of the grid in metres.
func (m Meta) SizeM() (w, h float64) {
	return float64(m.Width) * m.Resolution, float64(m.Height) * m.Resolution
}

// MetaForBounds returns the metadata of the smallest grid at resolution res
// covering the axis-aligned rectangle [minX, minX+widthM] x [minY,
// minY+heightM]. It is how a map request in metres becomes a cell count, so
// it reports slam.ErrTooLarge for oversized requests without allocating.
func MetaForBounds(minX, minY, widthM, heightM, res float64) (Meta, error) {
	for _, v := range [...]float64{minX, minY, widthM, heightM, res} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Meta{}, fmt.Errorf("%w: bounds not finite", slam.ErrInvalidArgument)
		}
	}
	if widthM <= 0 || heightM <= 0 {
		return Meta{}, fmt.Errorf("%w: bounds %gx%g m not positive", slam.ErrInvalidArgument, widthM, heightM)
	}
	if res <= 0 {
		return Meta{}, fmt.Errorf("%w: resolution %g m is not positive", slam.ErrInvalidArgument, res)
	}
	w, h := math.Ceil(widthM/res-1e-9), math.Ceil(heightM/res-1e-9)
	if w*h > MaxCells || w > math.MaxInt32 || h > math.MaxInt32 {
		return Meta{}, fmt.Errorf("%w: %gx%g m at %g m is %.4g cells, limit %d", slam.ErrTooLarge, widthM, heightM, res, w*h, MaxCells)
	}
	m := Meta{Resolution: res, Width: int(w), Height: int(h), Origin: slam.Pose2D{X: minX, Y: minY}}
	return m, m.Validate()
}

// CellOf returns the cell containing the point (x, y) of the parent frame,
// and false when the point lies outside the grid.
func (m Meta) CellOf(x, y float64) (cx, cy int, ok bool) {
	fx := (x - m.Origin.X) / m.Resolution
	fy := (y - m.Origin.Y) / m.Resolution
	if !(fx >= 0 && fy >= 0 && fx < float64(m.Width) && fy < float64(m.Height)) {
		return 0, 0, false
	}
	return int(fx), int(fy), true
}

// Center returns the parent-frame coordinates of the centre of cell (cx, cy).
func (m Meta) Center(cx, cy int) (x, y float64) {
	return m.Origin.X + (float64(cx)+0.5)*m.Resolution, m.Origin.Y + (float64(cy)+0.5)*m.Resolution
}

// Grid is an occupancy grid in log-odds. Cells are stored row-major (index
// y*Width + x, y growing upwards in the parent frame); 0 means unknown, a
// positive value leans occupied and a negative value leans free. Every
// writer keeps values within [-Clamp, Clamp].
type Grid struct {
	meta    Meta
	logOdds []float32
}

// New allocates an all-unknown grid after validating meta, so an oversized
// request fails with slam.ErrTooLarge instead of exhausting memory.
func New(meta Meta) (*Grid, error) {
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	return &Grid{meta: meta, logOdds: make([]float32, meta.Cells())}, nil
}

// Meta returns the grid's placement.
func (g *Grid) Meta() Meta { return g.meta }

// LogOdds exposes the backing cells (row-major) for the fast loops of the
// sibling packages. It is shared, not copied: writers must keep values within
// ±Clamp.
func (g *Grid) LogOdds() []float32 { return g.logOdds }

// At returns the log-odds of cell (x, y), or 0 (unknown) outside the grid.
func (g *Grid) At(x, y int) float32 {
	if x < 0 || y < 0 || x >= g.meta.Width || y >= g.meta.Height {
		return 0
	}
	return g.logOdds[y*g.meta.Width+x]
}

// Add adds delta to cell (x, y) with clamping; cells outside are ignored
// because evidence about space outside the map is not an error.
func (g *Grid) Add(x, y int, delta float32) {
	if x < 0 || y < 0 || x >= g.meta.Width || y >= g.meta.Height {
		return
	}
	i := y*g.meta.Width + x
	g.logOdds[i] = ClampLogOdds(g.logOdds[i] + delta)
}

// Clone returns a deep copy.
func (g *Grid) Clone() *Grid {
	c := &Grid{meta: g.meta, logOdds: make([]float32, len(g.logOdds))}
	copy(c.logOdds, g.logOdds)
	return c
}

// Counts returns how many cells lean occupied, lean free, and are unknown.
func (g *Grid) Counts() (occupied, free, unknown int) {
	for _, l := range g.logOdds {
		switch {
		case l > 0:
			occupied++
		case l < 0:
			free++
		default:
			unknown++
		}
	}
	return occupied, free, unknown
}

// ClampLogOdds limits l to [-Clamp, Clamp].
func ClampLogOdds(l float32) float32 {
	if l > Clamp {
		return Clamp
	}
	if l < -Clamp {
		return -Clamp
	}
	return l
}

// fromInt8Fifty is what an int8 50 ("known, no idea") becomes: a log-odds so
// small it rounds back to 50, but not zero, because zero means unknown (-1).
const fromInt8Fifty = 1e-3

// ToInt8 exports the grid in the ROS nav_msgs/OccupancyGrid convention: -1 for
// unknown (log-odds exactly 0), else the occupancy probability in percent.
// Saturated cells (|l| = Clamp) become exactly 0 or 100, so that FromInt8 and
// ToInt8 round-trip every int8 value exactly.
func (g *Grid) ToInt8() []int8 {
	out := make([]int8, len(g.logOdds))
	for i, l := range g.logOdds {
		out[i] = LogOddsToInt8(l)
	}
	return out
}

// FromInt8 builds a grid from ROS-style cells. It is the entry point for maps
// arriving over the wire, so every value is checked rather than trusted.
func FromInt8(meta Meta, data []int8) (*Grid, error) {
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if int64(len(data)) != meta.Cells() {
		return nil, fmt.Errorf("%w: %d cells for a %dx%d grid", slam.ErrInvalidArgument, len(data), meta.Width, meta.Height)
	}
	g := &Grid{meta: meta, logOdds: make([]float32, len(data))}
	for i, v := range data {
		if uint8(v+1) > 101 { // outside -1..100
			return nil, fmt.Errorf("%w: cell %d has value %d outside -1..100", slam.ErrInvalidArgument, i, v)
		}
		g.logOdds[i] = int8LogOdds[uint8(v+1)]
	}
	return g, nil
}
