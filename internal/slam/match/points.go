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
	// pivot is the point of the agent frame the searches turn the submap
	// about, compare poses at, and keep inside the map when they search
	// it whole. It is the frame's origin when that lies in a free cell of
	// the submap: the start pose of a submap built from scans, where the
	// robot stood amid what it saw, which the gates were calibrated on.
	// Otherwise the origin is no place of the agent's (a ROS map sent as a
	// submap keeps a frame whose origin can lie tens of metres from its
	// cells, where a turn sweeps them by metres per degree, and a
	// whole-map search that kept the origin in the map would never lay
	// the cells on it), and the pivot is the centroid of the occupied
	// cells.
	pivot point
	// maxRadius is the coarse points' largest distance from pivot.
	maxRadius float64
	// searchRadius is the 90th percentile of the coarse points' distance
	// from pivot: the rotation step of the search moves it by one coarse
	// cell. The few farthest points move by a little more, which the
	// coarse field's width and the fine search absorb; stepping for the
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
	if cx, cy, ok := m.CellOf(0, 0); (!ok || submap.At(cx, cy) >= 0) && len(ps.all) > 0 {
		for _, p := range ps.all {
			ps.pivot.X += p.X
			ps.pivot.Y += p.Y
		}
		n := float64(len(ps.all))
		ps.pivot = point{X: ps.pivot.X / n, Y: ps.pivot.Y / n}
	}
	radii := make([]float64, len(ps.coarse))
	for i, p := range ps.coarse {
		radii[i] = math.Hypot(p.X-ps.pivot.X, p.Y-ps.pivot.Y)
		ps.maxRadius = math.Max(ps.maxRadius, radii[i])
	}
	if len(radii) > 0 {
		slices.Sort(radii)
		ps.searchRadius = radii[len(radii)*9/10]
	}
	return ps
}
