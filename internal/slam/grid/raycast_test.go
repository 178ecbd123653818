package grid

import (
	"math"
	"math/rand/v2"
	"testing"
)

// walkCells lists the cells the all-octant Bresenham walk visits from
// (ix0, iy0) to (ix1, iy1), both ends included: the walk traceRay's
// per-axis loops must take cell for cell.
func walkCells(ix0, iy0, ix1, iy1 int) [][2]int {
	adx, ady := ix1-ix0, iy1-iy0
	sx, sy := 1, 1
	if adx < 0 {
		adx, sx = -adx, -1
	}
	if ady < 0 {
		ady, sy = -ady, -1
	}
	x, y, err := ix0, iy0, adx-ady
	out := [][2]int{{x, y}}
	for x != ix1 || y != iy1 {
		e2 := 2 * err
		if e2 > -ady {
			err -= ady
			x += sx
		}
		if e2 < adx {
			err += adx
			y += sy
		}
		out = append(out, [2]int{x, y})
	}
	return out
}

// TestTraceRayWalksBresenham: traceRay lowers exactly the cells of the
// all-octant Bresenham walk between its clipped ends, once each, and
// raises the last one on a hit, for random segments in every octant,
// diagonals, axis-parallel ones and ones the grid clips.
func TestTraceRayWalksBresenham(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 4))
	const w, h = 37, 29
	for c := range 3000 {
		g, err := New(Meta{Resolution: 1, Width: w, Height: h})
		if err != nil {
			t.Fatal(err)
		}
		x0, y0 := rng.Float64()*w, rng.Float64()*h
		var x1, y1 float64
		switch c % 4 {
		case 0: // anywhere, clipped when it leaves the grid
			x1, y1 = rng.Float64()*1.6*w-0.3*w, rng.Float64()*1.6*h-0.3*h
		case 1: // a diagonal
			d := float64(rng.IntN(20) - 10)
			x1, y1 = math.Floor(x0)+0.5+d, math.Floor(y0)+0.5+d*float64(1-2*rng.IntN(2))
			x0, y0 = math.Floor(x0)+0.5, math.Floor(y0)+0.5
		case 2: // along x or y
			if rng.IntN(2) == 0 {
				x1, y1 = rng.Float64()*w, y0
			} else {
				x1, y1 = x0, rng.Float64()*h
			}
		default: // short
			x1, y1 = x0+rng.Float64()*4-2, y0+rng.Float64()*4-2
		}
		hit := rng.IntN(2) == 0
		ok := g.traceRay(x0, y0, x1, y1, hit)
		if x1 < 0 || y1 < 0 || x1 >= w || y1 >= h || x0 < 0 || y0 < 0 {
			continue // clipped: the ends are traceRay's own; the walk is checked unclipped
		}
		want := walkCells(int(math.Floor(x0)), int(math.Floor(y0)), int(math.Floor(x1)), int(math.Floor(y1)))
		expect := make([]float32, w*h)
		for k, p := range want {
			v := float32(LogOddsMiss)
			if k == len(want)-1 && hit {
				v = LogOddsHit
			}
			expect[p[1]*w+p[0]] = v
		}
		if ok != hit {
			t.Fatalf("case %d: hit marked %v, want %v", c, ok, hit)
		}
		for i, v := range g.LogOdds() {
			if v != expect[i] {
				t.Fatalf("case %d (%.3f,%.3f)->(%.3f,%.3f): cell (%d,%d) is %v, the walk gives %v", c, x0, y0, x1, y1, i%w, i/w, v, expect[i])
			}
		}
	}
}
