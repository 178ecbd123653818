package saga

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFinished refuses to delete a saga that an engine still drives
// (Pending, Running or Compensating).
var ErrNotFinished = errors.New("saga not finished")

// ErrIndexLeft says that Delete deleted the saga's keys but could not then
// write its tombstone and drop its mission-index entry (Redis refused the
// second round trip: out of memory, or gone): the deletion stands, and Trim
// drops the entry later; until then Vanished still reports the mission
// gone, from the entry.
var ErrIndexLeft = errors.New("saga deleted; its index entry is left to Trim")

// deleteScript deletes every key of a finished mission, only while its
// record says it is finished. It touches only the mission's own keys (one
// slot); the global index and tombstone are written after it.
//
// KEYS[1] record hash, KEYS[2..] the mission's other keys.
// Returns 0 when the record is missing, the state when it is not terminal
// (nothing deleted), {created} (the record's creation time, unix ms: its
// mission-index score) when deleted.
var deleteScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  return 0
end
if st ~= 'completed' and st ~= 'compensated' and st ~= 'failed' then
  return st
end
local created = redis.call('HGET', KEYS[1], 'created') or ''
redis.call('DEL', unpack(KEYS))
return {created}
`)

// Delete removes a finished (Completed, Compensated or Failed) mission and
// every key it owns now, then drops it from the mission index and leaves a
// tombstone in GoneKey. The index entry is dropped only while it has the
// deleted saga's creation time as its score: a saga created again under
// the key in between has set its own (see claimIndex), and keeps it; its
// tombstone is then stale, and harmless, since a tombstone is read only
// for a key without a record (Vanished). A finished saga's active-index entry is normally
// gone already; one left by a crash is recovery's to drop (a plain ZREM here
// could remove the fresh entry of a saga created again under the same key).
// It returns ErrNotFound when no record exists, an error wrapping
// ErrNotFinished, naming the state, when an engine still drives the saga,
// and one wrapping ErrIndexLeft when the keys are gone but the second round
// trip failed. Delete is idempotent on the index: a retry after a lost
// reply finds the record gone (ErrNotFound) and Trim finishes the index
// entry if the second round trip was lost.
func (s *Store) Delete(ctx context.Context, key string, now time.Time) error {
	reply, err := deleteScript.Run(ctx, s.rdb, s.retention.keys(key)).Result()
	if err != nil {
		return fmt.Errorf("delete saga %s: %w", key, err)
	}
	var created string
	switch v := reply.(type) {
	case int64:
		return fmt.Errorf("delete saga %s: %w", key, ErrNotFound)
	case string:
		return fmt.Errorf("delete saga %s: it is %s: %w", key, v, ErrNotFinished)
	case []any:
		if len(v) == 1 {
			created, _ = v[0].(string)
		}
	default:
		return fmt.Errorf("delete saga %s: unexpected reply %v", key, reply)
	}
	// The keys are gone: a caller that leaves now must not leave the
	// index entry behind for a retention TTL (Trim drops only old ones).
	ctx = context.WithoutCancel(ctx)
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, GoneKey, redis.Z{Score: float64(now.UnixMilli()), Member: key})
		if created != "" { // a record without it is left to Trim
			unindexScript.Eval(ctx, p, []string{MissionsKey}, key, created, "")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("delete saga %s: %w: %w", key, ErrIndexLeft, err)
	}
	return nil
}

// Vanished reports whether mission key existed and its data is gone
// (expired after its retention, or deleted): it is still in the mission
// index (its record expired and Trim has not run since) or has a tombstone
// in GoneKey. Call it after a Load returned ErrNotFound.
func (s *Store) Vanished(ctx context.Context, key string) (bool, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZScore(ctx, GoneKey, key)
		p.ZScore(ctx, MissionsKey, key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("saga %s tombstone: %w", key, err)
	}
	for _, c := range cmds {
		if c.Err() == nil {
			return true, nil
		}
	}
	return false, nil
}

// Tombstoned reports whether mission key has a tombstone in GoneKey: it
// was deleted, or expired and Trim has run since. A record gone without
// one, while its saga ran, was lost by Redis.
func (s *Store) Tombstoned(ctx context.Context, key string) (bool, error) {
	err := s.rdb.ZScore(ctx, GoneKey, key).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("saga %s tombstone: %w", key, err)
	}
	return true, nil
}

// trimBatch is how many index entries one round trip of Trim checks.
const trimBatch = 500

// Trim is the janitor of the global mission index; every orchestrator runs it
// periodically, and any number may run it at once (every write is
// idempotent). It drops from MissionsKey the missions created more than one
// retention TTL before now whose record is gone (expired), leaving a
// tombstone in GoneKey for each, and drops tombstones older than one
// retention TTL. It checks at most limit index entries per call, resuming
// where the previous call of this Store stopped and starting over from the
// oldest once it reached the end: failed missions never expire and stay
// indexed, so restarting from the oldest on every call would let more than
// limit of them hide every expired mission behind them for good. It returns
// how many missions it dropped. Without a retention TTL it does nothing.
func (s *Store) Trim(ctx context.Context, now time.Time, limit int) (int, error) {
	ttl := s.retention.TTL
	if ttl <= 0 {
		return 0, nil
	}
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	cutoff := now.Add(-ttl).UnixMilli()
	if err := s.rdb.ZRemRangeByScore(ctx, GoneKey, "-inf", "("+strconv.FormatInt(cutoff, 10)).Err(); err != nil {
		return 0, fmt.Errorf("trim tombstones: %w", err)
	}
	// Another orchestrator's trim shifts the entries under offset: an entry
	// skipped that way is checked after the next wrap.
	dropped, offset := 0, s.trimOffset
	s.trimOffset = 0
	for checked := 0; checked < limit; {
		entries, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: MissionsKey, Start: "-inf", Stop: "(" + strconv.FormatInt(cutoff, 10), ByScore: true,
			Offset: int64(offset), Count: int64(min(trimBatch, limit-checked)),
		}).Result()
		if err != nil {
			return dropped, fmt.Errorf("trim mission index: %w", err)
		}
		if len(entries) == 0 {
			return dropped, nil
		}
		checked += len(entries)
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, e := range entries {
				p.Exists(ctx, RecordKey(e.Member.(string)))
			}
			return nil
		})
		if err != nil {
			return dropped, fmt.Errorf("trim mission index: %w", err)
		}
		var gone []redis.Z
		for i, c := range cmds {
			if c.(*redis.IntCmd).Val() == 0 {
				gone = append(gone, entries[i])
			}
		}
		if len(gone) > 0 {
			// Compare-and-delete on the score read: a saga created again
			// under the key since has set its own (see claimIndex).
			if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, e := range gone {
					p.ZAddNX(ctx, GoneKey, redis.Z{Score: float64(now.UnixMilli()), Member: e.Member})
					unindexScript.Eval(ctx, p, []string{MissionsKey}, e.Member, int64(e.Score), "")
				}
				return nil
			}); err != nil {
				return dropped, fmt.Errorf("trim mission index: %w", err)
			}
			dropped += len(gone)
		}
		// The entries kept (records still there) stay ahead of the next page.
		offset += len(entries) - len(gone)
	}
	s.trimOffset = offset
	return dropped, nil
}
