package mapstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Charge names one capacity charge: the map of saga SagaID of mission
// MissionID. A mission deleted and started again under its id runs another
// saga, so its map is another charge (see the package's capacity
// accounting).
type Charge struct {
	MissionID, SagaID string
}

// chargeSep joins a charge's ids in the accounting's sorted sets. The API
// allows neither id to contain it (rpcerr.CheckID).
const chargeSep = "/"

// member is the charge's member in the accounting's sorted sets.
func (c Charge) member() string { return c.MissionID + chargeSep + c.SagaID }

// chargeOf parses a member of the accounting's sorted sets. A member
// without a saga (a charge made before charges named their saga) is a
// Charge with an empty SagaID: the map of whichever saga the mission runs.
func chargeOf(member string) Charge {
	m, s, ok := strings.Cut(member, chargeSep)
	if !ok {
		return Charge{MissionID: member}
	}
	return Charge{MissionID: m, SagaID: s}
}

// Owns reports whether what saga sagaID wrote (its map, its barrier mark,
// its saga record) belongs to this charge. An empty id on either side, a
// charge or a map from before maps and charges named their saga, matches
// any saga.
func (c Charge) Owns(sagaID string) bool {
	return c.SagaID == "" || sagaID == "" || c.SagaID == sagaID
}

// String names the charge in errors and logs.
func (c Charge) String() string {
	return fmt.Sprintf("map of mission %s (saga %s)", c.MissionID, c.SagaID)
}

// evictScript deletes a mission's map if it is the map of the charge being
// evicted: the mission may have been deleted and started again since the
// evicting janitor read its state, and the new saga's map must stay.
// KEYS[1] the map; ARGV[1] the charge's saga ("" for a charge of any
// saga). Returns 1 when it deleted the map.
var evictScript = redis.NewScript(`
local s = redis.call('HGET', KEYS[1], 'saga')
if s and s ~= '' and ARGV[1] ~= '' and s ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// QueueEvict queues in p the deletion of the map of c, if the mission's map
// is still that saga's; a map of another saga of the mission is left
// alone (see evictScript). Its answer is 1 when it deleted the map. Drop
// the charge after it has run.
func QueueEvict(ctx context.Context, p redis.Pipeliner, c Charge) *redis.Cmd {
	return evictScript.Eval(ctx, p, []string{Key(c.MissionID)}, c.SagaID)
}
