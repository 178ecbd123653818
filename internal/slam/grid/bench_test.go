package grid

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
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

// BenchmarkIntegrateScan integrates one 360-beam scan (ranges 2 to 8 m, a
// few no-returns) into a 20x15 m grid at 0.05 m: the ray walk behind every
// submap the services and the world generator build.
func BenchmarkIntegrateScan(b *testing.B) {
	g, err := New(Meta{Resolution: 0.05, Width: 400, Height: 300})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	scan := slam.LaserScan{AngleMin: -math.Pi, AngleIncrement: 2 * math.Pi / 360, RangeMin: 0.1, RangeMax: 10, Ranges: make([]float32, 360)}
	for i := range scan.Ranges {
		scan.Ranges[i] = float32(2 + 6*r.Float64())
		if i%50 == 0 {
			scan.Ranges[i] = float32(math.Inf(1))
		}
	}
	var in Inserter
	sensor := slam.Pose2D{X: 10, Y: 7.5, Theta: 0.3}
	for b.Loop() {
		if _, err := in.Integrate(g, sensor, scan); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDistanceTransform is the distance transform of a 400x300 mask
// (the office map), as localization runs it for every reference it builds:
// 2 % of the cells set at random, or walls (rooms of 4 m at 5 cm with door
// gaps); exact, and within the reach a fine reference reads at 5 cm (36
// cells²: the first ICP gate).
//
//	go test -run '^$' -bench DistanceTransform -benchmem ./internal/slam/grid
func BenchmarkDistanceTransform(b *testing.B) {
	const w, h = 400, 300
	scattered := make([]bool, w*h)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range scattered {
		scattered[i] = r.Float64() < 0.02
	}
	walls := make([]bool, w*h)
	for y := range h {
		for x := range w {
			door := (x%80 > 30 && x%80 < 50) || (y%80 > 30 && y%80 < 50)
			walls[y*w+x] = (x%80 == 0 || y%80 == 0) && !door
		}
	}
	for _, m := range []struct {
		name string
		mask []bool
	}{{"scattered", scattered}, {"walls", walls}} {
		for _, reach := range []struct {
			name   string
			reach2 float64
		}{{"exact", math.Inf(1)}, {"within36", 36}} {
			b.Run(m.name+"/"+reach.name, func(b *testing.B) {
				dist2, nearest := make([]float32, w*h), make([]int32, w*h)
				b.ReportAllocs()
				for b.Loop() {
					dist2, nearest = DistanceTransformWithin(w, h, m.mask, reach.reach2, dist2, nearest)
				}
			})
		}
	}
}
