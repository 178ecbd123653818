package localization_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/localization"
)

// placement is the overhead workload's localization of mission m: its
// anchor alone on its map, seeded as AllocateMap creates it; with the
// map's geometry stated when stated.
func placement(t *testing.T, e *env, m string, stated bool) *localizationv1.LocalizeAgentsRequest {
	t.Helper()
	steptest.SeedOverheadMap(t, e.Server.Universal(t), m, mapID)
	req := &localizationv1.LocalizeAgentsRequest{Saga: e.Saga(m), MapId: mapID, Agents: []*typesv1.Agent{steptest.OverheadAgent()}}
	if stated {
		req.MapMeta = steptest.OverheadMapMeta()
	}
	return req
}

// TestPlacementWithStatedMapTakesOneRoundTrip: placing the anchor on a
// small map whose geometry the request states is one Redis round trip,
// the commit; it gives the poses the read path gives, and stores them with
// one effect. A duplicate is answered with the stored poses, still one
// round trip and one effect.
func TestPlacementWithStatedMapTakesOneRoundTrip(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	ctx := steptest.Context(t)
	count := steptest.CountCalls(e.Redis)

	read, err := e.client.LocalizeAgents(ctx, placement(t, e, "m-read", false))
	if err != nil {
		t.Fatal(err)
	}
	req := placement(t, e, "m-stated", true)
	steptest.CheckOneTrip(t, count, read,
		func() (*localizationv1.LocalizeAgentsResponse, error) { return e.client.LocalizeAgents(ctx, req) },
		func() int64 { return e.Effects(t, "m-stated")["localize_agents:action"] })
	stored, err := e.Redis.HGet(ctx, "slammesh:{m-stated}:localization", "anchor").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if got := (&typesv1.AgentPose{}); proto.Unmarshal(stored, got) != nil || !proto.Equal(got, read.GetPoses()[0]) {
		t.Errorf("stored pose %v, want %v", got, read.GetPoses()[0])
	}
}

// TestStatedMapThatIsNotStored: a stated geometry or map id that the
// stored map does not have writes nothing on the one-trip path; the
// service reads the map and answers as without it: the poses in the
// stored geometry, or NOT_FOUND for a map the mission does not have. A
// compensated step stays forbidden.
func TestStatedMapThatIsNotStored(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	ctx := steptest.Context(t)
	read, err := e.client.LocalizeAgents(ctx, placement(t, e, "m-ref", false))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("another geometry", func(t *testing.T) {
		req := placement(t, e, "m-geometry", true)
		req.MapMeta.Resolution = 0.1
		req.MapMeta.Width, req.MapMeta.Height = 20, 20
		resp, err := e.client.LocalizeAgents(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp, read) {
			t.Errorf("poses\n%v\nwant, in the stored geometry:\n%v", resp, read)
		}
		if got := e.Effects(t, "m-geometry")["localize_agents:action"]; got != 1 {
			t.Errorf("localize_agents:action effects = %d, want 1", got)
		}
		// The placement on the stated geometry was thrown away: only the
		// one that committed reports the anchor.
		if got := e.EventsOf(t, "m-geometry", progress.StepProgress); len(got) != 1 {
			t.Errorf("%d step.progress events, want 1 (the anchor placed once): %+v", len(got), got)
		}
	})
	t.Run("another map id", func(t *testing.T) {
		req := placement(t, e, "m-mapid", true)
		req.MapId = "map-else"
		_, err := e.client.LocalizeAgents(ctx, req)
		steptest.WantStatus(t, err, codes.NotFound, rpcerr.ReasonMapNotFound)
		if n := len(e.Effects(t, "m-mapid")); n != 0 {
			t.Errorf("effects %v, want none", e.Effects(t, "m-mapid"))
		}
	})
	t.Run("work that fails", func(t *testing.T) {
		req := placement(t, e, "m-badcell", true)
		req.Agents[0].Submap.Data[0] = 200
		_, err := e.client.LocalizeAgents(ctx, req)
		steptest.WantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
		if f := rpcerr.Field(err); f != "agents[0].submap.data" {
			t.Errorf("field %q, want agents[0].submap.data", f)
		}
	})
	t.Run("compensated first, work that fails", func(t *testing.T) {
		// As on the read path, whose look comes before the work: the
		// step's refusal, not the work's error.
		req := placement(t, e, "m-comp-badcell", true)
		req.Agents[0].Submap.Data[0] = 200
		if _, err := e.client.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: e.Saga("m-comp-badcell")}); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.LocalizeAgents(ctx, req)
		steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	})
	t.Run("compensated first", func(t *testing.T) {
		req := placement(t, e, "m-comp", true)
		if _, err := e.client.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: e.Saga("m-comp")}); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.LocalizeAgents(ctx, req)
		steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
		if got := e.Effects(t, "m-comp")["localize_agents:action"]; got != 0 {
			t.Errorf("localize_agents:action effects = %d, want 0", got)
		}
	})
}

// largeMap is 15x15 m at 5 cm: 90,000 cells, above stepserver.OneTripCells.
var largeMap = grid.Meta{Resolution: 0.05, Width: 300, Height: 300}

// TestLargePlacementLooksFirst: above stepserver.OneTripCells the stated
// geometry does not save the look at the barrier, so that a duplicate is
// answered without working again: two round trips.
func TestLargePlacementLooksFirst(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	ctx := steptest.Context(t)
	count := steptest.CountCalls(e.Redis)
	m := "m-large"
	steptest.SeedMap(t, e.Server.Universal(t), m, mapID, largeMap)
	req := &localizationv1.LocalizeAgentsRequest{Saga: e.Saga(m), MapId: mapID, Agents: []*typesv1.Agent{steptest.OverheadAgent()},
		MapMeta: slamproto.MetaToProto(largeMap)}
	trips := count.Trips()
	if _, err := e.client.LocalizeAgents(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := count.Trips() - trips; n != 2 {
		t.Errorf("%d round trips, want 2 (the look, then the commit)", n)
	}
}
