package console_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/console"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/slam/render"
)

// A 40×20 map at 0.1 m: agent-a mapped the west half (x < 20), agent-b the
// east half, each with a wall (x = 5 and x = 30) in free floor.
const (
	mapW, mapH = 40, 20
	mapScale   = 640 / mapW // the console scales the image to 640 px
)

// fakeMaps serves one map; its contributor layer only when asked, as the
// mapping service does. Without layer it serves a version merged before
// layers were stored.
type fakeMaps struct {
	layer *typesv1.ContributorLayer
	// tooLarge refuses a reply with the layer, as the server's send limit
	// refuses a reply over 16 MiB.
	tooLarge bool
	// tooLargeEver refuses every GetMap reply: the map alone is over the
	// limit, and only StreamMap serves it.
	tooLargeEver bool
}

// StreamMap serves GetMap's map without layer in chunks of 100 cells.
func (f *fakeMaps) StreamMap(ctx context.Context, in *mappingv1.StreamMapRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[mappingv1.StreamMapResponse], error) {
	big := f.tooLargeEver
	f.tooLargeEver = false
	m, err := f.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: in.GetMissionId(), Version: in.GetVersion()})
	f.tooLargeEver = big
	if err != nil {
		return nil, err
	}
	cells := m.GetGrid().GetData()
	var msgs []*mappingv1.StreamMapResponse
	for len(cells) > 0 {
		n := min(100, len(cells))
		msgs = append(msgs, &mappingv1.StreamMapResponse{Cells: cells[:n]})
		cells = cells[n:]
	}
	h := msgs[0]
	h.MapId, h.Version, h.CurrentVersion, h.Meta, h.TotalCells = m.GetMapId(), m.GetVersion(), m.GetCurrentVersion(), m.GetGrid().GetMeta(), uint64(len(m.GetGrid().GetData()))
	return &fakeStream{msgs: msgs}, nil
}

// fakeStream replays msgs, then io.EOF.
type fakeStream struct {
	grpc.ClientStream
	msgs []*mappingv1.StreamMapResponse
}

func (s *fakeStream) Recv() (*mappingv1.StreamMapResponse, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func (f *fakeMaps) GetMap(_ context.Context, in *mappingv1.GetMapRequest, _ ...grpc.CallOption) (*mappingv1.GetMapResponse, error) {
	if in.GetMissionId() != "m-map" {
		return nil, status.Errorf(codes.NotFound, "mission %s has no map", in.GetMissionId())
	}
	if f.tooLargeEver || (f.tooLarge && in.GetIncludeContributors()) {
		return nil, status.Error(codes.ResourceExhausted, "reply too large")
	}
	cells := make([]byte, mapW*mapH) // 0: free
	for y := range mapH {
		cells[y*mapW+5], cells[y*mapW+30] = 100, 100
	}
	resp := &mappingv1.GetMapResponse{MapId: "map-1", Version: 2, CurrentVersion: 2, Grid: &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.1, Width: mapW, Height: mapH, Origin: &typesv1.Pose2D{}},
		Data: cells,
	}}
	if in.GetIncludeContributors() {
		resp.Contributors = f.layer
	}
	return resp, nil
}

// twoAgentLayer attributes the west half to agent-a and the east half to
// agent-b, listing agent-b first so that the console must colour by id,
// not by index.
func twoAgentLayer() *typesv1.ContributorLayer {
	cells := make([]byte, mapW*mapH)
	for y := range mapH {
		for x := range mapW {
			cells[y*mapW+x] = 2 // agent-a
			if x >= 20 {
				cells[y*mapW+x] = 1 // agent-b
			}
		}
	}
	return &typesv1.ContributorLayer{AgentIds: []string{"agent-b", "agent-a"}, Cells: cells}
}

// mapConsole serves a console whose mission m-map is completed with poses
// for agent-a (palette colour 0) and agent-b (colour 1), near the bottom
// edge, away from the cells the tests look at.
func mapConsole(t *testing.T, maps console.Maps) *httptest.Server {
	t.Helper()
	f := &fakeOrch{}
	m := mission("m-map", orchestratorv1.MissionState_MISSION_STATE_COMPLETED)
	m.MapId, m.MapVersion, m.Agents = "map-1", 2, 2
	m.Poses = []*typesv1.AgentPose{
		{AgentId: "agent-a", MapFromAgent: &typesv1.Pose2D{X: 0.25, Y: 0.15}},
		{AgentId: "agent-b", MapFromAgent: &typesv1.Pose2D{X: 3.75, Y: 0.15}},
	}
	f.add(m)
	c, err := console.New(console.Deps{Orchestrator: f, Redis: redistest.Start(t).Client(t), Maps: maps})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

func getImage(t *testing.T, u string) image.Image {
	t.Helper()
	code, body := get(t, u)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d:\n%s", u, code, body)
	}
	img, err := png.Decode(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != mapW*mapScale || b.Dy() != mapH*mapScale {
		t.Fatalf("map image is %v, want %d×%d", b, mapW*mapScale, mapH*mapScale)
	}
	return img
}

// cellPixel is the centre pixel of map cell (x, y) in the north-up image.
func cellPixel(img image.Image, x, y int) color.NRGBA {
	return color.NRGBAModel.Convert(img.At(x*mapScale+mapScale/2, (mapH-1-y)*mapScale+mapScale/2)).(color.NRGBA)
}

// towards is the cosine between p - base and c - base: 1 when p lies on
// the way from base (the cell's grey level) to colour c.
func towards(p, base, c color.NRGBA) float64 {
	d := [3]float64{float64(p.R) - float64(base.R), float64(p.G) - float64(base.G), float64(p.B) - float64(base.B)}
	e := [3]float64{float64(c.R) - float64(base.R), float64(c.G) - float64(base.G), float64(c.B) - float64(base.B)}
	dot, nd, ne := 0.0, 0.0, 0.0
	for i := range d {
		dot, nd, ne = dot+d[i]*e[i], nd+d[i]*d[i], ne+e[i]*e[i]
	}
	if nd == 0 || ne == 0 {
		return 0
	}
	return dot / math.Sqrt(nd*ne)
}

// TestMapImageTintsEachAgentsCells: every sampled cell of the west half,
// floor and wall, is tinted towards agent-a's colour (the first pose's, as
// in the poses table) and every one of the east half towards agent-b's;
// the mission page's legend names both agents in those colours.
func TestMapImageTintsEachAgentsCells(t *testing.T) {
	srv := mapConsole(t, &fakeMaps{layer: twoAgentLayer()})
	img := getImage(t, srv.URL+"/missions/m-map/map.png")
	colA, colB := render.Palette[0], render.Palette[1]
	white, black := render.Free, render.Occ
	for _, tc := range []struct {
		name   string
		x, y   int
		base   color.NRGBA
		of     color.NRGBA
		not    color.NRGBA
		region string
	}{
		{"agent-a floor", 12, 12, white, colA, colB, "west"},
		{"agent-a floor", 2, 18, white, colA, colB, "west"},
		{"agent-a wall", 5, 12, black, colA, colB, "west"},
		{"agent-b floor", 25, 12, white, colB, colA, "east"},
		{"agent-b floor", 38, 18, white, colB, colA, "east"},
		{"agent-b wall", 30, 12, black, colB, colA, "east"},
	} {
		p := cellPixel(img, tc.x, tc.y)
		if got, other := towards(p, tc.base, tc.of), towards(p, tc.base, tc.not); got < 0.99 || other > got {
			t.Errorf("%s at cell (%d, %d) in the %s: pixel %v points %.3f towards its agent's colour %v, %.3f towards the other's %v",
				tc.name, tc.x, tc.y, tc.region, p, got, tc.of, other, tc.not)
		}
	}
	// The wall is the agent's colour itself; the floor a pale wash of it.
	if p := cellPixel(img, 5, 12); p != colA {
		t.Errorf("agent-a's wall pixel %v, want its colour %v", p, colA)
	}
	if p := cellPixel(img, 12, 12); int(p.R)+int(p.G)+int(p.B) < 3*160 {
		t.Errorf("agent-a's floor pixel %v is not pale", p)
	}

	code, body := get(t, srv.URL+"/missions/m-map")
	if code != http.StatusOK {
		t.Fatalf("mission page = %d", code)
	}
	i := strings.Index(body, `<ul class="legend">`)
	if i < 0 {
		t.Fatalf("the mission page has no map legend:\n%s", body)
	}
	legend := body[i:]
	legend = legend[:strings.Index(legend, "</ul>")]
	for _, want := range []string{"background:#e6194b\"></span>agent-a", "background:#3cb44b\"></span>agent-b", "unknown"} {
		if !strings.Contains(legend, want) {
			t.Errorf("legend lacks %q:\n%s", want, legend)
		}
	}
}

// TestMapImageWithoutLayer: a version without a contributor layer, or one
// too large to fetch with it, is drawn in grey levels (no cell tinted), and
// a layer that does not fit the map is 502, never a misdrawn image or a
// panic.
func TestMapImageWithoutLayer(t *testing.T) {
	for name, maps := range map[string]*fakeMaps{"no layer": {}, "too large with it": {layer: twoAgentLayer(), tooLarge: true},
		"too large even without it": {layer: twoAgentLayer(), tooLargeEver: true}} {
		srv := mapConsole(t, maps)
		img := getImage(t, srv.URL+"/missions/m-map/map.png")
		for _, c := range [][2]int{{12, 12}, {5, 12}, {25, 12}, {30, 12}} {
			if p := cellPixel(img, c[0], c[1]); p.R != p.G || p.G != p.B {
				t.Errorf("%s: cell %v is tinted (%v)", name, c, p)
			}
		}
	}

	short := twoAgentLayer()
	short.Cells = short.Cells[:10]
	bad := twoAgentLayer()
	bad.Cells[0] = 3
	for name, layer := range map[string]*typesv1.ContributorLayer{"short": short, "bad index": bad} {
		srv := mapConsole(t, &fakeMaps{layer: layer})
		if code, body := get(t, srv.URL+"/missions/m-map/map.png"); code != http.StatusBadGateway || bytes.HasPrefix([]byte(body), []byte("\x89PNG")) {
			t.Errorf("%s layer: GET map.png = %d, want 502 and no image", name, code)
		}
	}
}
