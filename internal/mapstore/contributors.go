package mapstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// A version's contributor layer (typesv1.ContributorLayer: which agent
// decided each cell) is a field of the map hash beside the version's cells,
// not a key of its own: it is written in the merge's barrier transaction
// with the version (AddVersion, AddContributors), deleted with it
// (DeleteVersion, Delete), and expires or is evicted with the map, so it
// needs no owner of its own. It costs one byte per cell per merged version
// on top of the version's own byte; the capacity budget counts cells of a
// map's geometry, not bytes, and does not charge it.

// contributorsField names the field holding version v's contributor layer.
func contributorsField(v uint32) string { return "agents:v" + strconv.FormatUint(uint64(v), 10) }

// EncodeContributors encodes the contributor layer of a version: agentIDs
// in the merge's order and one byte per cell (0: no agent, k:
// agentIDs[k-1]). Encode it before the transaction that stores it, whose
// callback may run more than once and should only queue writes.
func EncodeContributors(agentIDs []string, cells []uint8) ([]byte, error) {
	b, err := proto.Marshal(&typesv1.ContributorLayer{AgentIds: agentIDs, Cells: cells})
	if err != nil {
		return nil, fmt.Errorf("mapstore: encode contributors: %w", err)
	}
	return b, nil
}

// AddContributors queues the write that stores layer (EncodeContributors)
// as the contributor layer of version v of the mission's map; queue it in
// the transaction of the AddVersion of v.
func AddContributors(ctx context.Context, p redis.Pipeliner, missionID string, v uint32, layer []byte) {
	p.HSet(ctx, Key(missionID), contributorsField(v), layer)
}

// LoadContributors reads the contributor layer of version v of the
// mission's map; nil and no error when that version has none (version 1,
// a version merged before layers were stored, or one deleted since).
func LoadContributors(ctx context.Context, r redis.Cmdable, missionID string, v uint32) (*typesv1.ContributorLayer, error) {
	raw, err := r.HGet(ctx, Key(missionID), contributorsField(v)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read contributors of mission %s v%d: %w", missionID, v, err)
	}
	layer := &typesv1.ContributorLayer{}
	if err := proto.Unmarshal(raw, layer); err != nil {
		return nil, fmt.Errorf("contributors of mission %s v%d: %w", missionID, v, err)
	}
	return layer, nil
}
