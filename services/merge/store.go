package merge

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// The mission map hash of docs/architecture.md, allocated by the mapping
// service with version 1; this service adds versions:
//
//	slammesh:{<mission>}:map  map_id, meta (GridMeta proto), cells,
//	                          current (version), v<N> (int8 cells of version N)
const (
	fieldMapID   = "map_id"
	fieldCurrent = "current"
)

// mapKey names the mission map hash; the braces are the mission's Redis
// Cluster hash tag.
func mapKey(missionID string) string { return "slammesh:{" + missionID + "}:map" }

// versionField names the field holding map version v.
func versionField(v uint32) string { return "v" + strconv.FormatUint(uint64(v), 10) }

// currentMapScript reads the current version of a map in one round trip,
// since which field to read is known only after reading current. It returns
// false when the map does not exist, else {map_id, meta, current, cells}.
var currentMapScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'map_id', 'meta', 'current')
if not h[1] then return false end
return {h[1], h[2], h[3], redis.call('HGET', KEYS[1], 'v' .. h[3])}
`)

// noMapError says the mission has no map, or not the one the request names.
type noMapError struct{ missionID, mapID string }

func (e *noMapError) Error() string {
	return fmt.Sprintf("mission %s has no map %s", e.missionID, e.mapID)
}

// baseMap is the current version of a mission map, the base of a merge.
type baseMap struct {
	version uint32
	grid    *grid.Grid
}

// loadCurrent reads and decodes the current version of the mission's map
// mapID; errNoMap when the mission has no map or another one.
func loadCurrent(ctx context.Context, rdb redis.Scripter, missionID, mapID string) (*baseMap, error) {
	res, err := currentMapScript.Run(ctx, rdb, []string{mapKey(missionID)}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, &noMapError{missionID: missionID, mapID: mapID}
	}
	if err != nil {
		return nil, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	if len(res) != 4 {
		return nil, fmt.Errorf("read map of mission %s: %d fields", missionID, len(res))
	}
	str := func(v any) string { s, _ := v.(string); return s }
	if str(res[0]) != mapID {
		return nil, &noMapError{missionID: missionID, mapID: mapID}
	}
	pm := &typesv1.GridMeta{}
	if err := proto.Unmarshal([]byte(str(res[1])), pm); err != nil {
		return nil, fmt.Errorf("map %s: meta: %w", mapID, err)
	}
	meta, err := slamproto.MetaFromProto(pm)
	if err != nil {
		return nil, fmt.Errorf("map %s: meta: %w", mapID, err)
	}
	cur, err := strconv.ParseUint(str(res[2]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("map %s: current: %w", mapID, err)
	}
	cells, ok := res[3].(string)
	if !ok {
		return nil, fmt.Errorf("map %s: current version %d missing", mapID, cur)
	}
	g, err := grid.FromInt8(meta, slamproto.BytesInt8([]byte(cells)))
	if err != nil {
		return nil, fmt.Errorf("map %s v%d: %w", mapID, cur, err)
	}
	return &baseMap{version: uint32(cur), grid: g}, nil
}

// readHead reads map_id and current through a barrier transaction's reader
// after WATCHing the map, so that the commit fails if either changes.
func readHead(ctx context.Context, r redis.Cmdable, missionID string) (mapID string, current uint32, err error) {
	vals, err := r.HMGet(ctx, mapKey(missionID), fieldMapID, fieldCurrent).Result()
	if err != nil {
		return "", 0, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	mapID, _ = vals[0].(string)
	if mapID == "" {
		return "", 0, nil
	}
	s, _ := vals[1].(string)
	cur, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("map of mission %s: current: %w", missionID, err)
	}
	return mapID, uint32(cur), nil
}
