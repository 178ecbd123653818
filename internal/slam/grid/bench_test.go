package grid

import (
	"math/rand/v2"
	"testing"
)

// benchGrid is a 400x300 grid (20x15 m at 0.05 m, the office scenario's map)
// whose cells are a mix of unknown, saturated and in-between log-odds, like
// a map after a few scans.
func benchGrid(b *testing.B) *Grid {
	g, err := New(Meta{Resolution: 0.05, Width: 400, Height: 300})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range g.LogOdds() {
		switch r.IntN(4) {
		case 0: // unknown
		case 1:
			g.LogOdds()[i] = -Clamp
		default:
			g.LogOdds()[i] = float32(r.Float64()*2*Clamp - Clamp)
		}
	}
	return g
}

// BenchmarkToInt8 exports a grid to ROS cells, as every step does to answer.
//
//	go test -run '^$' -bench 'Int8$' -benchmem ./internal/slam/grid
func BenchmarkToInt8(b *testing.B) {
	g := benchGrid(b)
	b.SetBytes(int64(len(g.LogOdds())))
	for b.Loop() {
		_ = g.ToInt8()
	}
}

// BenchmarkFromInt8 imports ROS cells, as every step does with its input.
func BenchmarkFromInt8(b *testing.B) {
	g := benchGrid(b)
	cells := g.ToInt8()
	b.SetBytes(int64(len(cells)))
	for b.Loop() {
		if _, err := FromInt8(g.Meta(), cells); err != nil {
			b.Fatal(err)
		}
	}
}
