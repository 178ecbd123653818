package merge_test

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/merge"
)

const mapID = "map-test"

// mission builds a world of kind, seeds its empty map for mission m as the
// mapping service allocates it, and returns a request merging its agents at
// their true poses (what a perfect localization reports).
func mission(t *testing.T, e *env, m string, kind world.Kind) *mergev1.MergeMapsRequest {
	t.Helper()
	w, _ := steptest.SeedWorld(t, e.Redis, m, mapID, world.Config{Seed: 7, Agents: 3, Kind: kind})
	req := &mergev1.MergeMapsRequest{Saga: e.Saga(m), MapId: mapID, Agents: slamproto.WorldAgents(w, slamproto.Submaps)}
	for i, a := range w.Agents {
		req.Poses = append(req.Poses, &typesv1.AgentPose{AgentId: slamproto.WorldAgentID(i), MapFromAgent: slamproto.PoseToProto(a.Truth), Anchor: a.Anchor})
	}
	return req
}

func TestMergeRevert(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	const m = "m-merge"
	req := mission(t, e, m, world.Office)
	before := mapHash(t, e.Redis, m)

	resp, err := e.client.MergeMaps(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() != 2 || resp.GetConsistency() < fuse.DefaultMinConsistency || resp.GetConsistency() > 1 || resp.GetKnownCells() == 0 {
		t.Fatalf("MergeMaps = %v", resp)
	}
	h := mapHash(t, e.Redis, m)
	if h["current"] != "2" || h["v1"] != before["v1"] {
		t.Fatalf("map after merge: current %q, v1 changed %v", h["current"], h["v1"] != before["v1"])
	}
	known := 0
	for _, c := range []byte(h["v2"]) {
		if int8(c) != -1 {
			known++
		}
	}
	if uint64(known) != resp.GetKnownCells() {
		t.Errorf("v2 has %d known cells, response says %d", known, resp.GetKnownCells())
	}
	progressed := e.EventsOf(t, m, progress.StepProgress)
	if len(progressed) != len(req.GetAgents()) || progressed[len(progressed)-1].Progress != 1 {
		t.Errorf("progress events %+v, want one per agent ending at 1", progressed)
	}

	again, err := e.client.MergeMaps(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again, resp) {
		t.Errorf("duplicate MergeMaps = %v, want %v", again, resp)
	}
	if n := len(e.EventsOf(t, m, progress.StepProgress)); n != len(progressed) {
		t.Errorf("duplicate call fused again (%d more progress events)", n-len(progressed))
	}
	if got := e.Effects(t, m)["merge_maps:action"]; got != 1 {
		t.Errorf("merge_maps:action effects = %d, want 1", got)
	}
	if h := mapHash(t, e.Redis, m); h["current"] != "2" || h["v3"] != "" {
		t.Errorf("duplicate wrote another version: current %q", h["current"])
	}

	rev, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)})
	if err != nil {
		t.Fatal(err)
	}
	if !rev.GetReverted() || rev.GetVersion() != 1 {
		t.Errorf("RevertMerge = %v", rev)
	}
	if after := mapHash(t, e.Redis, m); !maps.Equal(after, before) {
		t.Errorf("map after revert differs from before the merge (fields %v)", slices.Sorted(maps.Keys(after)))
	}
	rev, err = e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)})
	if err != nil || rev.GetReverted() {
		t.Errorf("repeated revert = %v, %v", rev, err)
	}
	_, err = e.client.MergeMaps(ctx, req)
	steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	if after := mapHash(t, e.Redis, m); !maps.Equal(after, before) {
		t.Error("hanging merge changed the map")
	}
	eff := e.Effects(t, m)
	if eff["merge_maps:action"] != 1 || eff["merge_maps:compensation"] != 1 {
		t.Errorf("effects = %v", eff)
	}
}

func TestMergeOntoLaterVersion(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	const m = "m-later"
	req := mission(t, e, m, world.Office)
	// An earlier merge left version 2 current.
	if err := e.Redis.HSet(steptest.Context(t), mapstore.Key(m), "v2", mapHash(t, e.Redis, m)["v1"], "current", 2).Err(); err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.MergeMaps(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() != 3 {
		t.Fatalf("version = %d, want 3", resp.GetVersion())
	}
	rev, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)})
	if err != nil || !rev.GetReverted() || rev.GetVersion() != 2 {
		t.Fatalf("RevertMerge = %v, %v; want version 2 current again", rev, err)
	}
	h := mapHash(t, e.Redis, m)
	_, has2 := h["v2"]
	_, has3 := h["v3"]
	if h["current"] != "2" || !has2 || has3 {
		t.Errorf("after revert: current %q, v2 stored %v, v3 stored %v", h["current"], has2, has3)
	}
}

func TestRevertAfterRelease(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	const m = "m-released"
	req := mission(t, e, m, world.Office)
	if _, err := e.client.MergeMaps(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The mapping service released the whole map first (a teardown out of
	// order): reverting must not resurrect a fragment of it.
	if err := e.Redis.Del(ctx, mapstore.Key(m)).Err(); err != nil {
		t.Fatal(err)
	}
	rev, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)})
	if err != nil || rev.GetReverted() {
		t.Fatalf("RevertMerge = %v, %v; want nothing reverted", rev, err)
	}
	if n, err := e.Redis.Exists(ctx, mapstore.Key(m)).Result(); err != nil || n != 0 {
		t.Errorf("map key exists after revert: %d, %v", n, err)
	}
}

func TestNullCompensation(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	const m = "m-null"
	req := mission(t, e, m, world.Office)
	before := mapHash(t, e.Redis, m)
	rev, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga(m)})
	if err != nil || rev.GetReverted() {
		t.Fatalf("null revert = %v, %v", rev, err)
	}
	_, err = e.client.MergeMaps(ctx, req)
	steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	if after := mapHash(t, e.Redis, m); !maps.Equal(after, before) {
		t.Error("map changed")
	}
	if eff := e.Effects(t, m); len(eff) != 0 {
		t.Errorf("effects = %v, want none", eff)
	}
}

func TestChangedWorldFailsTheGate(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	const m = "m-changed"
	req := mission(t, e, m, world.ChangedWorld)
	before := mapHash(t, e.Redis, m)
	_, err := e.client.MergeMaps(steptest.Context(t), req)
	steptest.WantStatus(t, err, codes.FailedPrecondition, rpcerr.ReasonInconsistentMaps)
	md := rpcerr.Info(err).GetMetadata()
	c, cerr := strconv.ParseFloat(md["consistency"], 64)
	th, therr := strconv.ParseFloat(md["threshold"], 64)
	if cerr != nil || therr != nil || !(c < th) || md["agent"] != "agent-2" {
		t.Errorf("metadata = %v, want agent-2 below the threshold", md)
	}
	// The refusal names the poses it judged: the mission keeps none once
	// it compensated, and they tell a wrong pose from a changed world.
	msg := status.Convert(err).Message()
	for _, p := range req.GetPoses() {
		want := p.GetAgentId() + " " + slamproto.PoseFromProto(p.GetMapFromAgent()).String()
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name the judged pose %q", msg, want)
		}
	}
	if after := mapHash(t, e.Redis, m); !maps.Equal(after, before) {
		t.Error("a refused merge changed the map")
	}
	if failed := e.EventsOf(t, m, progress.StepFailed); len(failed) != 1 || failed[0].ErrorReason != rpcerr.ReasonInconsistentMaps {
		t.Errorf("step.failed events %+v", failed)
	}
}

// TestChangedWorldMergesWithTheGatesLoosened: the request's
// max_changed_share and min_consistency replace the service's gates for
// that merge: the changed world the defaults refuse merges with the
// region test off and a floor of 0.5.
func TestChangedWorldMergesWithTheGatesLoosened(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	req := mission(t, e, "m-changed-loose", world.ChangedWorld)
	req.MaxChangedShare, req.MinConsistency = 1, 0.5
	resp, err := e.client.MergeMaps(steptest.Context(t), req)
	if err != nil || resp.GetVersion() != 2 || resp.GetConsistency() >= fuse.DefaultMinConsistency {
		t.Fatalf("MergeMaps = %v, %v; want version 2 at a consistency the default floor refuses", resp, err)
	}
}

func TestMapNotFound(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	req := mission(t, e, "m-other", world.Office)
	tests := []struct {
		name   string
		mutate func(r *mergev1.MergeMapsRequest)
	}{
		{"no map for the mission", func(r *mergev1.MergeMapsRequest) { r.Saga.MissionId = "m-nomap" }},
		{"another map id", func(r *mergev1.MergeMapsRequest) { r.MapId = "map-else" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := proto.CloneOf(req)
			tt.mutate(r)
			_, err := e.client.MergeMaps(steptest.Context(t), r)
			steptest.WantStatus(t, err, codes.NotFound, rpcerr.ReasonMapNotFound)
		})
	}
}

func TestMergeInvalid(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	base := mission(t, e, "m-bad", world.Office)
	tests := []struct {
		name   string
		mutate func(r *mergev1.MergeMapsRequest)
		field  string
	}{
		{"no saga", func(r *mergev1.MergeMapsRequest) { r.Saga = nil }, "saga"},
		{"wrong step", func(r *mergev1.MergeMapsRequest) { r.Saga.Step = "localize_agents" }, "saga.step"},
		{"no map id", func(r *mergev1.MergeMapsRequest) { r.MapId = "" }, "map_id"},
		{"changed share over 1", func(r *mergev1.MergeMapsRequest) { r.MaxChangedShare = 1.5 }, "max_changed_share"},
		{"negative floor", func(r *mergev1.MergeMapsRequest) { r.MinConsistency = -0.1 }, "min_consistency"},
		{"nan floor", func(r *mergev1.MergeMapsRequest) { r.MinConsistency = math.NaN() }, "min_consistency"},
		{"map_meta without resolution", func(r *mergev1.MergeMapsRequest) { r.MapMeta = &typesv1.GridMeta{Width: 40, Height: 40} }, "map_meta"},
		{"no agents", func(r *mergev1.MergeMapsRequest) { r.Agents, r.Poses = nil, nil }, "agents"},
		{"bad pose id", func(r *mergev1.MergeMapsRequest) { r.Poses[1].AgentId = "a/b" }, "poses[1].agent_id"},
		{"two poses for an agent", func(r *mergev1.MergeMapsRequest) { r.Poses[2].AgentId = r.Poses[0].AgentId }, "poses[2].agent_id"},
		{"nan pose", func(r *mergev1.MergeMapsRequest) { r.Poses[0].MapFromAgent.Theta = math.NaN() }, "poses[0].map_from_agent"},
		{"absent pose", func(r *mergev1.MergeMapsRequest) { r.Poses[1].MapFromAgent = nil }, "poses[1].map_from_agent"},
		{"agent without pose", func(r *mergev1.MergeMapsRequest) { r.Poses = r.Poses[:2] }, "poses"},
		{"pose without agent", func(r *mergev1.MergeMapsRequest) { r.Agents = r.Agents[:2] }, "poses"},
		{"duplicate agent", func(r *mergev1.MergeMapsRequest) { r.Agents[1].AgentId = r.Agents[0].AgentId }, "agents[1].agent_id"},
		{"zero height", func(r *mergev1.MergeMapsRequest) { r.Agents[1].Submap.Meta.Height = 0 }, "agents[1].submap.meta.height"},
		{"bad cell", func(r *mergev1.MergeMapsRequest) { r.Agents[0].Submap.Data[0] = 200 }, "agents[0].submap.data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := proto.CloneOf(base)
			tt.mutate(r)
			_, err := e.client.MergeMaps(steptest.Context(t), r)
			steptest.WantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
			if f := rpcerr.Field(err); f != tt.field {
				t.Errorf("field = %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
}

// TestRefusalSaysWhatAcceptsEveryAgent: a refusal of the gates goes on
// adding the other agents and says which gates accept them all; sent as
// the request's gates, those let the merge through at once. A mission
// whose changed agent comes twice, under two ids, is refused for both.
func TestRefusalSaysWhatAcceptsEveryAgent(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	for _, twice := range []bool{false, true} {
		m := "m-changed-advice"
		if twice {
			m += "-twice"
		}
		req := mission(t, e, m, world.ChangedWorld)
		if twice {
			a := proto.CloneOf(req.Agents[len(req.Agents)-1])
			p := proto.CloneOf(req.Poses[len(req.Poses)-1])
			a.AgentId, p.AgentId = a.GetAgentId()+"-again", p.GetAgentId()+"-again"
			req.Agents, req.Poses = append(req.Agents, a), append(req.Poses, p)
		}
		_, err := e.client.MergeMaps(ctx, req)
		steptest.WantStatus(t, err, codes.FailedPrecondition, rpcerr.ReasonInconsistentMaps)
		md, msg := rpcerr.Info(err).GetMetadata(), status.Convert(err).Message()
		t.Logf("twice=%v: %s (%v)", twice, msg, md)
		share, floor := md["accepting_max_changed_share"], md["accepting_min_consistency"]
		if share == "" && floor == "" {
			t.Fatalf("twice=%v: no accepting gate in %v", twice, md)
		}
		if twice && !strings.Contains(msg, "they refuse 2 of the 4 agents") {
			t.Errorf("message %q does not name both refusals", msg)
		}
		for _, g := range []struct {
			v   string
			dst *float64
		}{{share, &req.MaxChangedShare}, {floor, &req.MinConsistency}} {
			if g.v == "" {
				continue
			}
			f, err := strconv.ParseFloat(g.v, 64)
			if err != nil {
				t.Fatal(err)
			}
			*g.dst = f
		}
		if _, err := e.client.MergeMaps(ctx, req); err != nil {
			t.Errorf("twice=%v: MergeMaps with the refusal's gates (max_changed_share %g, min_consistency %g): %v", twice, req.MaxChangedShare, req.MinConsistency, err)
		}
	}
}
