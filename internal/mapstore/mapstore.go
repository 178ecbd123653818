// Package mapstore is the one place that knows how a mission map is laid out
// in Redis (docs/architecture.md):
//
//	slammesh:{<mission>}:map  map_id   map-<uuid>
//	                          saga     the saga that allocated it (absent
//	                                   in maps from before it was written)
//	                          meta     GridMeta proto bytes
//	                          cells    cell count (every version's)
//	                          current  the current version
//	                          v<N>     int8 cells of version N; empty:
//	                                   every cell unknown (the blank
//	                                   version 1 Create writes)
//	                          agents:v<N>  ContributorLayer proto bytes of
//	                                   version N: which agent decided each cell
//	                                   (written by the merge that wrote v<N>)
//
// The mapping service creates the map with version 1 and deletes it, the
// merge service adds and removes versions, and localization reads its
// geometry. Writes are queued into the caller's redis.Pipeliner, because
// every one of them must commit in the caller's barrier transaction together
// with its mark (barrier.Tx.Write), which replays them in its script. Reads
// go through a redis.Cmdable; a plan derived from what it read states what
// must still hold at its commit with ExpectHead, which the barrier's script
// checks, so that the commit fails if the map changed in between.
//
// The mapping service's capacity accounting (capacity.go) lives here too:
// the budgets count the maps this package stores.
package mapstore

import (
	"bytes"
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

// Fields of the map hash besides the versions, v<N>.
const (
	fieldMapID   = "map_id"
	fieldSaga    = "saga"
	fieldMeta    = "meta"
	fieldCells   = "cells"
	fieldCurrent = "current"
)

// Key names the mission map hash; the braces are the mission's Redis Cluster
// hash tag.
func Key(missionID string) string { return "slammesh:{" + missionID + "}:map" }

// versionField names the field holding map version v.
func versionField(v uint32) string { return "v" + strconv.FormatUint(uint64(v), 10) }

// ErrNoMap says the mission has no map (for ReadMeta: or not the one asked
// for).
var ErrNoMap = errors.New("mapstore: no such map")

// Blank is a new map encoded for Create: its geometry, and version 1 with
// every cell unknown. Encode it before the transaction that creates the map,
// whose callback may run more than once and should only queue writes.
type Blank struct {
	meta  []byte
	cells int64
}

// NewBlank encodes a map of geometry meta whose version 1 is all unknown.
func NewBlank(meta grid.Meta) (*Blank, error) {
	b, err := EncodeMeta(meta)
	if err != nil {
		return nil, err
	}
	return &Blank{meta: b, cells: meta.Cells()}, nil
}

// EncodeMeta encodes geometry meta as Create stores it in the meta field,
// for ExpectMap.
func EncodeMeta(meta grid.Meta) ([]byte, error) {
	b, err := proto.Marshal(slamproto.MetaToProto(meta))
	if err != nil {
		return nil, fmt.Errorf("mapstore: encode meta: %w", err)
	}
	return b, nil
}

// Create queues the writes that make b the mission's map mapID, allocated
// by saga sagaID, at version 1. Version 1 is stored empty, which Load reads
// as every cell unknown: a map is allocated without moving (or keeping) a
// byte per cell that says nothing, and a merge onto it reads none.
func Create(ctx context.Context, p redis.Pipeliner, missionID, sagaID, mapID string, b *Blank) {
	p.HSet(ctx, Key(missionID),
		fieldMapID, mapID,
		fieldSaga, sagaID,
		fieldMeta, b.meta,
		fieldCells, b.cells,
		fieldCurrent, 1,
		versionField(1), "")
}

// AddVersion queues the writes that store cells (int8 cells as bytes, see
// slamproto.Int8Bytes) as version v of the mission's map and make it current.
func AddVersion(ctx context.Context, p redis.Pipeliner, missionID string, v uint32, cells []byte) {
	p.HSet(ctx, Key(missionID), versionField(v), cells, fieldCurrent, v)
}

// DeleteVersion queues the deletion of version v of the mission's map and
// of its contributor layer; it leaves current alone (see SetCurrent).
func DeleteVersion(ctx context.Context, p redis.Pipeliner, missionID string, v uint32) {
	p.HDel(ctx, Key(missionID), versionField(v), contributorsField(v))
}

// SetCurrent queues the write that makes v the current version of the
// mission's map.
func SetCurrent(ctx context.Context, p redis.Pipeliner, missionID string, v uint32) {
	p.HSet(ctx, Key(missionID), fieldCurrent, v)
}

// Delete queues the deletion of the mission's map, every version of it.
func Delete(ctx context.Context, p redis.Pipeliner, missionID string) {
	p.Del(ctx, Key(missionID))
}

// QueueOwner reads, or queues in a pipeline r, which saga allocated the
// mission's map, for OwnerOf.
func QueueOwner(ctx context.Context, r redis.Cmdable, missionID string) *redis.SliceCmd {
	return r.HMGet(ctx, Key(missionID), fieldMapID, fieldSaga)
}

// OwnerOf decodes QueueOwner's read: whether the mission has a map, and
// the saga that allocated it ("" for a map from before maps named their
// saga; see Charge.Owns).
func OwnerOf(cmd *redis.SliceCmd) (sagaID string, exists bool, err error) {
	v, err := cmd.Result()
	if err != nil {
		return "", false, fmt.Errorf("read the owner of a map: %w", err)
	}
	if len(v) != 2 || v[0] == nil {
		return "", false, nil
	}
	sagaID, _ = v[1].(string)
	return sagaID, true, nil
}

// Expecter is the part of a barrier plan (barrier.Tx) that states
// preconditions.
type Expecter interface {
	Expect(key, field, value string)
	ExpectMissing(key, field string)
}

// ExpectHead makes the commit of x conditional on the mission's map being
// map mapID at current version current, as ReadHead returned them (mapID
// "": on the mission having no map).
func ExpectHead(x Expecter, missionID, mapID string, current uint32) {
	if mapID == "" {
		x.ExpectMissing(Key(missionID), fieldMapID)
		return
	}
	x.Expect(Key(missionID), fieldMapID, mapID)
	x.Expect(Key(missionID), fieldCurrent, strconv.FormatUint(uint64(current), 10))
}

// ExpectMap makes the commit of x conditional on the mission's map being
// map mapID of geometry meta (EncodeMeta's bytes): for a plan built on
// what the caller was told of the map (a request's map_meta) rather than on
// what it read.
func ExpectMap(x Expecter, missionID, mapID string, meta []byte) {
	x.Expect(Key(missionID), fieldMapID, mapID)
	x.Expect(Key(missionID), fieldMeta, string(meta))
}

// head is the map hash's fields other than the versions, as ReadHead and
// ReadMeta scan them from HMGET; a missing field stays zero.
type head struct {
	MapID   string `redis:"map_id"`
	Meta    []byte `redis:"meta"`
	Current uint32 `redis:"current"`
}

// ReadHead reads the id and current version of the mission's map, without
// any version's cells; mapID is "" when the mission has no map.
func ReadHead(ctx context.Context, r redis.Cmdable, missionID string) (mapID string, current uint32, err error) {
	var h head
	if err := r.HMGet(ctx, Key(missionID), fieldMapID, fieldCurrent).Scan(&h); err != nil {
		return "", 0, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	switch {
	case h.MapID == "":
		return "", 0, nil
	case h.Current == 0: // versions start at 1: the field is missing
		return "", 0, fmt.Errorf("map of mission %s: no current version", missionID)
	}
	return h.MapID, h.Current, nil
}

// ReadMeta reads the geometry of the mission's map mapID, without any
// version's cells. It returns ErrNoMap when the mission has no map or
// another one, and decodes nothing then.
func ReadMeta(ctx context.Context, r redis.Cmdable, missionID, mapID string) (grid.Meta, error) {
	return MetaOf(QueueMeta(ctx, r, missionID), missionID, mapID)
}

// QueueMeta queues (in a pipeline) or sends the read of the mission map's
// id and geometry, for MetaOf.
func QueueMeta(ctx context.Context, r redis.Cmdable, missionID string) *redis.SliceCmd {
	return r.HMGet(ctx, Key(missionID), fieldMapID, fieldMeta)
}

// MetaOf decodes QueueMeta's answer as ReadMeta does.
func MetaOf(cmd *redis.SliceCmd, missionID, mapID string) (grid.Meta, error) {
	var h head
	if err := cmd.Scan(&h); err != nil {
		return grid.Meta{}, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	if h.MapID == "" || h.MapID != mapID {
		return grid.Meta{}, fmt.Errorf("mission %s, map %s: %w", missionID, mapID, ErrNoMap)
	}
	pm, err := decodeMeta(h.Meta)
	if err != nil {
		return grid.Meta{}, fmt.Errorf("map %s meta: %w", mapID, err)
	}
	meta, err := slamproto.MetaFromProto(pm)
	if err != nil {
		return grid.Meta{}, fmt.Errorf("map %s meta: %w", mapID, err)
	}
	return meta, nil
}

// Map is one version of a mission map as stored.
type Map struct {
	// ID is the map's id, map-<uuid>.
	ID string
	// Meta is the geometry every version shares.
	Meta *typesv1.GridMeta
	// Current is the current version; Version the one read.
	Current, Version uint32
	// Cells are the int8 cells of Version as bytes (every one -1, unknown,
	// for a version stored empty); nil when the map has no such version.
	Cells []byte
	// blank marks a version stored empty, whose Grid is all unknown.
	blank bool
}

// loadScript reads a map version in one round trip: the version to read is
// only known after reading current when the caller asks for "the current
// one" (ARGV[1] == 0). It returns false when the map does not exist, else
// {map_id, meta, current, version} followed by the version's cells when the
// map has that version: all strings, so the reply scans as a string slice.
var loadScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'map_id', 'meta', 'current')
if not h[1] then return false end
local v = tonumber(ARGV[1])
if v == 0 then v = tonumber(h[3]) end
local data = redis.call('HGET', KEYS[1], 'v' .. v)
if data then return {h[1], h[2], h[3], tostring(v), data} end
return {h[1], h[2], h[3], tostring(v)}
`)

// Load reads version (0: the current one) of the mission's map. It returns
// ErrNoMap when the mission has no map; a version the map does not have is a
// Map with nil Cells.
func Load(ctx context.Context, r redis.Cmdable, missionID string, version uint32) (*Map, error) {
	return LoadOf(loadScript.Run(ctx, r, []string{Key(missionID)}, version), missionID)
}

// QueueLoad queues Load's read in pipe (EVAL: a pipeline cannot fall back
// on NOSCRIPT), for LoadOf once pipe was executed.
func QueueLoad(ctx context.Context, pipe redis.Pipeliner, missionID string, version uint32) *redis.Cmd {
	return loadScript.Eval(ctx, pipe, []string{Key(missionID)}, version)
}

// LoadOf decodes the answer of Load's read as Load does.
func LoadOf(cmd *redis.Cmd, missionID string) (*Map, error) {
	res, err := cmd.StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("mission %s: %w", missionID, ErrNoMap)
	}
	if err != nil {
		return nil, fmt.Errorf("read map of mission %s: %w", missionID, err)
	}
	if len(res) != 4 && len(res) != 5 {
		// Redis ends a Lua array at its first nil: a field is missing.
		return nil, fmt.Errorf("read map of mission %s: %d fields", missionID, len(res))
	}
	m := &Map{ID: res[0]}
	if m.Meta, err = decodeMeta([]byte(res[1])); err != nil {
		return nil, fmt.Errorf("map of mission %s: meta: %w", missionID, err)
	}
	if m.Current, err = parseVersion(res[2]); err != nil {
		return nil, fmt.Errorf("map of mission %s: current: %w", missionID, err)
	}
	if m.Version, err = parseVersion(res[3]); err != nil {
		return nil, fmt.Errorf("map of mission %s: version: %w", missionID, err)
	}
	if len(res) == 5 {
		if m.Cells, m.blank = []byte(res[4]), res[4] == ""; m.blank {
			if m.Cells, err = unknownCells(m.Meta); err != nil {
				return nil, fmt.Errorf("map of mission %s: meta: %w", missionID, err)
			}
		}
	}
	return m, nil
}

// unknownCells is a blank version's cells: one int8 -1 (unknown) per cell of
// the geometry.
func unknownCells(pm *typesv1.GridMeta) ([]byte, error) {
	meta, err := slamproto.MetaFromProto(pm)
	if err != nil {
		return nil, err
	}
	return bytes.Repeat([]byte{0xff}, int(meta.Cells())), nil // Validate bounds it by grid.MaxCells
}

// Grid decodes the version m holds; it fails when the map has no such
// version.
func (m *Map) Grid() (*grid.Grid, error) {
	if m.Cells == nil {
		return nil, fmt.Errorf("map %s: version %d missing", m.ID, m.Version)
	}
	meta, err := slamproto.MetaFromProto(m.Meta)
	if err != nil {
		return nil, fmt.Errorf("map %s: meta: %w", m.ID, err)
	}
	if m.blank {
		return grid.New(meta) // log-odds 0: unknown
	}
	g, err := grid.FromInt8(meta, slamproto.BytesInt8(m.Cells))
	if err != nil {
		return nil, fmt.Errorf("map %s v%d: %w", m.ID, m.Version, err)
	}
	return g, nil
}

// decodeMeta decodes the meta field.
func decodeMeta(raw []byte) (*typesv1.GridMeta, error) {
	pm := &typesv1.GridMeta{}
	if err := proto.Unmarshal(raw, pm); err != nil {
		return nil, err
	}
	return pm, nil
}

// parseVersion parses a version number as Redis returns it.
func parseVersion(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}
