// Package missionkeys names every Redis key a mission owns, so that whoever
// ends a mission — the orchestrator's terminal write, which sets their
// retention, and DeleteMission — reaches all of them. Each key carries the
// mission's hash tag, slammesh:{<mission>}:…, so they share one Redis
// Cluster slot and one script may touch them all (docs/architecture.md,
// "Redis keys").
//
// A service that adds a per-mission key adds it here; the orchestrator's
// retention tests scan the whole keyspace for the mission's tag and fail on
// any key this list misses.
package missionkeys

import (
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
)

// Localization names the hash of a mission's agent poses (agent_id ->
// AgentPose), written by the localization service.
func Localization(missionID string) string { return "slammesh:{" + missionID + "}:localization" }

// DeadLetter names the dead-letter stream a consumer-group reader of the
// mission's event stream writes (progress: stream + ":dlq").
func DeadLetter(missionID string) string { return progress.MissionStream(missionID) + ":dlq" }

// All returns the keys of mission missionID other than its saga record
// (which internal/saga names itself): its event stream and the stream's
// dead letters, the barrier mark of each of steps and the effects counter,
// its map and its poses.
func All(missionID string, steps []string) []string {
	keys := make([]string, 0, 6+len(steps))
	keys = append(keys,
		progress.MissionStream(missionID),
		DeadLetter(missionID),
		barrier.EffectsKey(missionID),
		mapstore.Key(missionID),
		Localization(missionID),
	)
	for _, s := range steps {
		keys = append(keys, barrier.Key(missionID, s))
	}
	return keys
}
