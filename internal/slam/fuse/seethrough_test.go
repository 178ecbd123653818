package fuse_test

import (
	"errors"
	"math"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// wall is a segment of a scene the glass tests' lidar sees; a glass wall
// returns a beam only within glassReturn of its normal, as a pane does.
type wall struct {
	x0, y0, x1, y1 float64
	glass          bool
}

const (
	glassReturn = 15 * math.Pi / 180
	lidarRange  = 8.0
)

// cast returns the range of a beam from (x, y) at angle a in walls: the
// nearest wall it meets, glass only where the beam meets it within
// glassReturn of its normal; +Inf (no return) beyond lidarRange.
func cast(walls []wall, x, y, a float64) float32 {
	dx, dy := math.Cos(a), math.Sin(a)
	best := math.Inf(1)
	for _, w := range walls {
		ex, ey := w.x1-w.x0, w.y1-w.y0
		den := dx*ey - dy*ex
		if den == 0 {
			continue
		}
		t := ((w.x0-x)*ey - (w.y0-y)*ex) / den // along the beam
		u := ((w.x0-x)*dy - (w.y0-y)*dx) / den // along the wall
		if t <= 0 || u < 0 || u > 1 || t >= best {
			continue
		}
		if w.glass {
			// |cos| of the angle between the beam and the wall's normal.
			if c := math.Abs(dx*ey-dy*ex) / math.Hypot(ex, ey); c < math.Cos(glassReturn) {
				continue
			}
		}
		best = t
	}
	if best > lidarRange {
		return float32(math.Inf(1))
	}
	return float32(best)
}

// sensor is a lidar's heading and field of view (radians), 1° per beam.
type sensor struct{ heading, fov float64 }

var (
	allRound = sensor{0, 2 * math.Pi}
	facingUp = sensor{math.Pi / 2, math.Pi / 3}
)

// drive scans walls with s from each position and returns the submap, in
// the map frame, and the scans.
func drive(t testing.TB, meta grid.Meta, walls []wall, s sensor, at [][2]float64) fuse.Input {
	t.Helper()
	g, err := grid.New(meta)
	if err != nil {
		t.Fatal(err)
	}
	in := fuse.Input{Submap: g}
	var ins grid.Inserter
	for _, p := range at {
		n := int(math.Round(s.fov * 180 / math.Pi))
		scan := slam.LaserScan{AngleMin: -s.fov / 2, AngleIncrement: s.fov / float64(n), RangeMin: 0.05, RangeMax: lidarRange, Ranges: make([]float32, n)}
		for i := range scan.Ranges {
			scan.Ranges[i] = cast(walls, p[0], p[1], s.heading+scan.BeamAngle(i))
		}
		pose := slam.Pose2D{X: p[0], Y: p[1], Theta: s.heading}
		if _, err := ins.Integrate(g, pose, scan); err != nil {
			t.Fatal(err)
		}
		in.Scans = append(in.Scans, slam.PosedScan{Pose: pose, Scan: scan})
	}
	return in
}

// along returns n positions from (x0, y) to (x1, y).
func along(x0, x1, y float64, n int) [][2]float64 {
	out := make([][2]float64, n)
	for i := range out {
		out[i] = [2]float64{x0 + (x1-x0)*float64(i)/float64(n-1), y}
	}
	return out
}

// TestGlassSeenThroughAtASlantIsForgiven: a 12×4 m room halved by a
// partition along y = 2. Agent A drives under it 1 m away with its lidar
// facing it (±30°) and sees it head-on; agent B, in the other half 4–7 m
// along, only at a slant. When
// the partition is glass, A's head-on beams hit it and its slanted ones
// pass, and B's all pass: the grids contradict each other along the
// partition, the default gates refuse B, and the see-through test forgives
// the pane. When the partition was a solid wall for A and gone for B (a
// moved wall, which A could not see through) nothing is forgiven; when it
// was gone for B, which looked through the gap head-on (an opening), the
// cells B crossed head-on are not, and B is still refused.
func TestGlassSeenThroughAtASlantIsForgiven(t *testing.T) {
	meta, err := grid.MetaForBounds(-0.5, -0.5, 13, 5, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	room := []wall{{0, 0, 12, 0, false}, {12, 0, 12, 4, false}, {12, 4, 0, 4, false}, {0, 4, 0, 0, false}}
	pane := func(glass bool) []wall { return append(room[:4:4], wall{0, 2, 12, 2, glass}) }
	underA := along(4, 8, 1, 17)
	slantB, aboveB := along(0.5, 1.45, 3.5, 20), along(5, 7, 3.5, 20)
	cases := []struct {
		name      string
		a, b      []wall
		bAt       [][2]float64
		opts      fuse.Options
		wantMerge bool
		// someForgiven: a refusal may still forgive the cells B saw
		// through only at a slant.
		someForgiven bool
	}{
		{"glass", pane(true), pane(true), slantB, fuse.Options{}, true, true},
		{"glass, test off", pane(true), pane(true), slantB, fuse.Options{SeeThroughAngle: -1}, false, false},
		{"solid wall moved", pane(false), room, slantB, fuse.Options{}, false, false},
		{"glass, then an opening seen head-on", pane(true), room, aboveB, fuse.Options{}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := drive(t, meta, c.a, facingUp, underA), drive(t, meta, c.b, allRound, c.bAt)
			a.Agent, b.Agent = 0, 1
			base, _ := grid.New(meta)
			m := fuse.NewMerger(base, c.opts)
			if _, err := m.Add(a); err != nil {
				t.Fatal(err)
			}
			ar, err := m.Add(b)
			t.Logf("share %.4f, consistency %.4f, %d contradicted, %d forgiven: %v", ar.ChangedShare, ar.Consistency, ar.ContradictedCells, ar.SeeThroughCells, err)
			if !ar.Judged {
				t.Fatal("B was not judged: the scene gives too little overlap")
			}
			switch {
			case c.wantMerge && (err != nil || ar.SeeThroughCells == 0):
				t.Fatalf("glass seen through at a slant: got %v with %d cells forgiven, want a merge that forgives the pane", err, ar.SeeThroughCells)
			case !c.wantMerge && !errors.Is(err, slam.ErrInconsistent):
				t.Fatalf("got %v, want ErrInconsistent", err)
			case !c.someForgiven && ar.SeeThroughCells != 0:
				t.Fatalf("%d cells forgiven, want none", ar.SeeThroughCells)
			}
		})
	}
}

// BenchmarkSeeThrough: the glass case of TestGlassSeenThroughAtASlantIsForgiven,
// whose second agent fails the gates and gets the see-through test, with
// the test and without (the merge a passing input pays for).
//
//	go test -run '^$' -bench SeeThrough -benchmem ./internal/slam/fuse
func BenchmarkSeeThrough(b *testing.B) {
	meta, err := grid.MetaForBounds(-0.5, -0.5, 13, 5, 0.05)
	if err != nil {
		b.Fatal(err)
	}
	walls := []wall{{0, 0, 12, 0, false}, {12, 0, 12, 4, false}, {12, 4, 0, 4, false}, {0, 4, 0, 0, false}, {0, 2, 12, 2, true}}
	a, c := drive(b, meta, walls, facingUp, along(4, 8, 1, 17)), drive(b, meta, walls, allRound, along(0.5, 1.45, 3.5, 20))
	c.Agent = 1
	base, _ := grid.New(meta)
	for _, bc := range []struct {
		name string
		opts fuse.Options
	}{{"test", fuse.Options{}}, {"off", fuse.Options{SeeThroughAngle: -1}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				m := fuse.NewMerger(base, bc.opts)
				if _, err := m.Add(a); err != nil {
					b.Fatal(err)
				}
				m.Add(c)
			}
		})
	}
}

// TestGlassIsForgivenAfterARefusal: a refused input does not end the
// see-through test for the inputs after it. A merge that goes on after a
// refusal (the merge service's survey of what gates accept every agent)
// must judge them as the merge with those gates would: agent B of the
// glass case, added after an agent the gates refuse (the partition gone,
// looked through head-on), is forgiven the pane as it is without that
// agent.
func TestGlassIsForgivenAfterARefusal(t *testing.T) {
	meta, err := grid.MetaForBounds(-0.5, -0.5, 13, 5, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	room := []wall{{0, 0, 12, 0, false}, {12, 0, 12, 4, false}, {12, 4, 0, 4, false}, {0, 4, 0, 0, false}}
	glass := append(room[:4:4], wall{0, 2, 12, 2, true})
	a := drive(t, meta, glass, facingUp, along(4, 8, 1, 17))
	opening := drive(t, meta, room, allRound, along(5, 7, 3.5, 20))
	b := drive(t, meta, glass, allRound, along(0.5, 1.45, 3.5, 20))
	a.Agent, opening.Agent, b.Agent = 0, 1, 2
	base, _ := grid.New(meta)
	m := fuse.NewMerger(base, fuse.Options{})
	if _, err := m.Add(a); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(opening); !errors.Is(err, slam.ErrInconsistent) {
		t.Fatalf("the opening: got %v, want ErrInconsistent", err)
	}
	ar, err := m.Add(b)
	t.Logf("B after the refusal: share %.4f, consistency %.4f, %d forgiven: %v", ar.ChangedShare, ar.Consistency, ar.SeeThroughCells, err)
	if ar.SeeThroughCells == 0 {
		t.Fatalf("B after a refusal: no cell forgiven, want the pane (%v)", err)
	}
}
