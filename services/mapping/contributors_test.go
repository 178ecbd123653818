package mapping_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// TestGetMapContributors: GetMap returns a version's contributor layer only
// when asked (old clients get the reply they always got), and none for a
// version without one (the empty version 1).
func TestGetMapContributors(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-contrib"
	resp, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: office()})
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 as the merge service writes it: cells and layer together.
	n := int(resp.GetCells())
	cells := bytes.Repeat([]byte{0}, n)
	layerCells := bytes.Repeat([]byte{1}, n)
	layerCells[n-1] = 2
	ids := []string{"agent-a", "agent-b"}
	layer, err := mapstore.EncodeContributors(ids, layerCells)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		mapstore.AddVersion(ctx, p, m, 2, cells)
		mapstore.AddContributors(ctx, p, m, 2, layer)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	got, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m, IncludeContributors: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := got.GetContributors(); got.GetVersion() != 2 || !slices.Equal(c.GetAgentIds(), ids) || !bytes.Equal(c.GetCells(), layerCells) {
		t.Errorf("GetMap with contributors: v%d, agents %q, %d layer cells", got.GetVersion(), c.GetAgentIds(), len(c.GetCells()))
	}
	if got, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m}); err != nil || got.GetContributors() != nil {
		t.Errorf("GetMap without include_contributors = %v layer, %v; want none", got.GetContributors() != nil, err)
	}
	if got, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m, Version: 1, IncludeContributors: true}); err != nil || got.GetContributors() != nil {
		t.Errorf("GetMap v1 with include_contributors = %v layer, %v; want none", got.GetContributors() != nil, err)
	}
}
