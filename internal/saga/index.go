package saga

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ActiveShards is the number of shards of the active-lease index. Every
// replica must use the same: a mission's shard is fnv32a(mission) mod
// ActiveShards, and recovery scans them all.
const ActiveShards = 16

// ActiveKey returns the key of the active-lease index shard of mission key:
// a sorted set of mission keys scored by where recovery looks next (unix ms,
// normally the expiry of the saga's lease). The hash tag {sagas-<k>} puts
// each shard in a slot of its own, spread over a Redis Cluster's masters.
func ActiveKey(key string) string { return activeShardKey(shardOf(key)) }

// ActiveShardKeys returns the keys of every active-lease index shard.
func ActiveShardKeys() []string {
	keys := make([]string, ActiveShards)
	for k := range keys {
		keys[k] = activeShardKey(k)
	}
	return keys
}

func activeShardKey(k int) string { return "slammesh:{sagas-" + strconv.Itoa(k) + "}:active" }

func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % ActiveShards)
}

// indexEntry is an entry of the active-lease index as recovery found it.
type indexEntry struct {
	key   string
	score int64
}

// index keeps what this process knows of the active-lease index: the score
// it last wrote for each saga it holds (so that the write ending the saga
// removes exactly that entry, and no fresher one another engine wrote for a
// reopened saga), and the removals not yet sent: those that failed wait for
// the store's next round trip or the next lease renewal.
type index struct {
	mu      sync.Mutex
	scores  map[string]int64
	pending []indexEntry
}

func (x *index) wrote(key string, score int64) {
	x.mu.Lock()
	if x.scores == nil {
		x.scores = make(map[string]int64)
	}
	x.scores[key] = score
	x.mu.Unlock()
}

// rewrote records a score written for key only if this process holds it
// (knows its score): a write for a saga driven elsewhere must not leave an
// entry here that nothing would ever remove.
func (x *index) rewrote(key string, score int64) {
	x.mu.Lock()
	if _, ok := x.scores[key]; ok {
		x.scores[key] = score
	}
	x.mu.Unlock()
}

// score returns the score this process wrote for key, if it knows it.
func (x *index) score(key string) (int64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	v, ok := x.scores[key]
	return v, ok
}

// forget drops what is known of key (a lease lost to another engine).
func (x *index) forget(key string) {
	x.mu.Lock()
	delete(x.scores, key)
	x.mu.Unlock()
}

// ended queues the removal of key's entry, when its score is known; an
// unknown one is left to recovery, which drops entries of finished sagas.
func (x *index) ended(key string) {
	x.mu.Lock()
	if s, ok := x.scores[key]; ok {
		delete(x.scores, key)
		x.pending = append(x.pending, indexEntry{key: key, score: s})
	}
	x.mu.Unlock()
}

// queue queues the removal of key's entry if it still has score, for an
// entry this process wrote but does not hold (see Store.unindexRepeat).
func (x *index) queue(key string, score int64) {
	x.mu.Lock()
	x.pending = append(x.pending, indexEntry{key: key, score: score})
	x.mu.Unlock()
}

// take moves the queued removals into pipe; call done once the pipeline
// ran: removals that failed are queued again.
func (x *index) take(ctx context.Context, rdb redis.UniversalClient, pipe redis.Pipeliner) (done func()) {
	x.mu.Lock()
	batch := x.pending
	x.pending = nil
	x.mu.Unlock()
	if len(batch) == 0 {
		return func() {}
	}
	cmds := make([]*redis.Cmd, len(batch))
	for i, e := range batch {
		cmds[i] = unindexScript.EvalSha(ctx, pipe, []string{ActiveKey(e.key)}, e.key, e.score, "")
	}
	return func() {
		var failed []indexEntry
		noScript := false
		for i, c := range cmds {
			if c.Err() != nil {
				failed = append(failed, batch[i])
				noScript = noScript || isNoScript(c.Err())
			}
		}
		if noScript {
			// A script cache emptied by a restart or failover: send them
			// again now, each with go-redis's NOSCRIPT fallback.
			retry := failed
			failed = nil
			for _, e := range retry {
				if unindexScript.Run(ctx, rdb, []string{ActiveKey(e.key)}, e.key, e.score, "").Err() != nil {
					failed = append(failed, e)
				}
			}
		}
		if len(failed) > 0 {
			x.mu.Lock()
			x.pending = append(failed, x.pending...)
			x.mu.Unlock()
		}
	}
}

// isNoScript reports whether err is Redis's NOSCRIPT (a script cache
// emptied by a restart or a failover).
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// hint returns the index score of a lease taken at now: now + the lease
// TTL, in unix ms of this process's clock. It is only where recovery looks:
// the lease itself is the record's, on the Redis server's clock, so a clock
// of this process ahead of Redis's delays recovery by the difference and
// one behind makes recovery look early (and re-score the entry).
func (s *Store) hint(now time.Time) int64 { return now.UnixMilli() + s.leaseMillis() }

// deadline is the latest Redis server time at which a script may create or
// reopen a saga whose index entry was written with score hint: one lease
// TTL later. Recovery drops an entry whose record is missing or finished
// only two lease TTLs past its score (dropGrace), so a create or reopen
// running late is refused rather than left unindexed, with a clock skew
// between Redis nodes of up to one TTL.
func (s *Store) deadline(hint int64) int64 { return hint + s.leaseMillis() }

// dropGrace is how long past its score recovery leaves the index entry of a
// missing or finished saga before dropping it (see deadline).
func (s *Store) dropGrace() int64 { return 2 * s.leaseMillis() }

// ErrLate means a create or reopen reached Redis more than a lease TTL
// after it indexed the saga (its process was paused, or the clocks of the
// orchestrators and Redis are more than a lease TTL apart), and was
// refused: nothing of it was written but the index entries, which the
// store removes. A retry starts afresh.
var ErrLate = errors.New("saga index entry deadline passed before the write (process paused, or clocks more than a lease TTL apart)")

func lateErr(err error) error {
	if err != nil && strings.Contains(err.Error(), errLate) {
		return errors.Join(ErrLate, err)
	}
	return err
}

// legacyActiveKey is the one active-lease set of slammesh before the index
// was sharded (its score was the lease expiry; the records had no lease).
const legacyActiveKey = "slammesh:sagas:active"

// migrateLegacyIndex moves the entries of legacyActiveKey, if any, into
// their shards (same score), then drops them from it: the sagas an
// orchestrator of the earlier version left unfinished are recovered like
// any other (a record without a lease field counts as expired once its
// entry's score has passed). Idempotent; every engine runs it when its
// recovery starts.
func (s *Store) migrateLegacyIndex(ctx context.Context) (int, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, legacyActiveKey, 0, -1).Result()
	if err != nil || len(zs) == 0 {
		return 0, err
	}
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, z := range zs {
			m, _ := z.Member.(string)
			p.ZAdd(ctx, ActiveKey(m), redis.Z{Score: z.Score, Member: m})
		}
		return nil
	}); err != nil {
		return 0, err
	}
	members := make([]any, len(zs))
	for i, z := range zs {
		members[i] = z.Member
	}
	// After the shards have them: the index stays a superset throughout.
	if err := s.rdb.ZRem(ctx, legacyActiveKey, members...).Err(); err != nil {
		return 0, err
	}
	return len(zs), nil
}
