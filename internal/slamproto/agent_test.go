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
