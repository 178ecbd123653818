// Package missionid makes the mission ids the orchestrator generates for a
// StartMission without one, and slamctl for the starts it may have to
// retry: a retried start with the same id is the same mission
// (mission_id is StartMission's idempotency key).
package missionid

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"
)

// New returns a fresh mission id, "m-" + the creation time in milliseconds
// (base 36, so that ids made by one process sort by age when read by a
// human) + "-" + 64 random bits in hex (so concurrent makers never
// collide); 30 characters, within the API's [A-Za-z0-9_.-]{1,64}.
// crypto/rand.Read never fails since Go 1.24, so there is no error to
// return.
func New(now time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "m-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}
