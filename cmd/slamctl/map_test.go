package main

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// `slamctl map` fetches the largest map the mesh allows: the mapping
// service's whole default budget (16 M cells, a 200 m square at 5 cm),
// over gRPC's default 4 MiB receive limit, through StreamMap. Memory-heavy
// (the map is held by Redis, the service and the client): the one test
// that allocates it.
func TestMapFetchesFullBudgetMap(t *testing.T) {
	e := steptest.Start(t, steptest.Service{
		Name:                mapping.ServiceName,
		Step:                mapping.Step,
		ActionMethods:       mapping.ActionMethods,
		CompensationMethods: mapping.CompensationMethods,
		New: func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
			return mapping.NewServer(mapping.Config{}, rdb, b, log), nil
		},
	})
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
}
