package slamio

import (
	"math"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// CoarsenToFit returns g coarsened by the smallest whole factor k that
// brings it to at most maxCells cells without making its cells coarser
// than finest metres (the mission's resolution, at which the services
// match and merge every submap anyway), and k; g itself and 1 when it fits
// already, or when no such k exists (then the caller's size check refuses
// it, naming the agent). Cell (i, j) of the result covers cells [k·i,
// k·i+k) × [k·j, k·j+k) of g, from the same origin, and holds the largest
// known value among them (a wall seen in one fine cell is a wall; cells
// only free are free), −1 when all are unknown. A 0.025 m map of a
// building of 56 × 60 m (5.5 M cells, over the 4 Mi an agent may send) is
// sent at 0.05 m.
func CoarsenToFit(g *typesv1.OccupancyGrid, maxCells uint64, finest float64) (*typesv1.OccupancyGrid, int) {
	meta := g.GetMeta()
	w, h := int(meta.GetWidth()), int(meta.GetHeight())
	res := meta.GetResolution()
	data := g.GetData()
	if uint64(w)*uint64(h) <= maxCells || w <= 0 || h <= 0 || len(data) != w*h || !(res > 0) {
		return g, 1
	}
	k := FitFactor(w, h, maxCells)
	if float64(k)*res > finest*(1+resolutionTolerance) {
		return g, 1
	}
	cw, ch := ceilDiv(w, k), ceilDiv(h, k)
	out := make([]byte, cw*ch)
	for i := range out {
		out[i] = 0xff // −1: unknown until a known cell says otherwise
	}
	for y := range h {
		row := data[y*w : (y+1)*w]
		dst := out[(y/k)*cw:]
		for x, c := range row {
			if v := int8(c); v >= 0 && (int8(dst[x/k]) < 0 || v > int8(dst[x/k])) {
				dst[x/k] = c
			}
		}
	}
	// k·res up to floating point: 0.025 × 3 is 0.07500000000000001.
	coarse := math.Round(float64(k)*res*1e9) / 1e9
	if math.Abs(coarse-finest) <= finest*resolutionTolerance {
		coarse = finest
	}
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: coarse, Width: uint32(cw), Height: uint32(ch), Origin: slamproto.PoseToProto(slamproto.PoseFromProto(meta.GetOrigin()))},
		Data: out,
	}, k
}

// FitFactor is the smallest whole factor k ≥ 2 that brings a w × h grid,
// coarsened k × k, to at most maxCells cells.
func FitFactor(w, h int, maxCells uint64) int {
	k := 2
	for uint64(ceilDiv(w, k))*uint64(ceilDiv(h, k)) > maxCells {
		k++
	}
	return k
}

// resolutionTolerance is how far, relatively, k times a map's resolution
// may lie above the mission's and still count as it: a YAML's resolution
// is a rounded decimal (1/60 m written 0.0166667, whose triple is
// 0.0500001; found by a review).
const resolutionTolerance = 1e-5

func ceilDiv(a, b int) int { return (a + b - 1) / b }
