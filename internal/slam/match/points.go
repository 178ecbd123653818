package match

import (
	"math"
	"slices"

	"github.com/slammesh/slammesh/internal/slam/correlate"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// point is a point of a submap in its own frame, in metres.
type point = correlate.Point

// pointSets are the submap's occupied cells at three densities: all of
// them (final score), one centroid per 2×2 cells (fine search, ICP) and per
// 4×4 cells (coarse search).
type pointSets struct {
	all, fine, coarse []point
	maxRadius         float64
	// searchRadius is the 90th percentile of the coarse points' distance
	// from the agent's origin: the rotation step of the search moves it by
	// one coarse cell. The few farthest points move by a little more, which
	// the coarse field's width and the fine search absorb; stepping for the
	// single farthest point would multiply the rotations of a long submap.
	searchRadius float64
}

func extractPoints(submap *grid.Grid) *pointSets {
	m := submap.Meta()
	ps := new(pointSets)
	fw, cwid := (m.Width+1)/2, (m.Width+coarseFactor-1)/coarseFactor
	fineAcc := make([]point, fw*((m.Height+1)/2))
	fineN := make([]int32, len(fineAcc))
	coarseAcc := make([]point, cwid*((m.Height+coarseFactor-1)/coarseFactor))
	coarseN := make([]int32, len(coarseAcc))
	cells := submap.LogOdds()
	for y := range m.Height {
		for x := range m.Width {
			if cells[y*m.Width+x] <= occupiedLogOdds {
				continue
			}
			px, py := m.Center(x, y)
			ps.all = append(ps.all, point{X: px, Y: py})
			fi := (y/2)*fw + x/2
			fineAcc[fi].X += px
			fineAcc[fi].Y += py
			fineN[fi]++
			ci := (y/coarseFactor)*cwid + x/coarseFactor
			coarseAcc[ci].X += px
			coarseAcc[ci].Y += py
			coarseN[ci]++
		}
	}
	gather := func(acc []point, n []int32) []point {
		var out []point
		for i, c := range n {
			if c > 0 {
				out = append(out, point{X: acc[i].X / float64(c), Y: acc[i].Y / float64(c)})
			}
		}
		return out
	}
	ps.fine = gather(fineAcc, fineN)
	ps.coarse = gather(coarseAcc, coarseN)
	radii := make([]float64, len(ps.coarse))
	for i, p := range ps.coarse {
		radii[i] = math.Hypot(p.X, p.Y)
		ps.maxRadius = math.Max(ps.maxRadius, radii[i])
	}
	if len(radii) > 0 {
		slices.Sort(radii)
		ps.searchRadius = radii[len(radii)*9/10]
	}
	return ps
}
