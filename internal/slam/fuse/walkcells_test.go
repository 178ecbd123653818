package fuse

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestWalkCellsIsTheSegmentsCells checks the traversal against a fine
// sampling of random segments, clipped to a box: every cell a sample falls
// in is walked (but the end cell of a hit), each once, and every walked
// cell touches the segment.
func TestWalkCellsIsTheSegmentsCells(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const bx0, by0, bx1, by1 = 5, 3, 40, 30
	for n := range 3000 {
		x0, y0 := rng.Float64()*50-2, rng.Float64()*40-2
		x1, y1 := rng.Float64()*50-2, rng.Float64()*40-2
		if n%10 == 0 { // axis-parallel segments
			y1 = y0
		}
		hit := n%2 == 0
		walked := map[[2]int]int{}
		walkCells(x0, y0, x1, y1, hit, bx0, by0, bx1, by1, func(x, y int) { walked[[2]int{x, y}]++ })
		end := [2]int{int(math.Floor(x1)), int(math.Floor(y1))}
		for c, k := range walked {
			if k != 1 {
				t.Fatalf("segment %d: cell %v walked %d times", n, c, k)
			}
			if c[0] < bx0 || c[0] > bx1 || c[1] < by0 || c[1] > by1 {
				t.Fatalf("segment %d: cell %v outside the box", n, c)
			}
			if hit && c == end {
				t.Fatalf("segment %d: the hit's own cell %v walked", n, c)
			}
			if !touches(x0, y0, x1, y1, c) {
				t.Fatalf("segment %d (%.3f,%.3f)-(%.3f,%.3f): cell %v does not touch it", n, x0, y0, x1, y1, c)
			}
		}
		steps := int(math.Hypot(x1-x0, y1-y0)*1000) + 1
		for i := 0; i <= steps; i++ {
			f := float64(i) / float64(steps)
			c := [2]int{int(math.Floor(x0 + f*(x1-x0))), int(math.Floor(y0 + f*(y1-y0)))}
			if c[0] < bx0 || c[0] > bx1 || c[1] < by0 || c[1] > by1 || (hit && c == end) {
				continue
			}
			if walked[c] == 0 {
				t.Fatalf("segment %d (%.3f,%.3f)-(%.3f,%.3f): cell %v of the segment not walked", n, x0, y0, x1, y1, c)
			}
		}
	}
}

// touches reports whether the segment meets the closed unit square of cell c
// (within 1e-9).
func touches(x0, y0, x1, y1 float64, c [2]int) bool {
	t0, t1 := 0.0, 1.0
	dx, dy := x1-x0, y1-y0
	const eps = 1e-9
	for _, pq := range [4][2]float64{
		{-dx, x0 - float64(c[0]) + eps}, {dx, float64(c[0]+1) - x0 + eps},
		{-dy, y0 - float64(c[1]) + eps}, {dy, float64(c[1]+1) - y0 + eps},
	} {
		p, q := pq[0], pq[1]
		if p == 0 {
			if q < 0 {
				return false
			}
			continue
		}
		if r := q / p; p < 0 {
			t0 = max(t0, r)
		} else {
			t1 = min(t1, r)
		}
	}
	return t0 <= t1
}

// TestWalkCellsOnTheBoxEdges: a hit ending exactly on the box's far edge
// ends in the cell beyond it, so the last cell inside is free and walked;
// a segment along the line just past the box touches none of it.
func TestWalkCellsOnTheBoxEdges(t *testing.T) {
	const bx0, by0, bx1, by1 = 0, 0, 40, 20
	var got [][2]int
	walkCells(30.5, 10.5, 41, 10.5, true, bx0, by0, bx1, by1, func(x, y int) { got = append(got, [2]int{x, y}) })
	if len(got) != 11 || got[len(got)-1] != [2]int{40, 10} {
		t.Errorf("hit on the far edge: walked %v, want cells 30..40 of row 10", got)
	}
	got = nil
	walkCells(2, 21, 30, 21, false, bx0, by0, bx1, by1, func(x, y int) { got = append(got, [2]int{x, y}) })
	walkCells(41, 2, 41, 15, false, bx0, by0, bx1, by1, func(x, y int) { got = append(got, [2]int{x, y}) })
	if len(got) != 0 {
		t.Errorf("segments along the lines just past the box walked %v", got)
	}
}
