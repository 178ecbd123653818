package saga

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/pipepool"
)

// Redis keys of the saga store besides the records and the active-lease
// index (ActiveKey). Each is one key, so one Redis Cluster slot, written only
// by single idempotent commands outside the per-mission scripts.
const (
	// MissionsKey is a sorted set of every mission key, scored by creation time
	// in unix milliseconds (ListMissions pages through it). A mission enters
	// it (ZADD NX) before its record is created, so an entry whose record is
	// missing is possible (List skips it, Trim drops it).
	MissionsKey = "slammesh:missions"
	// GoneKey is a sorted set of the missions whose data expired or was
	// deleted, scored by the time the janitor (Store.Trim) or Delete found
	// them gone, in unix milliseconds: what lets GetMission tell "expired"
	// from "never existed". Tombstones are trimmed one retention period
	// after they were written.
	GoneKey = "slammesh:missions:gone"
)

// DefaultLeaseTTL is the lease of a saga when NewStore is given none: how
// long a saga may go without its owner renewing the lease before another
// engine may take it over.
const DefaultLeaseTTL = 3 * time.Second

// RecordKey returns the key of the hash holding the saga record of mission key.
// The braces make key the Redis Cluster hash tag, so the record, its events
// stream and its barrier keys share one slot.
func RecordKey(key string) string { return "slammesh:{" + key + "}:saga" }

// Errors returned by the store and the engine.
var (
	// ErrNotFound means no saga record exists for the key.
	ErrNotFound = errors.New("saga not found")
	// ErrDamaged means a saga record exists but cannot be decoded: fields
	// lost or mangled outside slammesh (a Redis that dropped writes as it
	// loaded its AOF, docs/security.md; a hand edit). Such a saga can be
	// neither shown nor driven.
	ErrDamaged = errors.New("saga record damaged")
	// ErrFenced means another engine took the saga over (the stored epoch is
	// no longer the record's): the caller must stop driving it at once.
	ErrFenced = errors.New("saga fenced: another owner took it over")
)

// RecordGoneError is the fencing of a saga whose record vanished while an
// engine drove it: Redis lost it (restarted without persistence, flushed,
// or failed over to a replica that never had it). It is ErrFenced — the
// engine stops at once and writes nothing more — but says what happened,
// since no other owner exists.
type RecordGoneError struct {
	// Op is the write or renewal that found the record gone.
	Op string
}

// Error names the operation that found the record gone, and why it can be.
func (e *RecordGoneError) Error() string {
	return e.Op + ": the saga record is gone: Redis lost it (restarted without persistence, flushed, or failed over)"
}

// Is makes a RecordGoneError ErrFenced for errors.Is.
func (e *RecordGoneError) Is(target error) bool { return target == ErrFenced }

// Store keeps saga records in Redis.
//
// Every write of a running saga is one EVALSHA of a Lua script that checks the
// fencing epoch, appends the transition's events to the mission's stream and
// writes the changed record fields, all or nothing: a stale owner can write
// neither record nor events, and no event is ever visible in the mission's
// stream without the record change it describes (or the other way round).
// The events are produced by an EventSink that queues commands into a
// go-redis pipeline; the store never executes that pipeline but passes its
// commands to the script (see EventSink).
//
// # One slot per script
//
// Every script touches the keys of one Redis Cluster slot: a mission's
// (record, stream, business keys, all tagged {<mission>}) or one shard of the
// active-lease index. What is global is written by separate idempotent
// commands, ordered so that a crash between them and the script is safe:
//
//   - The active-lease index (ActiveKey, ActiveShards shards) is a SUPERSET
//     of the unfinished sagas: a saga's entry is written before the script
//     that creates or reopens it, and removed in a round trip after the
//     script that ends it, only if it still has the score this process
//     wrote (compare-and-delete). Recovery drops entries whose record is
//     missing or finished.
//   - The mission index (MissionsKey) gets its entry before the record is
//     created; List skips entries without a record and Trim drops them.
//     The entry's score is its saga's creation time. Delete and Trim remove
//     it only while it still has the score of the saga they found gone
//     (compare-and-delete), and a saga created again under the key while
//     that saga's entry was still there sets its own score (claimIndex), so
//     it keeps its entry whichever comes first.
//   - The firehose copy of an event is written after the script that
//     appended the event to the mission's stream succeeded (EventSink's
//     Committed, a group-commit writer such as progress.Firehose whose
//     waiting writes ride in the store's next round trip: SideWriter).
//
// On a single Redis (a *redis.Client: one connection runs a pipeline in
// order) an index write and the script that needs it go in one pipelined
// round trip; on a Cluster the pipeline would be split over nodes and run
// concurrently, so there the index write is a round trip of its own first.
//
// # Leases
//
// Every unfinished saga has a lease, held in its record (the field "lease":
// expiry in unix ms of the Redis server's clock, TIME inside the scripts, so
// clock skew between replicas cannot shorten a lease). Create, claims and
// reopenings set it to now + the store's lease TTL; the owning engine renews
// it (Engine's heartbeat: one pipeline of one script per saga, per engine
// and tick); recovery claims sagas whose lease expired. The index entry's
// score is only where recovery looks: this process's now + TTL when it
// wrote it; recovery checks the record's lease before claiming.
//
// # Crash windows
//
//   - Between the index entry and the create (or a reopen): the entry has no
//     record (or a finished one). Recovery drops it, but only two lease TTLs
//     past its score, and the create or reopen script refuses to run later
//     than one TTL past it (errLate): a writer paused between its two round
//     trips is refused instead of creating a saga no index lists.
//   - Between the script that ends a saga and the removal of its entry: the
//     entry outlives the saga until recovery drops it.
//   - Between a script and its firehose copy: the firehose misses the events
//     (the mission stream has them).
type Store struct {
	rdb       redis.UniversalClient
	pipes     *pipepool.Pool
	sink      EventSink
	leaseTTL  time.Duration
	retention Retention
	// ordered: rdb runs a pipeline in order on one connection (not a Cluster).
	ordered bool
	// side are the global writers whose waiting writes ride in the store's
	// round trips.
	side []SideWriter
	idx  index
	// group, when set, batches the saga writes with concurrent sagas'
	// (WithGroupCommit).
	group *groupcommit.Group

	// damaged is told of each record List leaves out (WithDamagedRecords).
	damaged func(key string, err error)

	// trimMu guards trimOffset, where the next Trim resumes in the
	// expired part of the mission index (see Trim).
	trimMu     sync.Mutex
	trimOffset int
}

// SideWriter is a group-commit writer of global keys (the firehose) whose
// waiting writes the store carries in its next round trip instead of
// leaving them a round trip of their own.
type SideWriter interface {
	// Take queues the waiting writes into pipe and returns what to call once
	// the pipeline was executed.
	Take(pipe redis.Pipeliner) (done func())
}

// Retention says what becomes of a finished saga's keys.
//
// When a saga becomes Completed or Compensated, the write that records it
// sets every key of the mission — its record and Keys(key) — to expire TTL
// later; when it becomes Failed (an operator must act: ResumeMission or
// DeleteMission) or is reopened (a teardown, a resumed compensation), the
// write removes any expiry, so that the keys of an unfinished or failed
// saga never expire under it. These writes are part of the fenced Save
// script (and of the cancel and resume scripts), which touch only the
// mission's own keys.
type Retention struct {
	// TTL is how long a Completed or Compensated mission keeps its keys; 0
	// keeps them forever.
	TTL time.Duration
	// Keys returns the keys of mission key other than its saga record that
	// the mission owns (progress stream, barrier marks, business data).
	// Every one must carry the mission's hash tag, "{key}". nil: only the
	// record.
	Keys func(key string) []string
}

// keys returns the record key of mission key followed by the other keys it
// owns.
func (r Retention) keys(key string) []string {
	keys := []string{RecordKey(key)}
	if r.Keys != nil {
		keys = append(keys, r.Keys(key)...)
	}
	return keys
}

// keysOf returns the keys of rec's saga that its create and save scripts
// touch (Retention.keys), kept with rec: building them cost a dozen
// allocations per write.
func (s *Store) keysOf(rec *Record) []string {
	if rec.keys == nil {
		rec.keys = s.retention.keys(rec.Key)
	}
	return rec.keys
}

// NewStore returns a store on rdb that publishes events through sink (nil
// drops them) and gives sagas leases of leaseTTL (≤ 0: DefaultLeaseTTL).
// Every engine sharing the records must use the same lease TTL.
func NewStore(rdb redis.UniversalClient, sink EventSink, leaseTTL time.Duration) *Store {
	if leaseTTL <= 0 {
		leaseTTL = DefaultLeaseTTL
	}
	_, ordered := rdb.(*redis.Client)
	return &Store{rdb: rdb, pipes: pipepool.New(rdb), sink: sink, leaseTTL: leaseTTL, ordered: ordered}
}

// WithSideWriter makes the store carry w's waiting writes in its round
// trips (see SideWriter) and returns s. Call it before s is used.
func (s *Store) WithSideWriter(w SideWriter) *Store {
	s.side = append(s.side, w)
	return s
}

// WithDamagedRecords makes List tell f of each record it leaves out
// because it is damaged (ErrDamaged), so that one such record does not
// fail every listing, and returns s. Call it before s is used.
func (s *Store) WithDamagedRecords(f func(key string, err error)) *Store {
	s.damaged = f
	return s
}

// WithGroupCommit makes the store send its saga writes (creates, saves and
// the global writes riding with them) through g, batched with those of
// concurrent sagas, and returns s. Call it before s is used. g must be on
// the store's client.
func (s *Store) WithGroupCommit(g *groupcommit.Group) *Store {
	s.group = g
	return s
}

// WithRetention sets what becomes of finished sagas' keys (see Retention)
// and returns s. Call it before s is used; every engine sharing the records
// should use the same retention.
func (s *Store) WithRetention(r Retention) *Store {
	s.retention = r
	return s
}

// Retention returns the store's retention.
func (s *Store) Retention() Retention { return s.retention }

// LeaseTTL returns how long a lease lasts without renewal.
func (s *Store) LeaseTTL() time.Duration { return s.leaseTTL }

func (s *Store) leaseMillis() int64 { return s.leaseTTL.Milliseconds() }

// takeSide queues the waiting global writes (index removals, side writers)
// into pipe; call the returned func once pipe was executed.
func (s *Store) takeSide(ctx context.Context, pipe redis.Pipeliner) func() {
	dones := []func(){s.idx.take(ctx, s.rdb, pipe)}
	for _, w := range s.side {
		dones = append(dones, w.Take(pipe))
	}
	return func() {
		for _, d := range dones {
			d()
		}
	}
}

// do runs script in one round trip with the waiting global writes and the
// commands pre queues (nil: none) in front of it, and runs it once more on
// its own when Redis had not cached it (NOSCRIPT: a restart or failover).
func (s *Store) do(ctx context.Context, pre func(redis.Pipeliner), script *redis.Script, keys []string, args ...any) *redis.Cmd {
	pipe := s.pipes.Get()
	defer s.pipes.Put(pipe)
	done := s.takeSide(ctx, pipe)
	if pre != nil {
		pre(pipe)
	}
	if pipe.Len() == 0 && s.group == nil {
		// Nothing rides along: a plain EVALSHA (with go-redis's own
		// NOSCRIPT fallback) spares the pipeline.
		done()
		return script.Run(ctx, s.rdb, keys, args...)
	}
	cmd := script.EvalSha(ctx, pipe, keys, args...)
	s.group.Send(ctx, pipe)
	done()
	if isNoScript(cmd.Err()) {
		cmd = script.Run(ctx, s.rdb, keys, args...)
	}
	return cmd
}

// indexed runs script after the index writes index queues: in the same
// round trip on a single Redis, in a round trip of their own before it on a
// Cluster (see Store). The index writes are idempotent; should one fail in
// the shared round trip, it is sent again before indexed returns, and an
// error is returned if it fails again.
func (s *Store) indexed(ctx context.Context, index func(redis.Pipeliner), script *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	if index == nil {
		return s.do(ctx, nil, script, keys, args...), nil
	}
	if !s.ordered {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { index(p); return nil }); err != nil {
			return nil, fmt.Errorf("active index: %w", err)
		}
		return s.do(ctx, nil, script, keys, args...), nil
	}
	var cmds []redis.Cmder
	cmd := s.do(ctx, func(p redis.Pipeliner) {
		first := p.Len()
		index(p)
		// A copy: do puts the pipeline back in the pool, whose next user
		// queues into the same array.
		cmds = slices.Clone(p.Cmds()[first:])
	}, script, keys, args...)
	for _, c := range cmds {
		if c.Err() != nil {
			if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { index(p); return nil }); err != nil {
				return cmd, fmt.Errorf("active index: %w", err)
			}
			break
		}
	}
	return cmd, nil
}

// flush sends the waiting global writes, if any, in one round trip: what the
// engine calls when it goes idle, so that they do not wait for its next saga.
func (s *Store) flush(ctx context.Context) {
	s.idx.mu.Lock()
	n := len(s.idx.pending)
	s.idx.mu.Unlock()
	if n == 0 && len(s.side) == 0 {
		return
	}
	pipe := s.rdb.Pipeline()
	done := s.takeSide(ctx, pipe)
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
	done()
}

// Load reads the record of mission key, or returns ErrNotFound.
func (s *Store) Load(ctx context.Context, key string) (*Record, error) {
	h, err := s.rdb.HGetAll(ctx, RecordKey(key)).Result()
	if err != nil {
		return nil, fmt.Errorf("load saga %s: %w", key, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("load saga %s: %w", key, ErrNotFound)
	}
	rec, err := parseRecord(h)
	if err != nil {
		return nil, fmt.Errorf("load saga %s: %w", key, err)
	}
	return rec, nil
}

// State reads only the state of mission key's record (one HGET: a record
// holds its input and step outputs, megabytes for a real-data mission), or
// returns ErrNotFound.
func (s *Store) State(ctx context.Context, key string) (State, error) {
	v, err := s.rdb.HGet(ctx, RecordKey(key), fieldState).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", fmt.Errorf("saga %s state: %w", key, ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("saga %s state: %w", key, err)
	}
	return State(v), nil
}

func recordFromReply(reply []any) (*Record, error) {
	h, err := parseHash(reply)
	if err != nil {
		return nil, err
	}
	return parseRecord(h)
}

// List returns up to limit records, newest first, starting after cursor (""
// for the newest), keeping only the given states (none: all). next is the
// cursor of the following page, "" when there is none (a full page may be
// followed by an empty one). limit ≤ 0 means 50;
// it is capped at 1000.
//
// The cursor is "<creation ms>:<mission key>" of the last record returned, so
// missions created while a client pages do not shift its pages. A damaged
// record is left out (see WithDamagedRecords).
func (s *Store) List(ctx context.Context, cursor string, limit int, states ...State) (recs []*Record, next string, err error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	maxScore, afterMember := "+inf", ""
	var afterScore float64
	if cursor != "" {
		ms, member, ok := strings.Cut(cursor, ":")
		if !ok || member == "" {
			return nil, "", fmt.Errorf("list sagas: malformed cursor %q", cursor)
		}
		if afterScore, err = strconv.ParseFloat(ms, 64); err != nil {
			return nil, "", fmt.Errorf("list sagas: malformed cursor %q: %w", cursor, err)
		}
		maxScore, afterMember = ms, member
	}
	want := make(map[State]bool, len(states))
	for _, st := range states {
		want[st] = true
	}
	batch := max(limit, 32)
	for offset := 0; ; offset += batch {
		zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: MissionsKey, Start: maxScore, Stop: "-inf", ByScore: true, Rev: true,
			Offset: int64(offset), Count: int64(batch),
		}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list sagas: %w", err)
		}
		// Among equal scores Redis returns members in reverse lexicographic
		// order, so the ones up to and including the cursor come first.
		keys := make([]string, 0, len(zs))
		scores := make([]float64, 0, len(zs))
		for _, z := range zs {
			m, _ := z.Member.(string)
			if cursor != "" && z.Score == afterScore && m >= afterMember {
				continue
			}
			keys = append(keys, m)
			scores = append(scores, z.Score)
		}
		if len(keys) > 0 {
			cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.HGetAll(ctx, RecordKey(k))
				}
				return nil
			})
			if err != nil {
				return nil, "", fmt.Errorf("list sagas: %w", err)
			}
			for i, c := range cmds {
				h := c.(*redis.MapStringStringCmd).Val()
				if len(h) == 0 {
					continue // indexed but deleted
				}
				rec, err := parseRecord(h)
				if errors.Is(err, ErrDamaged) {
					if s.damaged != nil {
						s.damaged(keys[i], err)
					}
					continue
				}
				if err != nil {
					return nil, "", fmt.Errorf("list sagas: %s: %w", keys[i], err)
				}
				if len(want) > 0 && !want[rec.State] {
					continue
				}
				recs = append(recs, rec)
				if len(recs) == limit {
					return recs, strconv.FormatFloat(scores[i], 'f', -1, 64) + ":" + keys[i], nil
				}
			}
		}
		if len(zs) < batch {
			return recs, "", nil
		}
	}
}
