package grid

import "math"

// DistanceTransform computes, for every cell of a w×h row-major mask, the
// squared Euclidean distance in cells to the nearest set cell, and the index
// of that cell (-1 and +Inf when the mask is empty). It is the exact
// two-pass algorithm of Felzenszwalb and Huttenlocher, linear in the number
// of cells, and is the basis of the likelihood fields and the nearest-
// occupied lookup that localization uses.
//
// dist2 and nearest are reused when they have the right length, so callers
// that rebuild fields every round do not allocate.
func DistanceTransform(w, h int, mask []bool, dist2 []float32, nearest []int32) ([]float32, []int32) {
	return DistanceTransformWithin(w, h, mask, math.Inf(1), dist2, nearest)
}

// DistanceTransformWithin is DistanceTransform for a reader that looks no
// farther than a squared distance of reach2 cells² from the set cells (a
// likelihood field cut at 3σ, an ICP gate): wherever the squared distance
// is at most reach2, dist2 and nearest are exactly DistanceTransform's;
// elsewhere dist2 is larger than reach2 — the squared distance to a farther
// set cell, which nearest names, or +Inf with nearest -1. Set cells farther
// than that in their column do not take part in a row's lower envelope,
// which is what makes it cheaper on maps of walls and open floor.
func DistanceTransformWithin(w, h int, mask []bool, reach2 float64, dist2 []float32, nearest []int32) ([]float32, []int32) {
	n := w * h
	if len(dist2) != n {
		dist2 = make([]float32, n)
	}
	if len(nearest) != n {
		nearest = make([]int32, n)
	}
	inf := math.Inf(1)
	// Pass 1, columns: distance to the nearest set cell in the same column,
	// kept as the row index of that cell (colRow, -1 when none).
	colRow := make([]int32, n)
	for x := 0; x < w; x++ {
		last := int32(-1)
		for y := 0; y < h; y++ {
			i := y*w + x
			if mask[i] {
				last = int32(y)
			}
			colRow[i] = last
		}
		last = -1
		for y := h - 1; y >= 0; y-- {
			i := y*w + x
			if mask[i] {
				last = int32(y)
			}
			if last >= 0 {
				if c := colRow[i]; c < 0 || int(last)-y < y-int(c) {
					colRow[i] = last
				}
			}
		}
	}
	// Pass 2, rows: lower envelope of the parabolas (x-q)^2 + f(q) where f
	// is the column distance; the winning parabola names the nearest column.
	f := make([]float64, w)
	v := make([]int, w)
	z := make([]float64, w+1)
	for y := 0; y < h; y++ {
		row := y * w
		for x := 0; x < w; x++ {
			f[x] = inf
			if c := colRow[row+x]; c >= 0 {
				if d := float64(int(c) - y); d*d <= reach2 {
					f[x] = d * d
				}
			}
		}
		k := -1
		for q := 0; q < w; q++ {
			if math.IsInf(f[q], 1) {
				continue
			}
			if k < 0 {
				k = 0
				v[0] = q
				z[0] = math.Inf(-1)
				z[1] = inf
				continue
			}
			// z[0] is -Inf, so the loop always stops at k == 0 at the latest.
			var s float64
			for {
				p := v[k]
				s = ((f[q] + float64(q*q)) - (f[p] + float64(p*p))) / float64(2*q-2*p)
				if s <= z[k] {
					k--
					continue
				}
				break
			}
			k++
			v[k] = q
			z[k] = s
			z[k+1] = inf
		}
		if k < 0 {
			for x := 0; x < w; x++ {
				dist2[row+x] = float32(inf)
				nearest[row+x] = -1
			}
			continue
		}
		j := 0
		for x := 0; x < w; x++ {
			for z[j+1] < float64(x) {
				j++
			}
			q := v[j]
			dx := float64(x - q)
			dist2[row+x] = float32(dx*dx + f[q])
			nearest[row+x] = int32(int(colRow[row+q])*w + q)
		}
	}
	return dist2, nearest
}
