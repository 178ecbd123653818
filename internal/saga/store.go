package saga

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys of the saga store.
const (
	// MissionsKey is a sorted set of every mission key, scored by creation time
	// in unix milliseconds (ListMissions pages through it).
	MissionsKey = "slammesh:missions"
	// ActiveKey is a sorted set of the keys of unfinished sagas, scored by the
	// expiry of their lease in unix milliseconds of the Redis server's clock:
	// what recovery scans for sagas whose owner stopped renewing them.
	ActiveKey = "slammesh:sagas:active"
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
// # Leases
//
// Every unfinished saga has a lease: its score in ActiveKey is the time its
// lease expires. Create, claims and reopenings set it to now + the store's
// lease TTL; the owning engine renews it (Engine's heartbeat, one script per
// engine and tick); recovery claims sagas whose lease expired. Lease times are
// taken from the Redis server's clock (TIME inside the scripts), never from
// the replicas', so clock skew between replicas cannot shorten a lease.
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
// not made while nothing here runs on a Cluster; the lease scripts (renew,
// release) touch the records of many missions and would need the same split.
type Store struct {
	rdb       redis.UniversalClient
	sink      EventSink
	leaseTTL  time.Duration
	retention Retention

	// trimMu guards trimOffset, where the next Trim resumes in the
	// expired part of the mission index (see Trim).
	trimMu     sync.Mutex
	trimOffset int
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

// NewStore returns a store on rdb that publishes events through sink (nil
// drops them) and gives sagas leases of leaseTTL (≤ 0: DefaultLeaseTTL).
// Every engine sharing the records must use the same lease TTL.
func NewStore(rdb redis.UniversalClient, sink EventSink, leaseTTL time.Duration) *Store {
	if leaseTTL <= 0 {
		leaseTTL = DefaultLeaseTTL
	}
	return &Store{rdb: rdb, sink: sink, leaseTTL: leaseTTL}
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

// luaNow sets the local now to the Redis server's time in unix milliseconds:
// leases are measured on one clock, whichever replica writes them.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// luaUnfinished is a Lua predicate on a saga state.
const luaUnfinished = `
local function unfinished(st)
  return st == 'pending' or st == 'running' or st == 'compensating'
end
`

// createScript writes a new record unless one exists for the key, in which
// case it returns the existing one: Start is idempotent on the mission key.
// An unfinished record gets its first lease, so that a saga whose creator
// dies before running it is recovered like any other.
//
// KEYS[1] record hash, KEYS[2] MissionsKey, KEYS[3] ActiveKey.
// ARGV[1] mission key, ARGV[2] creation score (unix ms), ARGV[3] lease TTL in
// ms ("" for a terminal record: no lease), ARGV[4..] field/value pairs.
// Returns {} when created, else the existing hash as a flat array.
var createScript = redis.NewScript(luaNow + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
end
return {}
`)

// saveScript is the fenced write of one transition.
//
// KEYS[1] record hash, KEYS[2] ActiveKey, KEYS[3..] the mission's other
// keys (Retention.Keys).
// ARGV[1] expected epoch, ARGV[2] the revision this write gives the record,
// ARGV[3] the change of the saga's activity: "end" when it just became
// terminal (leave ActiveKey), "reopen" when a terminal saga goes back to
// compensation (re-enter ActiveKey with a fresh lease, so that recovery
// finishes the teardown if its driver dies), "" otherwise, ARGV[4] mission
// key, ARGV[5] lease TTL in ms, ARGV[6] number N of field/value strings,
// ARGV[7] the retention of the mission's keys (KEYS[1] and KEYS[3..]): a
// TTL in ms to set, "persist" to remove any expiry, "" to leave them,
// ARGV[8..7+N] the pairs (an empty value deletes the field; the pairs
// include the new revision), then the sink's commands, each as its argument
// count followed by its arguments. The expiries are set after the sink's
// commands, so they also govern a stream the sink expired.
// Returns {0, stored epoch} when fenced (nothing written), else
// {1, cancelled, cancel_reason} so the owner learns of a cancellation
// requested from any replica.
//
// A record already at the revision this write gives it means the write
// landed before and its reply was lost: the script then writes nothing
// again — above all, appends no event twice — and answers as if it had.
// Within an epoch only one engine writes, one Save at a time, so the
// revision cannot have been reached by another write.
//
// The sink's commands run before the record is written: a failing command
// (which only a wrong key type can cause) aborts the script before the record
// changes, so the record never claims a transition whose events are missing.
var saveScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'epoch', 'rev')
if h[1] ~= ARGV[1] then
  return {0, h[1] or ''}
end
if h[2] ~= ARGV[2] then
  local n = tonumber(ARGV[6])
  local i = 8 + n
  while i <= #ARGV do
    local argc = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + argc))
    i = i + 1 + argc
  end
  local set, del = {}, {}
  for j = 8, 7 + n, 2 do
    if ARGV[j + 1] == '' then
      table.insert(del, ARGV[j])
    else
      table.insert(set, ARGV[j])
      table.insert(set, ARGV[j + 1])
    end
  end
  if #set > 0 then
    redis.call('HSET', KEYS[1], unpack(set))
  end
  if #del > 0 then
    redis.call('HDEL', KEYS[1], unpack(del))
  end
  if ARGV[3] == 'end' then
    redis.call('ZREM', KEYS[2], ARGV[4])
  elseif ARGV[3] == 'reopen' then
` + luaNow + `
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
  end
  if ARGV[7] ~= '' then
    for k = 1, #KEYS do
      if k ~= 2 then
        if ARGV[7] == 'persist' then
          redis.call('PERSIST', KEYS[k])
        else
          redis.call('PEXPIRE', KEYS[k], ARGV[7])
        end
      end
    end
  end
end
local c = redis.call('HMGET', KEYS[1], 'cancelled', 'cancel_reason')
return {1, c[1] or '', c[2] or ''}
`)

// claimScript makes the caller the owner of an unfinished saga, whoever holds
// it, by bumping its epoch (fencing out the previous owner) and giving it a
// fresh lease; it returns the record. A terminal record is returned
// unchanged. This is the takeover of an explicit Engine.Run; recovery uses
// recoverScript, which takes only expired leases.
//
// KEYS[1] record hash, KEYS[2] ActiveKey. ARGV[1] owner, ARGV[2] now (unix
// ms, the record's updated time), ARGV[3] mission key, ARGV[4] lease TTL in ms.
var claimScript = redis.NewScript(luaNow + luaUnfinished + `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  return {}
end
if unfinished(st) then
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'updated', ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
`)

// expiredScript lists up to ARGV[1] sagas of ActiveKey (KEYS[1]) whose lease
// has expired by the Redis server's clock.
var expiredScript = redis.NewScript(luaNow + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`)

// recoverScript claims a saga for recovery, only if its lease is still
// expired and it is unfinished: it bumps the epoch (fencing out the owner
// that stopped renewing), names the new owner and gives it a fresh lease. A
// terminal or missing record found in ActiveKey is a stale entry and is
// removed.
//
// KEYS[1] record hash, KEYS[2] ActiveKey. ARGV[1] mission key, ARGV[2] owner,
// ARGV[3] now (unix ms, the record's updated time), ARGV[4] lease TTL in ms.
// Returns {} when not claimed, else {ms since the lease expired, previous
// owner, hash...}.
var recoverScript = redis.NewScript(luaNow + luaUnfinished + `
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > now then
  return {}
end
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if not unfinished(h[1]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {}
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'updated', ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, tostring(now - math.floor(tonumber(score))))
table.insert(out, 2, h[2] or '')
return out
`)

// renewScript is an engine's heartbeat: it extends the leases of the sagas
// the engine drives, each only while the engine still holds it (the stored
// epoch is the one the engine runs at) and it is unfinished, and reports
// what the engine must act on at once rather than at its next write.
//
// KEYS[1] ActiveKey, KEYS[2..n+1] the record hashes. ARGV[1] lease TTL in ms,
// then for each saga its mission key and epoch.
// Returns triples {i, kind, reason}: saga i (1-based) is "lost" (another
// engine took it over, or the record is gone) or "cancelled" (a cancellation
// was recorded while it runs forward, with its reason).
//
// GT keeps a lease from moving backwards; a saga missing from ActiveKey while
// unfinished (a teardown reopened by the write that completed it) is added.
var renewScript = redis.NewScript(luaNow + `
local exp = now + tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local key, epoch = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local h = redis.call('HMGET', KEYS[i], 'epoch', 'state', 'cancelled', 'cancel_reason')
  if h[1] ~= epoch then
    table.insert(out, i - 1)
    table.insert(out, 'lost')
    table.insert(out, '')
  elseif h[2] == 'pending' or h[2] == 'running' or h[2] == 'compensating' then
    redis.call('ZADD', KEYS[1], 'GT', exp, key)
    if h[3] == '1' and h[2] ~= 'compensating' then
      table.insert(out, i - 1)
      table.insert(out, 'cancelled')
      table.insert(out, h[4] or '')
    end
  end
end
return out
`)

// releaseScript ends the leases of sagas an engine hands off: each lease the
// engine still holds (same epoch, unfinished) expires now, so another
// engine's recovery claims the saga at its next scan instead of after the
// lease TTL.
//
// KEYS[1] ActiveKey, KEYS[2..n+1] the record hashes. ARGV: for each saga its
// mission key and epoch. Returns the number of leases released.
var releaseScript = redis.NewScript(luaNow + luaUnfinished + `
local n = 0
for i = 2, #KEYS do
  local key, epoch = ARGV[2 * i - 3], ARGV[2 * i - 2]
  local h = redis.call('HMGET', KEYS[i], 'epoch', 'state')
  if h[1] == epoch and unfinished(h[2]) then
    redis.call('ZADD', KEYS[1], 'XX', now, key)
    n = n + 1
  end
end
return n
`)

// resumeScript reopens a Failed saga for another round of compensation: the
// step whose compensation gave up gets a fresh attempt budget (its cbase
// becomes its attempt count, so attempt numbers keep increasing), the saga
// goes back to Compensating with the error that made it compensate in the
// first place, owned by the caller at a new epoch with a fresh lease. A saga
// in any other state is returned unchanged.
//
// KEYS[1] record hash, KEYS[2] ActiveKey, KEYS[3..] the mission's other
// keys, whose expiry a resumed saga removes. ARGV[1] owner, ARGV[2] now
// (unix ms), ARGV[3] mission key, ARGV[4] lease TTL in ms.
// Returns {} when missing, else {resumed ("1" or "0"), hash...}.
var resumeScript = redis.NewScript(luaNow + `
local h = redis.call('HMGET', KEYS[1], 'state', 'current', 'cause.code', 'cause.reason', 'cause.msg')
if not h[1] then
  return {}
end
local resumed = '0'
if h[1] == 'failed' then
  resumed = '1'
  local p = 's' .. (h[2] or '0') .. '.'
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'state', 'compensating', 'owner', ARGV[1], 'updated', ARGV[2], 'ended', '',
    p .. 'state', 'compensating', p .. 'cbase', redis.call('HGET', KEYS[1], p .. 'cattempts') or '0')
  if h[3] then
    redis.call('HSET', KEYS[1], 'err.code', h[3], 'err.reason', h[4] or '', 'err.msg', h[5] or '')
  end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
  for k = 1, #KEYS do
    if k ~= 2 then redis.call('PERSIST', KEYS[k]) end
  end
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, resumed)
return out
`)

// cancelScript records a cancellation request. It is not fenced: any replica
// may ask. A pending or running saga only gets the flag (its owner notices it
// at its next write or lease renewal); a completed saga is reopened for
// teardown and put back in the active set with a fresh lease, so that
// recovery finishes the teardown if its driver dies. Other states are left
// alone.
//
// KEYS[1] record hash, KEYS[2] ActiveKey, KEYS[3..] the mission's other
// keys, whose expiry a teardown removes (the retention of the completed
// mission must not run out under its teardown). ARGV[1] reason, ARGV[2] now
// (unix ms), ARGV[3] mission key, ARGV[4] lease TTL in ms.
// Returns {} when missing, else {teardown ("1" or "0"), hash...}.
var cancelScript = redis.NewScript(luaNow + `
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
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
  for k = 1, #KEYS do
    if k ~= 2 then redis.call('PERSIST', KEYS[k]) end
  end
end
local h = redis.call('HGETALL', KEYS[1])
table.insert(h, 1, teardown)
return h
`)

// Create writes rec as a new saga unless a saga already exists for rec.Key, in
// which case it returns that one (created false) and writes nothing. It also
// indexes the mission in MissionsKey and, unless rec is terminal, gives it its
// first lease in ActiveKey, in the same script.
func (s *Store) Create(ctx context.Context, rec *Record) (created bool, existing *Record, err error) {
	kv := rec.fields(true)
	lease := ""
	if !rec.State.Terminal() {
		lease = strconv.FormatInt(s.leaseMillis(), 10)
	}
	args := make([]any, 0, 3+len(kv))
	args = append(args, rec.Key, rec.CreatedAt.UnixMilli(), lease)
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
// compensation it re-enters ActiveKey with a fresh lease. After Save,
// rec.Cancelled and rec.CancelReason reflect a cancellation requested by
// anyone.
//
// Save is idempotent: called again with the same rec and events after an
// error — a timeout whose write may have landed — it writes nothing more if
// the first call did write, and events are published exactly once.
func (s *Store) Save(ctx context.Context, rec *Record, events ...Event) (err error) {
	// The revision moves on only with a write that is known to have landed,
	// so a retry of this call sends the same one.
	rec.rev++
	defer func() {
		if err != nil {
			rec.rev--
		}
	}()
	kv := rec.changes()
	prev := State(rec.saved[fieldState])
	becameTerminal := rec.State.Terminal() && prev != rec.State
	activity, retain := "", ""
	switch {
	case becameTerminal:
		activity = "end"
		retain = s.retainArg(rec.State)
	case prev.Terminal() && !rec.State.Terminal():
		activity, retain = "reopen", "persist"
	}
	args := make([]any, 0, 7+len(kv)+16*len(events))
	args = append(args, strconv.FormatInt(rec.Epoch, 10), strconv.FormatInt(rec.rev, 10), activity, rec.Key, s.leaseMillis(), len(kv), retain)
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
	reply, err := saveScript.Run(ctx, s.rdb, s.scriptKeys(rec.Key), args...).Slice()
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

// retainArg is the save script's retention argument for a saga that just
// became terminal in state st: a Completed or Compensated saga's keys expire
// after the retention TTL (none: they stay), a Failed saga's keys lose any
// expiry (it waits for an operator).
func (s *Store) retainArg(st State) string {
	switch {
	case st == Failed:
		return "persist"
	case s.retention.TTL > 0:
		return strconv.FormatInt(max(s.retention.TTL.Milliseconds(), 1), 10)
	}
	return ""
}

// scriptKeys returns the KEYS of a script that touches the mission's keys:
// the record, ActiveKey, then the mission's other keys.
func (s *Store) scriptKeys(key string) []string {
	keys := s.retention.keys(key)
	return append([]string{keys[0], ActiveKey}, keys[1:]...)
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

// claim makes owner the owner of the unfinished saga key, whoever holds it
// (see claimScript).
func (s *Store) claim(ctx context.Context, key, owner string, now time.Time) (*Record, error) {
	reply, err := claimScript.Run(ctx, s.rdb, []string{RecordKey(key), ActiveKey},
		owner, now.UnixMilli(), key, s.leaseMillis()).Slice()
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

// expired returns up to limit keys of sagas whose lease has expired.
func (s *Store) expired(ctx context.Context, limit int) ([]string, error) {
	keys, err := expiredScript.Run(ctx, s.rdb, []string{ActiveKey}, limit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("scan expired saga leases: %w", err)
	}
	return keys, nil
}

// recovered is a saga claimed by recovery.
type recovered struct {
	rec *Record
	// prevOwner is the owner whose lease expired.
	prevOwner string
	// expiredFor is how long the lease had been expired when it was claimed
	// (Redis server clock): the recovery delay beyond the lease TTL.
	expiredFor time.Duration
}

// recoverClaim claims saga key for owner if its lease is still expired and
// it is unfinished (see recoverScript); nil means someone else renewed,
// claimed or finished it first.
func (s *Store) recoverClaim(ctx context.Context, key, owner string, now time.Time) (*recovered, error) {
	reply, err := recoverScript.Run(ctx, s.rdb, []string{RecordKey(key), ActiveKey},
		key, owner, now.UnixMilli(), s.leaseMillis()).Slice()
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, nil
	}
	if len(reply) < 2 {
		return nil, fmt.Errorf("recover saga %s: unexpected reply %v", key, reply)
	}
	ms, _ := reply[0].(string)
	prev, _ := reply[1].(string)
	expiredFor, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: lease expiry %q: %w", key, ms, err)
	}
	rec, err := recordFromReply(reply[2:])
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: %w", key, err)
	}
	return &recovered{rec: rec, prevOwner: prev, expiredFor: time.Duration(expiredFor) * time.Millisecond}, nil
}

// lease names a saga an engine holds, at the epoch it holds it.
type lease struct {
	key   string
	epoch int64
}

// leaseNote is what a renewal found out about one lease.
type leaseNote struct {
	// i indexes the leases passed to renew.
	i int
	// lost: another engine took the saga over, or its record is gone.
	lost bool
	// cancelReason is set when a cancellation was recorded while the saga
	// runs forward.
	cancelReason string
}

// renew extends the leases an engine holds, in one round trip (see
// renewScript), and reports the leases lost and the cancellations found.
func (s *Store) renew(ctx context.Context, leases []lease) ([]leaseNote, error) {
	keys, args := leaseArgs(leases, s.leaseMillis())
	reply, err := renewScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("renew %d saga leases: %w", len(leases), err)
	}
	notes := make([]leaseNote, 0, len(reply)/3)
	for j := 0; j+2 < len(reply); j += 3 {
		i, _ := reply[j].(int64)
		kind, _ := reply[j+1].(string)
		reason, _ := reply[j+2].(string)
		if i < 1 || int(i) > len(leases) {
			return nil, fmt.Errorf("renew saga leases: reply names lease %d of %d", i, len(leases))
		}
		n := leaseNote{i: int(i) - 1, lost: kind == "lost"}
		if !n.lost {
			n.cancelReason = reason
		}
		notes = append(notes, n)
	}
	return notes, nil
}

// release makes the leases still held at their epoch expire now (see
// releaseScript) and returns how many it released.
func (s *Store) release(ctx context.Context, leases []lease) (int, error) {
	if len(leases) == 0 {
		return 0, nil
	}
	keys, args := leaseArgs(leases)
	n, err := releaseScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("release %d saga leases: %w", len(leases), err)
	}
	return n, nil
}

// leaseArgs returns the KEYS of a lease script (ActiveKey, then the record
// hashes) and its ARGV: head, then the key and epoch of each lease.
func leaseArgs(leases []lease, head ...any) ([]string, []any) {
	keys := make([]string, 1, 1+len(leases))
	keys[0] = ActiveKey
	args := make([]any, 0, len(head)+2*len(leases))
	args = append(args, head...)
	for _, l := range leases {
		keys = append(keys, RecordKey(l.key))
		args = append(args, l.key, strconv.FormatInt(l.epoch, 10))
	}
	return keys, args
}

// resume reopens the Failed saga key for compensation, owned by owner (see
// resumeScript). resumed false means the saga was not Failed and rec is its
// unchanged record.
func (s *Store) resume(ctx context.Context, key, owner string, now time.Time) (rec *Record, resumed bool, err error) {
	reply, err := resumeScript.Run(ctx, s.rdb, s.scriptKeys(key),
		owner, now.UnixMilli(), key, s.leaseMillis()).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, ErrNotFound)
	}
	rec, err = recordFromReply(reply[1:])
	if err != nil {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, err)
	}
	return rec, reply[0] == "1", nil
}

// cancel records a cancellation request (see cancelScript). teardown reports
// that a completed saga was reopened and must now be compensated.
func (s *Store) cancel(ctx context.Context, key, reason string, now time.Time) (rec *Record, teardown bool, err error) {
	reply, err := cancelScript.Run(ctx, s.rdb, s.scriptKeys(key),
		reason, now.UnixMilli(), key, s.leaseMillis()).Slice()
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
