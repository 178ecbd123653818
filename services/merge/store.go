package merge

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// noMapError says the mission has no map, or not the one the request names.
type noMapError struct{ missionID, mapID string }

func (e *noMapError) Error() string {
	return fmt.Sprintf("mission %s has no map %s", e.missionID, e.mapID)
}

// baseMap is the current version of a mission map, the base of a merge.
type baseMap struct {
	version uint32
	grid    *grid.Grid
	// stated is the meta field the map must hold (mapstore.ExpectMap) when
	// the base was built from a request's map_meta rather than read; nil
	// when read.
	stated []byte
}

// loadCurrent reads and decodes the current version of the mission's map
// mapID; a *noMapError when the mission has no map or another one.
func loadCurrent(ctx context.Context, rdb redis.Cmdable, missionID, mapID string) (*baseMap, error) {
	m, err := mapstore.Load(ctx, rdb, missionID, 0)
	return current(m, err, missionID, mapID)
}

// baseOf is loadCurrent on the answer of a read queued with
// mapstore.QueueLoad(…, 0).
func baseOf(cmd *redis.Cmd, missionID, mapID string) (*baseMap, error) {
	m, err := mapstore.LoadOf(cmd, missionID)
	return current(m, err, missionID, mapID)
}

// current decodes a current map as loadCurrent returns it.
func current(m *mapstore.Map, err error, missionID, mapID string) (*baseMap, error) {
	switch {
	case errors.Is(err, mapstore.ErrNoMap):
		return nil, &noMapError{missionID: missionID, mapID: mapID}
	case err != nil:
		return nil, err
	case m.ID != mapID:
		return nil, &noMapError{missionID: missionID, mapID: mapID}
	}
	g, err := m.Grid()
	if err != nil {
		return nil, err
	}
	return &baseMap{version: m.Version, grid: g}, nil
}
