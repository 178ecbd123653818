package slamio_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// realdata is ../shared/realdata relative to the project root (two levels
// up from this package): the data is read in place, never copied.
var realdata = filepath.Join("..", "..", "..", "shared", "realdata")

func loadMission(t *testing.T, name string) *orchestratorv1.StartMissionRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realdata, "missions", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var req orchestratorv1.StartMissionRequest
	if err := protojson.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

func TestCarmenRealLogsReadingCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file           string
		readings, beam int
		inc            float64
	}{
		{"intel-corrected.log.gz", 910, 180, math.Pi / 180},
		{"freiburg-079-corrected.log.gz", 4791, 360, math.Pi / 360},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			log, err := slamio.OpenCarmen(filepath.Join(realdata, "carmen", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(log.Readings) != tc.readings {
				t.Fatalf("%d readings, want %d", len(log.Readings), tc.readings)
			}
			for _, r := range log.Readings {
				if len(r.Ranges) != tc.beam || r.AngleMin != -math.Pi/2 || math.Abs(r.AngleIncrement-tc.inc) > 1e-15 {
					t.Fatalf("reading %d (line %d): %d beams from %g by %g", r.Index, r.Line, len(r.Ranges), r.AngleMin, r.AngleIncrement)
				}
			}
			if len(log.Odom) == 0 {
				t.Fatal("no ODOM lines")
			}
		})
	}
}

// poseTol is how far a pose may differ from the mission JSON, which rounds
// poses to 6 significant digits: 1e-5 m (and rad) is far below a cell.
const poseTol = 2e-5

func closePose(a, b *typesv1.Pose2D) bool {
	return math.Abs(a.GetX()-b.GetX()) <= poseTol && math.Abs(a.GetY()-b.GetY()) <= poseTol &&
		math.Abs(slam.AngleDiff(a.GetTheta(), b.GetTheta())) <= poseTol
}

// diffRequests returns the first difference between two requests' agents
// and maps: ids, anchors, guesses and poses within poseTol, every scan's
// header and every range and every submap cell exactly.
func diffRequests(got, want *orchestratorv1.StartMissionRequest) error {
	gm, wm := got.GetMap(), want.GetMap()
	for _, p := range [][2]float64{{gm.GetOriginX(), wm.GetOriginX()}, {gm.GetOriginY(), wm.GetOriginY()}, {gm.GetWidthM(), wm.GetWidthM()}, {gm.GetHeightM(), wm.GetHeightM()}, {gm.GetResolution(), wm.GetResolution()}} {
		if math.Abs(p[0]-p[1]) > 1e-9 {
			return fmt.Errorf("map %v, want %v", gm, wm)
		}
	}
	if len(got.GetAgents()) != len(want.GetAgents()) {
		return fmt.Errorf("%d agents, want %d", len(got.GetAgents()), len(want.GetAgents()))
	}
	for i, g := range got.GetAgents() {
		w := want.GetAgents()[i]
		if g.GetAgentId() != w.GetAgentId() || g.GetAnchor() != w.GetAnchor() {
			return fmt.Errorf("agent %d: %s anchor %v, want %s anchor %v", i, g.GetAgentId(), g.GetAnchor(), w.GetAgentId(), w.GetAnchor())
		}
		if (g.GetInitialGuess() == nil) != (w.GetInitialGuess() == nil) || !closePose(g.GetInitialGuess(), w.GetInitialGuess()) {
			return fmt.Errorf("agent %s: guess %v, want %v", g.GetAgentId(), g.GetInitialGuess(), w.GetInitialGuess())
		}
		if len(g.GetScans()) != len(w.GetScans()) {
			return fmt.Errorf("agent %s: %d scans, want %d", g.GetAgentId(), len(g.GetScans()), len(w.GetScans()))
		}
		for j, gs := range g.GetScans() {
			ws := w.GetScans()[j]
			if !closePose(gs.GetOdomPose(), ws.GetOdomPose()) {
				return fmt.Errorf("agent %s scan %d: odom pose %v, want %v", g.GetAgentId(), j, gs.GetOdomPose(), ws.GetOdomPose())
			}
			a, b := gs.GetScan(), ws.GetScan()
			if a.GetAngleMin() != b.GetAngleMin() || a.GetAngleIncrement() != b.GetAngleIncrement() || a.GetRangeMin() != b.GetRangeMin() || a.GetRangeMax() != b.GetRangeMax() || len(a.GetRanges()) != len(b.GetRanges()) {
				return fmt.Errorf("agent %s scan %d: header %v %v %v %v (%d beams), want %v %v %v %v (%d)", g.GetAgentId(), j,
					a.GetAngleMin(), a.GetAngleIncrement(), a.GetRangeMin(), a.GetRangeMax(), len(a.GetRanges()),
					b.GetAngleMin(), b.GetAngleIncrement(), b.GetRangeMin(), b.GetRangeMax(), len(b.GetRanges()))
			}
			for k, r := range a.GetRanges() {
				if r != b.GetRanges()[k] {
					return fmt.Errorf("agent %s scan %d beam %d: %v, want %v", g.GetAgentId(), j, k, r, b.GetRanges()[k])
				}
			}
		}
		if (g.GetSubmap() == nil) != (w.GetSubmap() == nil) {
			return fmt.Errorf("agent %s: submap presence differs", g.GetAgentId())
		}
		if w.GetSubmap() != nil {
			a, b := g.GetSubmap().GetMeta(), w.GetSubmap().GetMeta()
			if a.GetWidth() != b.GetWidth() || a.GetHeight() != b.GetHeight() || math.Abs(a.GetResolution()-b.GetResolution()) > 1e-12 || !closePose(a.GetOrigin(), b.GetOrigin()) {
				return fmt.Errorf("agent %s: submap meta %v, want %v", g.GetAgentId(), a, b)
			}
			if string(g.GetSubmap().GetData()) != string(w.GetSubmap().GetData()) {
				return fmt.Errorf("agent %s: submap cells differ", g.GetAgentId())
			}
		}
	}
	return nil
}

// jsonGuesses returns the mission's non-anchor guesses, for the missions
// whose guesses are perturbed truths no log can reproduce.
func jsonGuesses(req *orchestratorv1.StartMissionRequest) map[string]slam.Pose2D {
	out := map[string]slam.Pose2D{}
	for _, a := range req.GetAgents() {
		if !a.GetAnchor() {
			out[a.GetAgentId()] = slamproto.PoseFromProto(a.GetInitialGuess())
		}
	}
	return out
}

// TestCarmenImportMatchesMissionJSON rebuilds every CARMEN mission of
// ../shared/realdata/missions from its log with the options its
// .expected.json states (segments, pose source, range limits), and checks
// the request agent by agent against the provided JSON: every range
// exactly, every pose within poseTol. The map bounds are the JSON's (the
// converter's own margin rule is not documented); guesses the log cannot
// give (random perturbations) are passed as --guess would pass them.
func TestCarmenImportMatchesMissionJSON(t *testing.T) {
	t.Parallel()
	intel, err := slamio.OpenCarmen(filepath.Join(realdata, "carmen", "intel-corrected.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	fr079, err := slamio.OpenCarmen(filepath.Join(realdata, "carmen", "freiburg-079-corrected.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	intelSegs := "6:35,189:218,90:119"
	for _, tc := range []struct {
		mission       string
		log           *slamio.Log
		segments      string
		poses         slamio.PoseSource
		rangeMax      float64
		perturbedJSON bool // non-anchor guesses are random perturbations: take them from the JSON
	}{
		{"intel-local-3", intel, intelSegs, slamio.PosesLaser, 20, true},
		{"intel-odomline-3", intel, intelSegs, slamio.PosesOdom, 20, false},
		{"intel-rangemax-3", intel, intelSegs, slamio.PosesLaser, 81.83, false},
		{"fr079-local-4", fr079, "124:373,1457:1706,2170:2419,2852:3101", slamio.PosesLaser, 20, true},
	} {
		t.Run(tc.mission, func(t *testing.T) {
			t.Parallel()
			want := loadMission(t, tc.mission)
			segs, err := slamio.ParseSegments(tc.segments)
			if err != nil {
				t.Fatal(err)
			}
			agents, err := slamio.CarmenAgents(tc.log, slamio.CarmenOptions{Segments: segs, Poses: tc.poses, RangeMin: 0.1, RangeMax: tc.rangeMax})
			if err != nil {
				t.Fatal(err)
			}
			var guesses map[string]slam.Pose2D
			if tc.perturbedJSON {
				guesses = jsonGuesses(want)
			}
			got, err := slamio.Request(want.GetMissionId(), agents, guesses, want.GetMap(), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := diffRequests(got, want); err != nil {
				t.Fatal(err)
			}
			// MapFor's bounds lie within a metre of the JSON's; with guesses
			// at the truth (intel-rangemax-3) they are the JSON's exactly:
			// the converter sized maps the same way.
			own, err := slamio.MapFor(agents, 0.05, slamio.DefaultMapMargin)
			if err != nil {
				t.Fatal(err)
			}
			w := want.GetMap()
			for _, d := range []float64{own.GetOriginX() - w.GetOriginX(), own.GetOriginY() - w.GetOriginY(),
				own.GetOriginX() + own.GetWidthM() - w.GetOriginX() - w.GetWidthM(), own.GetOriginY() + own.GetHeightM() - w.GetOriginY() - w.GetHeightM()} {
				if math.Abs(d) > 1 {
					t.Errorf("MapFor %v: an edge %.2f m from the JSON's %v", own, d, w)
				}
			}
			if tc.mission == "intel-rangemax-3" && (own.GetOriginX() != w.GetOriginX() || own.GetOriginY() != w.GetOriginY() || own.GetWidthM() != w.GetWidthM() || own.GetHeightM() != w.GetHeightM()) {
				t.Errorf("MapFor %v, want the JSON's %v", own, w)
			}
		})
	}
}
