package saga

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys of the saga store.
const (
	// MissionsKey is a sorted set of every mission key, scored by creation time
	// in unix milliseconds (ListMissions pages through it).
	MissionsKey = "slammesh:missions"
	// ActiveKey is a sorted set of the keys of unfinished sagas, scored by
	// creation time: what recovery scans for sagas to resume.
	ActiveKey = "slammesh:sagas:active"
)

// RecordKey returns the key of the hash holding the saga record of mission key.
// The braces make key the Redis Cluster hash tag, so the record, its events
// stream and its barrier keys share one slot.
func RecordKey(key string) string { return "slammesh:{" + key + "}:saga" }

// Errors returned by the store and the engine.
var (
	// ErrNotFound means no saga record exists for the key.
	ErrNotFound = errors.New("saga not found")
	// ErrFenced means another engine took the saga over (the stored epoch is
	// no longer the record's): the caller must stop driving it at once.
	ErrFenced = errors.New("saga fenced: another owner took it over")
)

// Store keeps saga records in Redis.
//
// Every write of a running saga is one EVALSHA of a Lua script that checks the
// fencing epoch, appends the transition's events and writes the changed record
// fields, all or nothing: a stale owner can write neither record nor events,
// and no event is ever visible without the record change it describes (or the
// other way round). The events are produced by an EventSink that queues
// commands into a go-redis pipeline; the store never executes that pipeline but
// passes its commands to the script (see EventSink).
//
// Redis Cluster: the script touches the mission's keys (one slot, thanks to the
// hash tag) and also the global keys MissionsKey and ActiveKey, and whatever
// global stream the sink writes (the firehose). On a single Redis primary — the
// deployment this project runs — that is what makes record, indexes and events
// atomic. On a Cluster those global keys live in other slots, the script would
// be refused (CROSSSLOT), and the indexes and the firehose must move out of the
// script: written after it in a second round trip, accepting that a crash in
// between leaves a saga missing from an index (recovery must then also scan
// records) or an event missing from the firehose. That change is deliberately
// not made while nothing here runs on a Cluster.
type Store struct {
	rdb  redis.UniversalClient
	sink EventSink
}

// NewStore returns a store on rdb that publishes events through sink (nil
// drops them).
func NewStore(rdb redis.UniversalClient, sink EventSink) *Store {
	return &Store{rdb: rdb, sink: sink}
}

// createScript writes a new record unless one exists for the key, in which
// case it returns the existing one: Start is idempotent on the mission key.
//
// KEYS[1] record hash, KEYS[2] MissionsKey, KEYS[3] ActiveKey.
// ARGV[1] mission key, ARGV[2] creation score (unix ms), ARGV[3..] field/value pairs.
// Returns {} when created, else the existing hash as a flat array.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1])
return {}
`)

// saveScript is the fenced write of one transition.
//
// KEYS[1] record hash, KEYS[2] ActiveKey.
// ARGV[1] expected epoch, ARGV[2] the change of the saga's activity: "end"
// when it just became terminal (leave ActiveKey), "reopen" when a terminal
// saga goes back to compensation (re-enter ActiveKey, so that recovery
// finishes the teardown), "" otherwise, ARGV[3] mission key, ARGV[4] number N of field/value strings, ARGV[5..4+N]
// the pairs, then the sink's commands, each as its argument count followed by
// its arguments.
// Returns {0, stored epoch} when fenced (nothing written), else
// {1, cancelled, cancel_reason} so the owner learns of a cancellation
// requested from any replica.
//
// The sink's commands run before the record is written: a failing command
// (which only a wrong key type can cause) aborts the script before the record
// changes, so the record never claims a transition whose events are missing.
var saveScript = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then
  return {0, epoch or ''}
end
local n = tonumber(ARGV[4])
local i = 5 + n
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + 1 + argc
end
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + n))
end
if ARGV[2] == 'end' then
  redis.call('ZREM', KEYS[2], ARGV[3])
elseif ARGV[2] == 'reopen' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created'), ARGV[3])
end
local c = redis.call('HMGET', KEYS[1], 'cancelled', 'cancel_reason')
return {1, c[1] or '', c[2] or ''}
`)

// claimScript makes the caller the owner of an unfinished saga by bumping its
// epoch (fencing out the previous owner) and returns the record; a terminal
// record is returned unchanged.
//
// KEYS[1] record hash. ARGV[1] owner, ARGV[2] now (unix ms).
var claimScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  return {}
end
if st == 'pending' or st == 'running' or st == 'compensating' then
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'updated', ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
`)

// cancelScript records a cancellation request. It is not fenced: any replica
// may ask. A pending or running saga only gets the flag (its owner notices it
// at its next write); a completed saga is reopened for teardown and put back
// in the active set so that recovery finishes the teardown if its driver
// dies. Other states are left alone.
//
// KEYS[1] record hash, KEYS[2] ActiveKey. ARGV[1] reason, ARGV[2] now (unix
// ms), ARGV[3] mission key.
// Returns {} when missing, else {teardown ("1" or "0"), hash...}.
var cancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  return {}
end
local teardown = '0'
if st == 'pending' or st == 'running' then
  if redis.call('HGET', KEYS[1], 'cancelled') ~= '1' then
    redis.call('HSET', KEYS[1], 'cancelled', '1', 'cancel_reason', ARGV[1], 'updated', ARGV[2])
  end
elseif st == 'completed' then
  teardown = '1'
  redis.call('HSET', KEYS[1], 'state', 'compensating', 'cancelled', '1', 'cancel_reason', ARGV[1],
    'updated', ARGV[2], 'ended', '')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created'), ARGV[3])
end
local h = redis.call('HGETALL', KEYS[1])
table.insert(h, 1, teardown)
return h
`)

// Create writes rec as a new saga unless a saga already exists for rec.Key, in
// which case it returns that one (created false) and writes nothing. It also
// indexes the mission in MissionsKey and ActiveKey, in the same script.
func (s *Store) Create(ctx context.Context, rec *Record) (created bool, existing *Record, err error) {
	kv := rec.fields(true)
	args := make([]any, 0, 2+len(kv))
	args = append(args, rec.Key, rec.CreatedAt.UnixMilli())
	for _, v := range kv {
		args = append(args, v)
	}
	reply, err := createScript.Run(ctx, s.rdb, []string{RecordKey(rec.Key), MissionsKey, ActiveKey}, args...).Slice()
	if err != nil {
		return false, nil, fmt.Errorf("create saga %s: %w", rec.Key, err)
	}
	if len(reply) == 0 {
		rec.saved = nil
		rec.markSaved(kv)
		return true, nil, nil
	}
	existing, err = recordFromReply(reply)
	if err != nil {
		return false, nil, fmt.Errorf("create saga %s: existing record: %w", rec.Key, err)
	}
	return false, existing, nil
}

// Save writes the fields of rec that changed since it was read or last saved,
// and publishes events, in one round trip — only if the stored epoch still
// equals rec.Epoch; otherwise it writes nothing and returns ErrFenced. When rec
// has just become terminal it also removes the saga from ActiveKey and has the
// sink expire the mission's events; when a terminal rec goes back to
// compensation it re-enters ActiveKey. After Save, rec.Cancelled and
// rec.CancelReason reflect a cancellation requested by anyone.
func (s *Store) Save(ctx context.Context, rec *Record, events ...Event) error {
	kv := rec.changes()
	prev := State(rec.saved[fieldState])
	becameTerminal := rec.State.Terminal() && prev != rec.State
	activity := ""
	switch {
	case becameTerminal:
		activity = "end"
	case prev.Terminal() && !rec.State.Terminal():
		activity = "reopen"
	}
	args := make([]any, 0, 4+len(kv)+16*len(events))
	args = append(args, strconv.FormatInt(rec.Epoch, 10), activity, rec.Key, len(kv))
	for _, v := range kv {
		args = append(args, v)
	}
	if s.sink != nil && (len(events) > 0 || becameTerminal) {
		pipe := s.rdb.Pipeline()
		for _, e := range events {
			s.sink.Append(pipe, e)
		}
		if becameTerminal {
			s.sink.ExpireMission(pipe, rec.Key)
		}
		for _, cmd := range pipe.Cmds() {
			a := cmd.Args()
			args = append(args, len(a))
			args = append(args, a...)
		}
		pipe.Discard()
	}
	reply, err := saveScript.Run(ctx, s.rdb, []string{RecordKey(rec.Key), ActiveKey}, args...).Slice()
	if err != nil {
		return fmt.Errorf("save saga %s: %w", rec.Key, err)
	}
	if len(reply) < 2 {
		return fmt.Errorf("save saga %s: unexpected reply %v", rec.Key, reply)
	}
	if ok, _ := reply[0].(int64); ok != 1 {
		return fmt.Errorf("save saga %s at epoch %d (stored %v): %w", rec.Key, rec.Epoch, reply[1], ErrFenced)
	}
	rec.markSaved(kv)
	if len(reply) == 3 {
		cancelled, _ := reply[1].(string)
		reason, _ := reply[2].(string)
		rec.Cancelled = cancelled == "1"
		rec.CancelReason = reason
		rec.markSaved([]string{fieldCancelled, cancelled, fieldCancelReason, reason})
	}
	return nil
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

// claim makes owner the owner of the unfinished saga key (see claimScript).
func (s *Store) claim(ctx context.Context, key, owner string, now time.Time) (*Record, error) {
	reply, err := claimScript.Run(ctx, s.rdb, []string{RecordKey(key)}, owner, now.UnixMilli()).Slice()
	if err != nil {
		return nil, fmt.Errorf("claim saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, fmt.Errorf("claim saga %s: %w", key, ErrNotFound)
	}
	rec, err := recordFromReply(reply)
	if err != nil {
		return nil, fmt.Errorf("claim saga %s: %w", key, err)
	}
	return rec, nil
}

// cancel records a cancellation request (see cancelScript). teardown reports
// that a completed saga was reopened and must now be compensated.
func (s *Store) cancel(ctx context.Context, key, reason string, now time.Time) (rec *Record, teardown bool, err error) {
	reply, err := cancelScript.Run(ctx, s.rdb, []string{RecordKey(key), ActiveKey}, reason, now.UnixMilli(), key).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, ErrNotFound)
	}
	rec, err = recordFromReply(reply[1:])
	if err != nil {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, err)
	}
	return rec, reply[0] == "1", nil
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
// missions created while a client pages do not shift its pages.
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
