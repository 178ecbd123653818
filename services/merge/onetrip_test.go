package merge_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/merge"
)

// overheadMerge is the overhead workload's merge for mission m: the
// anchor's 2x2 m submap onto its map, seeded as AllocateMap creates it;
// with the map's geometry stated when stated.
func overheadMerge(t *testing.T, e *env, m string, stated bool) *mergev1.MergeMapsRequest {
	t.Helper()
	steptest.SeedOverheadMap(t, e.Server.Universal(t), m, mapID)
	agent := steptest.OverheadAgent()
	req := &mergev1.MergeMapsRequest{Saga: e.Saga(m), MapId: mapID, Agents: []*typesv1.Agent{agent},
		Poses: []*typesv1.AgentPose{{AgentId: agent.GetAgentId(), MapFromAgent: &typesv1.Pose2D{}, Anchor: true}}}
	if stated {
		req.MapMeta = steptest.OverheadMapMeta()
	}
	return req
}

// TestSmallMergeWithStatedMapTakesOneRoundTrip: a small merge onto the map
// as allocated, whose geometry the request states, is one Redis round trip,
// the commit; it answers and stores what the read path does (version 2,
// the same cells), with one effect. A duplicate is answered with the
// stored result, still one round trip and one effect.
func TestSmallMergeWithStatedMapTakesOneRoundTrip(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	count := steptest.CountCalls(e.Redis)

	read, err := e.client.MergeMaps(ctx, overheadMerge(t, e, "m-read", false))
	if err != nil {
		t.Fatal(err)
	}
	req := overheadMerge(t, e, "m-stated", true)
	steptest.CheckOneTrip(t, count, read,
		func() (*mergev1.MergeMapsResponse, error) { return e.client.MergeMaps(ctx, req) },
		func() int64 { return e.Effects(t, "m-stated")["merge_maps:action"] })
	want, got := mapHash(t, e.Redis, "m-read"), mapHash(t, e.Redis, "m-stated")
	for _, f := range []string{"current", "v2", "agents:v2"} {
		if got[f] != want[f] {
			t.Errorf("map field %s differs from the read path's (%d bytes, want %d)", f, len(got[f]), len(want[f]))
		}
	}
}

// TestStatedMapThatIsNotStored: when the stored map is not the stated one
// (another geometry, a later version, another map id) the one-trip commit
// writes nothing; the service reads the map and answers as without the
// statement. A compensated step stays forbidden.
func TestStatedMapThatIsNotStored(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	ctx := steptest.Context(t)
	read, err := e.client.MergeMaps(ctx, overheadMerge(t, e, "m-ref", false))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("another geometry", func(t *testing.T) {
		req := overheadMerge(t, e, "m-geometry", true)
		req.MapMeta.Origin = &typesv1.Pose2D{X: 0.5}
		resp, err := e.client.MergeMaps(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp, read) {
			t.Errorf("%v, want, on the stored geometry: %v", resp, read)
		}
		if h, want := mapHash(t, e.Redis, "m-geometry"), mapHash(t, e.Redis, "m-ref"); h["v2"] != want["v2"] {
			t.Error("version 2 differs from the read path's")
		}
	})
	t.Run("a later version", func(t *testing.T) {
		req := overheadMerge(t, e, "m-later", true)
		if err := e.Redis.HSet(ctx, mapstore.Key("m-later"), "v2", mapHash(t, e.Redis, "m-later")["v1"], "current", 2).Err(); err != nil {
			t.Fatal(err)
		}
		resp, err := e.client.MergeMaps(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetVersion() != 3 {
			t.Errorf("version %d, want 3: merged onto version 2", resp.GetVersion())
		}
		if got := e.Effects(t, "m-later")["merge_maps:action"]; got != 1 {
			t.Errorf("merge_maps:action effects = %d, want 1", got)
		}
		// The fusion onto the stated map was thrown away: only the one
		// that committed reports its agent.
		if got := e.EventsOf(t, "m-later", progress.StepProgress); len(got) != 1 {
			t.Errorf("%d step.progress events, want 1 (one agent fused once): %+v", len(got), got)
		}
	})
	t.Run("another map id", func(t *testing.T) {
		req := overheadMerge(t, e, "m-mapid", true)
		req.MapId = "map-else"
		_, err := e.client.MergeMaps(ctx, req)
		steptest.WantStatus(t, err, codes.NotFound, rpcerr.ReasonMapNotFound)
		if h := mapHash(t, e.Redis, "m-mapid"); h["current"] != "1" {
			t.Errorf("current %q, want 1", h["current"])
		}
	})
	t.Run("work that fails", func(t *testing.T) {
		req := overheadMerge(t, e, "m-badcell", true)
		req.Agents[0].Submap.Data[0] = 200
		_, err := e.client.MergeMaps(ctx, req)
		steptest.WantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
		if f := rpcerr.Field(err); f != "agents[0].submap.data" {
			t.Errorf("field %q, want agents[0].submap.data", f)
		}
	})
	t.Run("compensated first, work that fails", func(t *testing.T) {
		// As on the read path, whose look comes before the work: the
		// step's refusal, not the work's error.
		req := overheadMerge(t, e, "m-comp-badcell", true)
		req.Agents[0].Submap.Data[0] = 200
		if _, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga("m-comp-badcell")}); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.MergeMaps(ctx, req)
		steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	})
	t.Run("compensated first", func(t *testing.T) {
		req := overheadMerge(t, e, "m-comp", true)
		if _, err := e.client.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: e.Saga("m-comp")}); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.MergeMaps(ctx, req)
		steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
		if h := mapHash(t, e.Redis, "m-comp"); h["current"] != "1" {
			t.Errorf("current %q, want 1", h["current"])
		}
	})
}

// TestLargeMergeLooksFirst: above stepserver.OneTripCells the stated
// geometry does not save the look at the barrier, so that a duplicate is
// answered without fusing again: two round trips.
func TestLargeMergeLooksFirst(t *testing.T) {
	t.Parallel()
	e := start(t, merge.Config{})
	count := steptest.CountCalls(e.Redis)
	const m = "m-large"
	large := grid.Meta{Resolution: 0.05, Width: 300, Height: 300} // 90,000 cells
	steptest.SeedMap(t, e.Server.Universal(t), m, mapID, large)
	req := overheadMerge(t, e, "m-unused", false)
	req.Saga, req.MapMeta = e.Saga(m), slamproto.MetaToProto(large)
	trips := count.Trips()
	if _, err := e.client.MergeMaps(steptest.Context(t), req); err != nil {
		t.Fatal(err)
	}
	if n := count.Trips() - trips; n != 2 {
		t.Errorf("%d round trips, want 2 (the look with the read, then the commit)", n)
	}
}
