package render

import (
	"bytes"
	"errors"
	"image/color"
	"image/png"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

func TestPNGColoursAndOrientation(t *testing.T) {
	t.Parallel()
	g, _ := grid.New(grid.Meta{Resolution: 0.1, Width: 3, Height: 2})
	c := g.LogOdds()
	c[0] = grid.Clamp  // (0,0): bottom-left in the map, so bottom-left in the image
	c[1] = -grid.Clamp // (1,0)
	// (2,0) and row 1 unknown
	b, err := PNG(g)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 3 || img.Bounds().Dy() != 2 {
		t.Fatalf("image %v, want 3x2", img.Bounds())
	}
	want := map[[2]int]color.NRGBA{{0, 1}: Occ, {1, 1}: Free, {2, 1}: Unknown, {0, 0}: Unknown}
	for p, w := range want {
		if got := color.NRGBAModel.Convert(img.At(p[0], p[1])).(color.NRGBA); got != w {
			t.Errorf("pixel %v = %v, want %v", p, got, w)
		}
	}
}

func TestAgentsAndLayout(t *testing.T) {
	t.Parallel()
	m := grid.Meta{Resolution: 0.1, Width: 4, Height: 4}
	base, _ := grid.New(m)
	layer, _ := grid.New(m)
	layer.LogOdds()[5] = 2 // (1,1)
	img, err := Agents(base, []*grid.Grid{layer})
	if err != nil {
		t.Fatal(err)
	}
	if got := img.NRGBAAt(1, 2); got != Palette[0] {
		t.Errorf("agent 0's wall drawn as %v, want %v", got, Palette[0])
	}
	other, _ := grid.New(grid.Meta{Resolution: 0.2, Width: 4, Height: 4})
	if _, err := Agents(base, []*grid.Grid{other}); !errors.Is(err, slam.ErrInvalidArgument) {
		t.Errorf("mismatched layer: %v", err)
	}
	sb, err := SideBySide(img, Scale(img, 3))
	if err != nil || sb.Bounds().Dx() != 8+4+8+12+8 || sb.Bounds().Dy() != 12+16 {
		t.Errorf("SideBySide = %v, %v", sb.Bounds(), err)
	}
	if _, err := SideBySide(); err == nil {
		t.Error("SideBySide of nothing succeeded")
	}
}
