package slamio_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// everyValue is a 17x6 grid holding every cell value -1..100 once (and a
// few more -1), with an origin off the cell lattice.
func everyValue() *typesv1.OccupancyGrid {
	data := make([]byte, 17*6)
	for i := range data {
		v := i - 1
		if v > 100 {
			v = -1
		}
		data[i] = byte(int8(v))
	}
	return &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 17, Height: 6, Origin: &typesv1.Pose2D{X: -11.75, Y: 3.0000001}},
		Data: data,
	}
}

// TestExportImportRoundTrip: a trinary export read back by map_server's
// rules gives every cell its TrinaryClass (and a second round trip changes
// nothing, byte for byte); a raw export gives every value back exactly.
// Meta (size, resolution, origin) survives exactly in both.
func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	og := everyValue()
	for _, mode := range []slamio.ExportMode{slamio.ExportTrinary, slamio.ExportRaw} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			base := filepath.Join(dir, "merged")
			if err := slamio.WriteROSMap(base, og, mode); err != nil {
				t.Fatal(err)
			}
			m, err := slamio.ReadROSMap(base+".yaml", slamio.ROSMapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if string(m.YAML.Mode) != string(mode) || m.YAML.OccupiedThresh != 0.65 || m.YAML.FreeThresh != 0.25 || m.YAML.Negate {
				t.Errorf("yaml %+v", m.YAML)
			}
			gm, wm := m.Grid.GetMeta(), og.GetMeta()
			if gm.GetWidth() != wm.GetWidth() || gm.GetHeight() != wm.GetHeight() || gm.GetResolution() != wm.GetResolution() ||
				gm.GetOrigin().GetX() != wm.GetOrigin().GetX() || gm.GetOrigin().GetY() != wm.GetOrigin().GetY() {
				t.Fatalf("meta %v, want %v", gm, wm)
			}
			for i, c := range og.GetData() {
				want := int8(c)
				if mode == slamio.ExportTrinary {
					want = slamio.TrinaryClass(want)
				}
				if got := int8(m.Grid.GetData()[i]); got != want {
					t.Fatalf("cell %d: %d exported %s reads back %d, want %d", i, int8(c), mode, got, want)
				}
			}
			again := filepath.Join(dir, "again")
			if err := slamio.WriteROSMap(again, m.Grid, mode); err != nil {
				t.Fatal(err)
			}
			for _, ext := range []string{".pgm", ".yaml"} {
				a, _ := os.ReadFile(base + ext)
				b, _ := os.ReadFile(again + ext)
				if ext == ".yaml" {
					b = []byte(strings.Replace(string(b), "again.pgm", "merged.pgm", 1))
				}
				if string(a) != string(b) {
					t.Errorf("second round trip changed %s", ext)
				}
			}
		})
	}
}

// TestExportFiles pins what a map_server loader sees: the YAML text and
// the pixels of free (254), occupied (0) and unknown (128: unknown under
// free_thresh 0.25, where map_saver's 205 would read back as free).
func TestExportFiles(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "merged")
	og := &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 3, Height: 2, Origin: &typesv1.Pose2D{X: -11.75, Y: -24.45}},
		Data: []byte{0, 100, 0xff, 40, 70, 20}, // bottom row first
	}
	if err := slamio.WriteROSMap(base, og, slamio.ExportTrinary); err != nil {
		t.Fatal(err)
	}
	yaml, _ := os.ReadFile(base + ".yaml")
	want := "image: merged.pgm\nmode: trinary\nresolution: 0.05\norigin: [-11.75, -24.45, 0]\nnegate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.25\n"
	if string(yaml) != want {
		t.Errorf("yaml:\n%s\nwant:\n%s", yaml, want)
	}
	raw, _ := os.ReadFile(base + ".pgm")
	img, err := slamio.DecodePGM(raw, "merged.pgm")
	if err != nil {
		t.Fatal(err)
	}
	// Image rows run top down: the grid's top row (40, 70, 20) first.
	if got := img.Pix; img.MaxVal != 255 || got[0] != 128 || got[1] != 0 || got[2] != 254 || got[3] != 254 || got[4] != 0 || got[5] != 128 {
		t.Errorf("pixels %v (maxval %d), want [128 0 254 254 0 128]", got, img.MaxVal)
	}
}

func TestTrinaryClass(t *testing.T) {
	t.Parallel()
	for v, want := range map[int8]int8{-1: -1, 0: 0, 25: 0, 26: -1, 50: -1, 64: -1, 65: 100, 100: 100, 101: -1, -128: -1} {
		if got := slamio.TrinaryClass(v); got != want {
			t.Errorf("TrinaryClass(%d) = %d, want %d", v, got, want)
		}
	}
}

// TestWillowSubmapsThroughROSFiles exports the three submaps of the
// willow-3 mission as map_server files, imports them back as slamctl
// start --ros-map does (with the JSON's guesses), and checks that the
// request equals the provided JSON, each submap cut to its known cells:
// every cell, every meta field.
func TestWillowSubmapsThroughROSFiles(t *testing.T) {
	t.Parallel()
	want := proto.CloneOf(loadMission(t, "willow-3"))
	dir := t.TempDir()
	var agents []*typesv1.Agent
	for _, a := range want.GetAgents() {
		base := filepath.Join(dir, a.GetAgentId())
		if err := slamio.WriteROSMap(base, a.GetSubmap(), slamio.ExportTrinary); err != nil {
			t.Fatal(err)
		}
		m, err := slamio.ReadROSMap(base+".yaml", slamio.ROSMapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		guess := slamproto.PoseFromProto(a.GetInitialGuess())
		agents = append(agents, slamio.ROSMapAgent(m, slamio.AgentIDFromPath(base+".yaml"), a.GetAnchor(), &guess))
	}
	got, err := slamio.Request(want.GetMissionId(), agents, nil, want.GetMap(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range want.GetAgents() {
		a.Submap = slamio.CropToKnown(a.GetSubmap())
	}
	if err := diffRequests(got, want); err != nil {
		t.Fatal(err)
	}
	own, err := slamio.MapFor(agents, 0.05, slamio.DefaultMapMargin)
	if err != nil {
		t.Fatal(err)
	}
	w := want.GetMap()
	for _, d := range []float64{own.GetOriginX() - w.GetOriginX(), own.GetOriginY() - w.GetOriginY(),
		own.GetOriginX() + own.GetWidthM() - w.GetOriginX() - w.GetWidthM(), own.GetOriginY() + own.GetHeightM() - w.GetOriginY() - w.GetHeightM()} {
		if d > 1 || d < -1 {
			t.Errorf("MapFor %v: an edge %.2f m from the JSON's %v", own, d, w)
		}
	}
}

// TestMapForGrowsByUnguessedAgents: an agent without a guess widens the map
// by its own extent, so wherever it turns out to overlap, it fits.
func TestMapForGrowsByUnguessedAgents(t *testing.T) {
	t.Parallel()
	sub := func(w, h uint32) *typesv1.OccupancyGrid {
		return &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 1, Width: w, Height: h, Origin: &typesv1.Pose2D{}}, Data: make([]byte, w*h)}
	}
	anchor := &typesv1.Agent{AgentId: "a", Anchor: true, Submap: sub(10, 4), InitialGuess: &typesv1.Pose2D{X: 1}}
	m, err := slamio.MapFor([]*typesv1.Agent{anchor}, 0.5, 1)
	if err != nil || m.GetOriginX() != 0 || m.GetOriginY() != -1 || m.GetWidthM() != 12 || m.GetHeightM() != 6 {
		t.Fatalf("anchor only: %v, %v; want (0, -1) 12 x 6", m, err)
	}
	other := &typesv1.Agent{AgentId: "b", Submap: sub(3, 4)} // diagonal 5 m
	m, err = slamio.MapFor([]*typesv1.Agent{anchor, other}, 0.5, 1)
	if err != nil || m.GetOriginX() != -5 || m.GetOriginY() != -6 || m.GetWidthM() != 22 || m.GetHeightM() != 16 {
		t.Fatalf("with an unguessed agent: %v, %v; want (-5, -6) 22 x 16", m, err)
	}
	if _, err := slamio.MapFor([]*typesv1.Agent{other}, 0.5, 1); err == nil {
		t.Error("a map from unguessed agents only was accepted")
	}
	// Each bad argument is named alone (found by a helper: "--resolution 0"
	// read "want > 0 and >= 0").
	if _, err := slamio.MapFor([]*typesv1.Agent{anchor}, 0, 1); err == nil || err.Error() != "map resolution 0 m: want more than 0" {
		t.Errorf("resolution 0: %v", err)
	}
	if _, err := slamio.MapFor([]*typesv1.Agent{anchor}, 0.5, -1); err == nil || err.Error() != "map margin -1 m: want 0 or more" {
		t.Errorf("margin -1: %v", err)
	}
	// Nor infinities, which made a mission.json of NaN and Inf bounds
	// (found by a helper).
	if _, err := slamio.MapFor([]*typesv1.Agent{anchor}, math.Inf(1), 1); err == nil || err.Error() != "map resolution +Inf m: want a finite number" {
		t.Errorf("resolution +Inf: %v", err)
	}
	if _, err := slamio.MapFor([]*typesv1.Agent{anchor}, 0.5, math.Inf(1)); err == nil || err.Error() != "map margin +Inf m: want a finite number" {
		t.Errorf("margin +Inf: %v", err)
	}
}

// TestRequestRefusesWhatTheServiceWould: a submap past the service's
// per-agent limit is refused naming the agent, before a request of tens
// of MB meets gRPC's message limit (found by a review: an 8000x8000 map
// failed as "received message larger than max").
func TestRequestRefusesWhatTheServiceWould(t *testing.T) {
	t.Parallel()
	big := &typesv1.Agent{AgentId: "hall", Anchor: true, InitialGuess: &typesv1.Pose2D{}, Submap: &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 8000, Height: 8000, Origin: &typesv1.Pose2D{}},
	}}
	_, err := slamio.Request("m", []*typesv1.Agent{big}, nil, nil, 0.05, 2)
	if err == nil || !strings.Contains(err.Error(), `agent "hall"`) || !strings.Contains(err.Error(), "8000x8000") {
		t.Fatalf("Request = %v, want an error naming agent hall and its 8000x8000 cells", err)
	}
	ok := &typesv1.Agent{AgentId: "room", Anchor: true, InitialGuess: &typesv1.Pose2D{}, Submap: &typesv1.OccupancyGrid{
		Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 2048, Height: 2048, Origin: &typesv1.Pose2D{}}, Data: make([]byte, 2048*2048),
	}}
	if _, err := slamio.Request("m", []*typesv1.Agent{ok}, nil, nil, 0.05, 2); err != nil {
		t.Fatalf("Request at the limit: %v", err)
	}
}
