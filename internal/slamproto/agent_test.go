package slamproto_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
)

func office(t *testing.T) *world.World {
	t.Helper()
	w, err := world.Generate(world.Config{Seed: 7, Agents: 2})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWorldAgentsRoundTrip(t *testing.T) {
	t.Parallel()
	w := office(t)
	for _, data := range []slamproto.AgentData{slamproto.Submaps, slamproto.Scans} {
		pbs := slamproto.WorldAgents(w, data)
		if len(pbs) != len(w.Agents) {
			t.Fatalf("%d agents, want %d", len(pbs), len(w.Agents))
		}
		for i, pb := range pbs {
			wa := w.Agents[i]
			if (pb.GetSubmap() != nil) != (data == slamproto.Submaps) || (len(pb.GetScans()) > 0) != (data == slamproto.Scans) {
				t.Fatalf("data %d agent %d: submap %v, %d scans", data, i, pb.GetSubmap() != nil, len(pb.GetScans()))
			}
			a, err := slamproto.AgentFromProto(pb, w.Config.Resolution)
			if err != nil {
				t.Fatalf("data %d agent %d: %v", data, i, err)
			}
			if a.ID != slamproto.WorldAgentID(i) || a.Anchor != wa.Anchor || a.Guess != wa.InitialGuess {
				t.Errorf("data %d agent %d: got %+v", data, i, a)
			}
			wantOcc, _, _ := wa.Submap.Counts()
			gotOcc, _, _ := a.Submap.Counts()
			// Scans travel as float32 angles, so a few beams may end one
			// cell off; integrated at the sent poses the submaps must still
			// agree closely. With the front end (the default) the poses may
			// move by the matcher's corrections: a looser bound.
			if d := math.Abs(float64(gotOcc - wantOcc)); d > 0.05*float64(wantOcc) {
				t.Errorf("data %d agent %d: %d occupied cells, world submap has %d", data, i, gotOcc, wantOcc)
			}
			if data == slamproto.Scans {
				g, _, err := slamproto.BuildSubmap(pb.GetScans(), w.Config.Resolution, slamproto.SubmapOptions{OdometryOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				odoOcc, _, _ := g.Counts()
				if d := math.Abs(float64(odoOcc - wantOcc)); d > 0.02*float64(wantOcc) {
					t.Errorf("agent %d at the sent poses: %d occupied cells, world submap has %d", i, odoOcc, wantOcc)
				}
			}
		}
	}
	if !w.Agents[0].Anchor || w.Agents[1].Anchor {
		t.Fatalf("world anchors unexpected: %v %v", w.Agents[0].Anchor, w.Agents[1].Anchor)
	}
}

func TestAgentFromProtoRejects(t *testing.T) {
	t.Parallel()
	w := office(t)
	submapAgent := slamproto.WorldAgents(w, slamproto.Submaps)[1]
	scanAgent := slamproto.WorldAgents(w, slamproto.Scans)[1]
	tests := []struct {
		name      string
		base      *typesv1.Agent
		mutate    func(a *typesv1.Agent)
		wantField string
		wantErr   error
	}{
		{name: "empty id", base: submapAgent, mutate: func(a *typesv1.Agent) { a.AgentId = "" }, wantField: "agent_id"},
		{name: "id with space", base: submapAgent, mutate: func(a *typesv1.Agent) { a.AgentId = "a b" }, wantField: "agent_id"},
		{name: "long id", base: submapAgent, mutate: func(a *typesv1.Agent) { a.AgentId = strings.Repeat("a", 65) }, wantField: "agent_id"},
		{name: "nan guess", base: submapAgent, mutate: func(a *typesv1.Agent) { a.InitialGuess.Theta = math.NaN() }, wantField: "initial_guess"},
		{name: "far guess", base: submapAgent, mutate: func(a *typesv1.Agent) { a.InitialGuess.X = 1e9 }, wantField: "initial_guess"},
		{name: "neither", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap = nil }, wantField: "submap"},
		{name: "both", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Scans = scanAgent.GetScans() }, wantField: "submap"},
		{name: "no meta", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta = nil }, wantField: "submap.meta"},
		{name: "zero resolution", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Resolution = 0 }, wantField: "submap.meta.resolution"},
		{name: "inf resolution", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Resolution = math.Inf(1) }, wantField: "submap.meta.resolution"},
		{name: "zero width", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Width = 0 }, wantField: "submap.meta.width"},
		{name: "zero height", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Height = 0 }, wantField: "submap.meta.height"},
		{name: "huge", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Width = 1 << 30 }, wantField: "submap.meta", wantErr: slam.ErrTooLarge},
		{name: "nan origin", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Origin = &typesv1.Pose2D{X: math.NaN()} }, wantField: "submap.meta.origin"},
		{name: "rotated origin", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Meta.Origin = &typesv1.Pose2D{Theta: 0.5} }, wantField: "submap.meta.origin.theta"},
		{name: "data short", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Data = a.Submap.Data[1:] }, wantField: "submap.data"},
		{name: "bad cell", base: submapAgent, mutate: func(a *typesv1.Agent) { a.Submap.Data[5] = 120 }, wantField: "submap.data"},
		{name: "nan odometry", base: scanAgent, mutate: func(a *typesv1.Agent) { a.Scans[2].OdomPose.X = math.NaN() }, wantField: "scans[2].odom_pose"},
		{name: "no scan", base: scanAgent, mutate: func(a *typesv1.Agent) { a.Scans[1].Scan = nil }, wantField: "scans[1].scan"},
		{name: "no beams", base: scanAgent, mutate: func(a *typesv1.Agent) { a.Scans[0].Scan.Ranges = nil }, wantField: "scans[0].scan"},
		{name: "bad range limits", base: scanAgent, mutate: func(a *typesv1.Agent) { a.Scans[3].Scan.RangeMax = -1 }, wantField: "scans[3].scan"},
		{name: "too many scans", base: scanAgent, mutate: func(a *typesv1.Agent) {
			a.Scans = make([]*typesv1.ScanFrame, slamproto.MaxScansPerAgent+1)
		}, wantField: "scans"},
		{name: "scans too wide", base: scanAgent, mutate: func(a *typesv1.Agent) { a.Scans[0].OdomPose.X = 5000 }, wantField: "scans", wantErr: slam.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := proto.Clone(tt.base).(*typesv1.Agent)
			tt.mutate(a)
			_, err := slamproto.AgentFromProto(a, w.Config.Resolution)
			var fe *slamproto.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tt.wantField {
				t.Errorf("field = %q, want %q (err %v)", fe.Field, tt.wantField, err)
			}
			want := tt.wantErr
			if want == nil {
				want = slam.ErrInvalidArgument
			}
			if !errors.Is(err, want) {
				t.Errorf("err = %v, want it to wrap %v", err, want)
			}
		})
	}
}

// TestSubmapFromScansNoReturnBeams: beams at or beyond range_max, +Inf and
// NaN mark no obstacle, and the submap spans what was observed: the returns,
// and no-return beams only up to the usable range, never to range_max.
func TestSubmapFromScansNoReturnBeams(t *testing.T) {
	t.Parallel()
	const rangeMax = 81.83
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	// 180 beams over a half turn; beam 90 looks along +x.
	mk := func(fill float32, returns map[int]float32) *typesv1.LaserScan {
		s := &typesv1.LaserScan{AngleMin: -math.Pi / 2, AngleIncrement: math.Pi / 180, RangeMin: 0.1, RangeMax: rangeMax, Ranges: make([]float32, 180)}
		for i := range s.Ranges {
			s.Ranges[i] = fill
		}
		for i, r := range returns {
			s.Ranges[i] = r
		}
		return s
	}
	frames := func(fill float32, opts slamproto.SubmapOptions) (*slamproto.SubmapInfo, float64, float64, int) {
		t.Helper()
		fs := []*typesv1.ScanFrame{
			{OdomPose: &typesv1.Pose2D{}, Scan: mk(fill, map[int]float32{90: 3})},
			{OdomPose: &typesv1.Pose2D{X: 0.5}, Scan: mk(fill, map[int]float32{90: 2.5})},
		}
		g, info, err := slamproto.BuildSubmap(fs, 0.05, opts)
		if err != nil {
			t.Fatal(err)
		}
		w, h := g.Meta().SizeM()
		occ, _, _ := g.Counts()
		return &info, w, h, occ
	}
	for _, tc := range []struct {
		name   string
		fill   float32
		usable float64
		maxW   float64 // metres
	}{
		{"range_max", rangeMax, 0, 2*10 + 0.5 + 0.3},
		{"beyond range_max", 200, 0, 2*10 + 0.5 + 0.3},
		{"+Inf", inf, 0, 2*10 + 0.5 + 0.3},
		{"+Inf, usable range 4 m", inf, 4, 2*4 + 0.5 + 0.3},
		{"NaN", nan, 0, 3 + 0.3},
	} {
		_, w, h, occ := frames(tc.fill, slamproto.SubmapOptions{UsableRange: tc.usable, OdometryOnly: true})
		if occ < 1 || occ > 2 {
			t.Errorf("%s: %d occupied cells, want the one wall cell the two returns hit", tc.name, occ)
		}
		if w > tc.maxW || h > tc.maxW {
			t.Errorf("%s: submap spans %.2fx%.2f m, want at most %.1f m", tc.name, w, h, tc.maxW)
		}
		// The front end must neither fail on such scans nor change that.
		if _, fw, fh, focc := frames(tc.fill, slamproto.SubmapOptions{UsableRange: tc.usable}); fw > tc.maxW || fh > tc.maxW || focc > 2 {
			t.Errorf("%s with the front end: %.2fx%.2f m, %d occupied", tc.name, fw, fh, focc)
		}
	}
}

// TestAgentsFromProtoReportsTheFirstError: agents are converted
// concurrently, yet the error is the one a sequential conversion meets
// first, and a repeated id stops the list where it repeats.
func TestAgentsFromProtoReportsTheFirstError(t *testing.T) {
	t.Parallel()
	w, err := world.Generate(world.Config{Seed: 7, Agents: 4})
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() []*typesv1.Agent { return slamproto.WorldAgents(w, slamproto.Scans) }
	if got, err := slamproto.AgentsFromProto(fresh(), w.Config.Resolution); err != nil || len(got) != 4 {
		t.Fatalf("good agents: %d, %v", len(got), err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(a []*typesv1.Agent)
		field  string
	}{
		{"bad scan before a repeated id", func(a []*typesv1.Agent) { a[1].Scans[0].Scan = nil; a[3].AgentId = a[0].AgentId }, "agents[1].scans[0].scan"},
		{"repeated id before a bad scan", func(a []*typesv1.Agent) { a[1].AgentId = a[0].AgentId; a[2].Scans[0].Scan = nil }, "agents[1].agent_id"},
		{"two bad agents", func(a []*typesv1.Agent) { a[3].Scans[1].Scan = nil; a[2].Scans[0].OdomPose.X = math.NaN() }, "agents[2].scans[0].odom_pose"},
	} {
		a := fresh()
		tc.mutate(a)
		_, err := slamproto.AgentsFromProto(a, w.Config.Resolution)
		var fe *slamproto.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want a FieldError at %s", tc.name, err, tc.field)
		}
	}
}
