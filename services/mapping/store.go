package mapping

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// The mission map hash of docs/architecture.md, shared with the merge
// service (which adds versions) and read by localization (for the meta):
//
//	slammesh:{<mission>}:map  map_id, meta (GridMeta proto), cells,
//	                          current (version), v<N> (int8 cells of version N)
//
// and the budget every allocation charges:
//
//	slammesh:mapping:capacity  cells in use across all missions
const (
	capacityKey  = "slammesh:mapping:capacity"
	fieldMapID   = "map_id"
	fieldMeta    = "meta"
	fieldCells   = "cells"
	fieldCurrent = "current"
)

// mapKey names the mission map hash; the braces are the mission's Redis
// Cluster hash tag.
func mapKey(missionID string) string { return "slammesh:{" + missionID + "}:map" }

// versionField names the field holding map version v.
func versionField(v uint32) string { return "v" + strconv.FormatUint(uint64(v), 10) }

// getMapScript reads a map version in one round trip: the version to read is
// only known after reading current when the caller asks for "the current
// one" (ARGV[1] == 0). It returns false when the map does not exist, else
// {map_id, meta, current, version, cells-or-false}.
var getMapScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'map_id', 'meta', 'current')
if not h[1] then return false end
local v = tonumber(ARGV[1])
if v == 0 then v = tonumber(h[3]) end
local data = redis.call('HGET', KEYS[1], 'v' .. v)
return {h[1], h[2], h[3], tostring(v), data}
`)

// storedMap is one version of a mission map as read from Redis.
type storedMap struct {
	mapID   string
	meta    *typesv1.GridMeta
	current uint32
	version uint32
	// cells is nil when the version does not exist.
	cells []byte
}

// errNoMap says the mission has no map hash.
var errNoMap = errors.New("mapping: no map")

// loadMap reads version (0: the current one) of the mission's map. It
// returns errNoMap when there is no map; a missing version is a storedMap
// with nil cells.
func loadMap(ctx context.Context, rdb redis.Scripter, missionID string, version uint32) (*storedMap, error) {
	res, err := getMapScript.Run(ctx, rdb, []string{mapKey(missionID)}, version).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, errNoMap
	}
	if err != nil {
		return nil, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	if len(res) != 5 {
		return nil, fmt.Errorf("read map of mission %s: %d fields", missionID, len(res))
	}
	str := func(v any) string { s, _ := v.(string); return s }
	m := &storedMap{mapID: str(res[0]), meta: &typesv1.GridMeta{}}
	if err := proto.Unmarshal([]byte(str(res[1])), m.meta); err != nil {
		return nil, fmt.Errorf("map of mission %s: meta: %w", missionID, err)
	}
	cur, err := strconv.ParseUint(str(res[2]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("map of mission %s: current: %w", missionID, err)
	}
	ver, err := strconv.ParseUint(str(res[3]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("map of mission %s: version: %w", missionID, err)
	}
	m.current, m.version = uint32(cur), uint32(ver)
	if s, ok := res[4].(string); ok {
		m.cells = []byte(s)
	}
	return m, nil
}
