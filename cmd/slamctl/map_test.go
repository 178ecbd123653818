package main

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// startMapping starts a mapping service with the default budget, as
// cmd/slammesh wires it.
func startMapping(t *testing.T) *steptest.Env {
	t.Helper()
	return steptest.Start(t, steptest.Service{
		Name:                mapping.ServiceName,
		Step:                mapping.Step,
		ActionMethods:       mapping.ActionMethods,
		CompensationMethods: mapping.CompensationMethods,
		New: func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
			return mapping.NewServer(mapping.Config{}, rdb, b, log), nil
		},
	})
}

// `slamctl map` fetches the largest map the mesh allows: the mapping
// service's whole default budget (16 M cells, a 200 m square at 5 cm),
// over gRPC's default 4 MiB receive limit, through StreamMap. Memory-heavy
// (the map is held by Redis, the service and the client): the one test
// that allocates it.
func TestMapFetchesFullBudgetMap(t *testing.T) {
	e := startMapping(t)
	// Rendering 16 M cells as PNG takes tens of seconds under the race
	// detector on a loaded machine: a bound well above steptest.Context's.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const mission = "m-big"
	alloc, err := mappingv1.NewMappingServiceClient(e.Conn).AllocateMap(ctx, &mappingv1.AllocateMapRequest{
		Saga: e.Saga(mission),
		Spec: &typesv1.MapSpec{WidthM: 200, HeightM: 200},
	})
	if err != nil {
		t.Fatalf("AllocateMap: %v", err)
	}
	if alloc.GetCells() != mapping.DefaultCapacityCells {
		t.Fatalf("allocated %d cells, want the whole default budget %d", alloc.GetCells(), mapping.DefaultCapacityCells)
	}

	out := filepath.Join(t.TempDir(), "big.png")
	var stdout, stderr bytes.Buffer
	// The orchestrator address is never dialled by map.
	args := []string{"--addr", "127.0.0.1:1", "--mapping-addr", e.Conn.Target(), "map", "-o", out, mission}
	if err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("slamctl map: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "4000x4000 cells") {
		t.Errorf("slamctl map said %q, want the 4000x4000 geometry", stdout.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", out, err)
	}
	if cfg.Width != 4000 || cfg.Height != 4000 {
		t.Errorf("PNG is %dx%d, want 4000x4000", cfg.Width, cfg.Height)
	}
	// -o names the pair by one of its own files: the base is what is left.
	base := filepath.Join(t.TempDir(), "big")
	args = []string{"--addr", "127.0.0.1:1", "--mapping-addr", e.Conn.Target(), "map", "--format", "ros", "-o", base + ".yaml", mission}
	if err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("slamctl map --format ros: %v\n%s", err, stderr.String())
	}
	for _, name := range []string{base + ".yaml", base + ".pgm"} {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("--format ros -o %s.yaml: %v", base, err)
		}
	}
}

// TestMapToStdout: -o - writes the PNG alone to stdout, for a pipe, and
// says what it wrote on stderr (found by a review: it wrote a file named
// "-").
func TestMapToStdout(t *testing.T) {
	// Not parallel: it runs in a directory of its own (t.Chdir), to see
	// that no file named "-" appears.
	e := startMapping(t)
	const mission = "m-pipe"
	if _, err := mappingv1.NewMappingServiceClient(e.Conn).AllocateMap(t.Context(), &mappingv1.AllocateMapRequest{
		Saga: e.Saga(mission),
		Spec: &typesv1.MapSpec{WidthM: 2, HeightM: 1},
	}); err != nil {
		t.Fatalf("AllocateMap: %v", err)
	}
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	args := []string{"--addr", "127.0.0.1:1", "--mapping-addr", e.Conn.Target(), "map", "-o", "-", mission}
	if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("slamctl map -o -: %v\n%s", err, stderr.String())
	}
	cfg, err := png.DecodeConfig(&stdout)
	if err != nil {
		t.Fatalf("stdout is not a PNG: %v", err)
	}
	if cfg.Width != 40 || cfg.Height != 20 {
		t.Errorf("PNG is %dx%d, want 40x20", cfg.Width, cfg.Height)
	}
	if !strings.Contains(stderr.String(), "wrote stdout: map") {
		t.Errorf("stderr %q does not say what was written", stderr.String())
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error(`a file named "-" was written`)
	}
}

// mapNotFoundOrchestrator knows mission "done" and no other.
type mapNotFoundOrchestrator struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
}

func (mapNotFoundOrchestrator) GetMission(_ context.Context, req *orchestratorv1.GetMissionRequest) (*orchestratorv1.GetMissionResponse, error) {
	switch id := req.GetMissionId(); id {
	case "done":
		return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{MissionId: "done", State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED}}, nil
	// The records as the orchestrator keeps them: a compensated step's
	// output (the map id) is cleared.
	case "evicted":
		return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, MapId: "map-1", State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
			Steps: []*orchestratorv1.Step{{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_SUCCEEDED}}}}, nil
	case "torn-down":
		return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
			Steps: []*orchestratorv1.Step{{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_COMPENSATED}}}}, nil
	case "refused":
		// A failed allocation is compensated too, and keeps its error.
		return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
			Steps: []*orchestratorv1.Step{
				{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_COMPENSATED, Attempts: 1, CompensationAttempts: 1,
					Error: &orchestratorv1.MissionError{Code: "RESOURCE_EXHAUSTED", Reason: "CAPACITY_EXHAUSTED"}},
				{Name: "localize_agents", State: orchestratorv1.StepState_STEP_STATE_PENDING},
			}}}, nil
	case "early":
		return &orchestratorv1.GetMissionResponse{Mission: &orchestratorv1.Mission{MissionId: id, State: orchestratorv1.MissionState_MISSION_STATE_RUNNING,
			Steps: []*orchestratorv1.Step{{Name: "allocate_map", State: orchestratorv1.StepState_STEP_STATE_RUNNING}}}}, nil
	case "locked":
		return nil, status.Error(codes.Unauthenticated, "token expired")
	}
	return nil, status.Errorf(codes.NotFound, "mission %q not found", req.GetMissionId())
}

// noMaps is a mapping service that holds no map.
type noMaps struct {
	mappingv1.UnimplementedMappingServiceServer
}

func (noMaps) StreamMap(req *mappingv1.StreamMapRequest, _ grpc.ServerStreamingServer[mappingv1.StreamMapResponse]) error {
	return status.Errorf(codes.NotFound, "mission %s has no map: none was allocated, a compensation or teardown released it, or it was evicted", req.GetMissionId())
}

// TestMapOfAnUnknownMission: `slamctl map` of a mission the orchestrator
// does not know says so, and of one whose record tells how its map went
// says that, rather than the mapping service's list of the ways a map
// goes, which stays the answer otherwise, and when the orchestrator cannot
// be reached or refuses the token (saying so).
func TestMapOfAnUnknownMission(t *testing.T) {
	t.Parallel()
	serve := func(register func(*grpc.Server)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		register(srv)
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(srv.Stop)
		return l.Addr().String()
	}
	orch := serve(func(s *grpc.Server) { orchestratorv1.RegisterOrchestratorServiceServer(s, mapNotFoundOrchestrator{}) })
	maps := serve(func(s *grpc.Server) { mappingv1.RegisterMappingServiceServer(s, noMaps{}) })
	for _, tc := range []struct{ addr, mission, want string }{
		{orch, "ghost", `get map: NotFound: mission "ghost" not found`},
		{orch, "done", "get map: NotFound: mission done has no map: none was allocated"},
		// The record tells the cause where it can (found by a review: a
		// torn-down mission's answer listed every way a map goes).
		{orch, "evicted", "get map: NotFound: mission evicted has no map: its map map-1 was evicted, oldest first, to keep the retained maps within the mapping service's --retained-cells"},
		{orch, "torn-down", "get map: NotFound: mission torn-down has no map: it was undone (COMPENSATED: cancelled, torn down or failed), and undoing allocate_map released its map"},
		{orch, "refused", "get map: NotFound: mission refused has no map: allocate_map failed (RESOURCE_EXHAUSTED CAPACITY_EXHAUSTED): none was allocated"},
		{orch, "early", "get map: NotFound: mission early has no map: none is allocated yet (allocate_map RUNNING)"},
		{"127.0.0.1:1", "ghost", "get map: NotFound: mission ghost has no map"},
		{orch, "locked", "has no map: none was allocated, a compensation or teardown released it, or it was evicted (the orchestrator, asked whether the mission exists, answered Unauthenticated: token expired)"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{"--addr", tc.addr, "--mapping-addr", maps, "map", "-o", filepath.Join(t.TempDir(), "m.png"), tc.mission},
			func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("map %s (orchestrator %s): %v, want %q", tc.mission, tc.addr, err, tc.want)
		}
	}
}

// TestUsageErrorsBeforeAnyCall: what a review found slamctl did with
// misplaced names and flags is refused as a usage error before any call:
// a PNG under a .jpg name, a flag after the mission id, a ROS pair under a
// picture's name.
func TestUsageErrorsBeforeAnyCall(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	out := filepath.Join(t.TempDir(), "map.JPG")
	err := run(t.Context(), []string{"--addr", "127.0.0.1:1", "--mapping-addr", "127.0.0.1:1", "map", "-o", out, "m1"},
		func(string) string { return "" }, &stdout, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "name it .png") {
		t.Fatalf("map -o %s: %v, want a usage error saying to name it .png", out, err)
	}
	if _, statErr := os.Stat(out); statErr == nil {
		t.Errorf("%s was written", out)
	}
	// A flag after the mission id is named, with where it goes.
	err = run(t.Context(), []string{"--addr", "127.0.0.1:1", "get", "m1", "--json"}, func(string) string { return "" }, &stdout, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--json after the mission id") || !strings.Contains(err.Error(), "slamctl --json get") {
		t.Fatalf("get m1 --json: %v, want a usage error saying where --json goes", err)
	}
	// --format ros writes a pair under a base name, never a picture's.
	err = run(t.Context(), []string{"--addr", "127.0.0.1:1", "--mapping-addr", "127.0.0.1:1", "map", "--format", "ros", "-o", "merged.png", "m1"},
		func(string) string { return "" }, &stdout, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "give the base name") {
		t.Fatalf("map --format ros -o merged.png: %v, want a usage error asking for the base name", err)
	}
	// Nor to stdout, which holds one stream.
	err = run(t.Context(), []string{"--addr", "127.0.0.1:1", "--mapping-addr", "127.0.0.1:1", "map", "--format", "ros", "-o", "-", "m1"},
		func(string) string { return "" }, &stdout, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "give the base name") {
		t.Fatalf("map --format ros -o -: %v, want a usage error asking for the base name", err)
	}
	// Zero agents, or a stride of 0, is a mistake the API would read as
	// its default (found by a review).
	for _, args := range [][]string{{"start", "--agents", "0"}, {"import", "--carmen", "x.log", "--segments", "0:9", "--stride", "0"}} {
		err = run(t.Context(), append([]string{"--addr", "127.0.0.1:1"}, args...), func(string) string { return "" }, &stdout, &stderr)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "want 1 or more") {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
