package orchestrator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// TestRequestTotalsAreLimited sends requests whose every agent is within
// the per-agent limits but whose sum is not: they are refused with
// INVALID_ARGUMENT on "agents" naming the limit.
func TestRequestTotalsAreLimited(t *testing.T) {
	t.Parallel()
	submapAgent := func(id string, anchor bool, w, h uint32) *typesv1.Agent {
		return &typesv1.Agent{
			AgentId: id, Anchor: anchor, InitialGuess: &typesv1.Pose2D{},
			Submap: &typesv1.OccupancyGrid{
				Meta: &typesv1.GridMeta{Resolution: 0.05, Width: w, Height: h, Origin: &typesv1.Pose2D{}},
				Data: make([]byte, int(w)*int(h)),
			},
		}
	}
	scanAgent := func(id string, anchor bool, scans, beams int) *typesv1.Agent {
		ranges := make([]float32, beams)
		for i := range ranges {
			ranges[i] = 2
		}
		a := &typesv1.Agent{AgentId: id, Anchor: anchor, InitialGuess: &typesv1.Pose2D{}}
		for range scans {
			a.Scans = append(a.Scans, &typesv1.ScanFrame{
				OdomPose: &typesv1.Pose2D{},
				Scan:     &typesv1.LaserScan{AngleMin: -3.14, AngleIncrement: 6.28 / float32(beams), RangeMin: 0.1, RangeMax: 10, Ranges: ranges},
			})
		}
		return a
	}
	mapSpec := &typesv1.MapSpec{WidthM: 100, HeightM: 100}
	// 3 agents of 3 Mi cells: each under MaxSubmapCells, 9 Mi together.
	side := uint32(1774)
	cells := &orchestratorv1.StartMissionRequest{Map: mapSpec, Agents: []*typesv1.Agent{
		submapAgent("a", true, side, side), submapAgent("b", false, side, side), submapAgent("c", false, side, side),
	}}
	// 2 agents of 17 scans of 65,536 beams: 2.1 Mi beams together.
	beams := &orchestratorv1.StartMissionRequest{Map: mapSpec, Agents: []*typesv1.Agent{
		scanAgent("a", true, 17, 1<<16), scanAgent("b", false, 17, 1<<16),
	}}
	for name, tc := range map[string]struct {
		req   *orchestratorv1.StartMissionRequest
		limit string
	}{
		"cells": {cells, "submap cells in the request, limit"},
		"beams": {beams, "scan beams in the request, limit"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := normalizeStart(tc.req, false)
			if status.Code(err) != codes.InvalidArgument || rpcerr.Field(err) != "agents" || !strings.Contains(err.Error(), tc.limit) {
				t.Fatalf("got %v, want INVALID_ARGUMENT on agents naming %s", err, tc.limit)
			}
			// The step services apply the same totals.
			if _, err := slamproto.AgentsFromProto(tc.req.GetAgents(), 0.05); err == nil || !strings.Contains(err.Error(), tc.limit) {
				t.Fatalf("slamproto.AgentsFromProto: %v, want the %s error", err, tc.limit)
			}
		})
	}
}

// TestMapSpecIsLimited: the map grid limit the MapSpec comment states.
func TestMapSpecIsLimited(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		spec  *typesv1.MapSpec
		field string
		limit string
	}{
		// 409.6 m at 5 cm is 8192 cells a side: 64 Mi cells, allowed; a
		// millimetre more is not.
		"cells":  {&typesv1.MapSpec{WidthM: 409.65, HeightM: 409.6, Resolution: 0.05}, "map", "67108864"},
		"origin": {&typesv1.MapSpec{OriginX: 2e6, WidthM: 10, HeightM: 10}, "map.origin_x", "1e+06"},
	} {
		t.Run(name, func(t *testing.T) {
			req := &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 1, Agents: 2}, Map: tc.spec}
			_, err := normalizeStart(req, false)
			if status.Code(err) != codes.InvalidArgument || rpcerr.Field(err) != tc.field || !strings.Contains(err.Error(), tc.limit) {
				t.Fatalf("got %v, want INVALID_ARGUMENT on %s naming %s", err, tc.field, tc.limit)
			}
		})
	}
	ok := &orchestratorv1.StartMissionRequest{Scenario: &typesv1.Scenario{Seed: 1, Agents: 2}, Map: &typesv1.MapSpec{WidthM: 409.6, HeightM: 409.6, Resolution: 0.05}}
	if _, err := normalizeStart(ok, false); err != nil {
		t.Fatalf("a 64 Mi cell map: %v", err)
	}
}
