package saga

import "github.com/redis/go-redis/v9"

// The store's Lua scripts. Each touches the keys of ONE Redis Cluster slot:
// the per-mission scripts only keys tagged {<mission>} (the record hash and
// the mission's other keys), the index scripts only one active-index shard.
// What spans slots — the mission index, the active-lease index, the
// firehose — is written by separate idempotent commands around them (see
// Store and docs/architecture.md, "Redis Cluster").

// Scripts returns every Lua script of the saga store, for tests that run
// them against a Redis Cluster.
func Scripts() []*redis.Script {
	return []*redis.Script{
		createScript, saveScript, claimScript, expiredScript, recoverScript, renewScript,
		releaseScript, resumeScript, cancelScript, unindexScript, deleteScript,
	}
}

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

// luaRun runs the commands in ARGV from index first (a Lua expression) to
// the end, each as its argument count followed by its arguments: the sink's
// commands that the create and save scripts carry.
func luaRun(first string) string {
	return `
local i = ` + first + `
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + 1 + argc
end
`
}

// errLate is the error reply of a script that would create or reopen a saga
// after the deadline of the active-index entry written for it: recovery may
// already have dropped that entry as stale, so the saga would be unfinished
// and unindexed (see Store, "Crash windows").
const errLate = "SLAMMESH_LATE"

// luaLate returns errLate when now is past ARGV[deadline].
func luaLate(deadlineArg string) string {
	return `
if now > tonumber(` + deadlineArg + `) then
  return redis.error_reply('` + errLate + ` index entry deadline passed')
end
`
}

// createScript writes a new record unless one exists for the key, in which
// case it returns the existing one: Start is idempotent on the mission key.
// An unfinished record gets its first lease, so that a saga whose creator
// dies before running it is recovered like any other.
//
// KEYS[1] record hash, KEYS[2..] the mission's other keys (declared for
// Redis Cluster routing: the sink's commands name them). ARGV[1] lease TTL
// in ms ("" for a terminal record: no lease), ARGV[2] the deadline of the
// index entry (unix ms, see errLate), ARGV[3] number N of field/value
// strings, ARGV[4..3+N] the pairs, then the sink's commands (the events of
// a saga created running, see Engine.Begin), each as its argument count
// followed by its arguments; they run before the record is written, as in
// saveScript.
// Returns {} when created, else the existing hash as a flat array.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local n = tonumber(ARGV[3])
local set = {}
if ARGV[1] ~= '' then
` + luaNow + luaLate("ARGV[2]") + `
  set = {'lease', now + tonumber(ARGV[1])}
end
` + luaRun("4 + n") + `
for j = 4, 3 + n do
  table.insert(set, ARGV[j])
end
redis.call('HSET', KEYS[1], unpack(set))
return {}
`)

// saveScript is the fenced write of one transition.
//
// KEYS[1] record hash, KEYS[2..] the mission's other keys (Retention.Keys).
// ARGV[1] expected epoch, ARGV[2] the revision this write gives the record,
// ARGV[3] the change of the saga's activity: "end" when it just became
// terminal, "reopen" when a terminal saga goes back to compensation (a
// fresh lease, refused past ARGV[5], the deadline of its index entry), ""
// otherwise, ARGV[4] lease TTL in ms, ARGV[5] index entry deadline (unix
// ms), ARGV[6] number N of field/value strings, ARGV[7] the retention of
// the mission's keys (all of KEYS): a TTL in ms to set, "persist" to remove
// any expiry, "" to leave them, ARGV[8..7+N] the pairs (an empty value
// deletes the field; the pairs include the new revision), then the sink's
// commands, each as its argument count followed by its arguments. The
// expiries are set after the sink's commands, so they also govern a stream
// the sink expired.
// Returns {0, stored epoch} when fenced (nothing written), {2, stored
// revision} when the record is not at the revision before ARGV[2] (a write
// acknowledged earlier was lost, e.g. by a failover: nothing written), else
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
var saveScript = redis.NewScript(saveLua)

// saveLua is the source of saveScript (sent as EVAL by Store.saveEnding
// when Redis lost its scripts).
var saveLua = `
-- One read for the fence and the reply: the pairs below update the
-- cancellation it returns when they write it.
local h = redis.call('HMGET', KEYS[1], 'epoch', 'rev', 'cancelled', 'cancel_reason')
local cancelled, reason = h[3] or '', h[4] or ''
if h[1] ~= ARGV[1] then
  return {0, h[1] or ''}
end
if h[2] ~= ARGV[2] then
  -- The stored revision must be the one before this write's: any other
  -- means a write the owner saw acknowledged is missing (lost in a
  -- failover), and this write's delta would build on it.
  if tonumber(h[2] or '0') ~= tonumber(ARGV[2]) - 1 then
    return {2, h[2] or '0'}
  end
  -- Only a reopening needs the server's time (TIME is a command too).
  local now = 0
  if ARGV[3] == 'reopen' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
` + luaLate("ARGV[5]") + `
  end
  local n = tonumber(ARGV[6])
` + luaRun("8 + n") + `
  local set, del = {}, {}
  for j = 8, 7 + n, 2 do
    if ARGV[j + 1] == '' then
      table.insert(del, ARGV[j])
    else
      table.insert(set, ARGV[j])
      table.insert(set, ARGV[j + 1])
    end
    if ARGV[j] == 'cancelled' then
      cancelled = ARGV[j + 1]
    elseif ARGV[j] == 'cancel_reason' then
      reason = ARGV[j + 1]
    end
  end
  if ARGV[3] == 'reopen' then
    table.insert(set, 'lease')
    table.insert(set, now + tonumber(ARGV[4]))
  end
  if #set > 0 then
    redis.call('HSET', KEYS[1], unpack(set))
  end
  if #del > 0 then
    redis.call('HDEL', KEYS[1], unpack(del))
  end
  if ARGV[7] ~= '' then
    for k = 1, #KEYS do
      if ARGV[7] == 'persist' then
        redis.call('PERSIST', KEYS[k])
      else
        redis.call('PEXPIRE', KEYS[k], ARGV[7])
      end
    end
  end
end
return {1, cancelled, reason}
`

// claimScript makes the caller the owner of an unfinished saga, whoever holds
// it, by bumping its epoch (fencing out the previous owner) and giving it a
// fresh lease; it returns the record. A terminal record is returned
// unchanged. This is the takeover of an explicit Engine.Run; recovery uses
// recoverScript, which takes only expired leases.
//
// KEYS[1] record hash. ARGV[1] owner, ARGV[2] now (unix ms, the record's
// updated time), ARGV[3] lease TTL in ms.
var claimScript = redis.NewScript(luaNow + luaUnfinished + `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  return {}
end
if unfinished(st) then
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'updated', ARGV[2], 'lease', now + tonumber(ARGV[3]))
end
return redis.call('HGETALL', KEYS[1])
`)

// expiredScript lists, with their scores, up to ARGV[1] entries of one
// active-index shard (KEYS[1]) whose score — where recovery looks, not the
// lease itself — has passed by the Redis server's clock.
var expiredScript = redis.NewScript(luaNow + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
`)

// recoverScript claims a saga for recovery, only if it is unfinished and its
// lease (the record's, authoritative) has expired: it bumps the epoch
// (fencing out the owner that stopped renewing), names the new owner and
// gives it a fresh lease.
//
// KEYS[1] record hash. ARGV[1] owner, ARGV[2] now (unix ms, the record's
// updated time), ARGV[3] lease TTL in ms.
// Returns {"stale"} when the record is missing or terminal (its index entry
// is stale), {"live", lease} when the lease has not expired (the index entry
// is behind), else {"claimed", ms since the lease expired, previous owner,
// hash...}.
var recoverScript = redis.NewScript(luaNow + luaUnfinished + `
local h = redis.call('HMGET', KEYS[1], 'state', 'owner', 'lease')
if not unfinished(h[1]) then
  return {'stale'}
end
local lease = tonumber(h[3] or '0')
if lease > now then
  return {'live', tostring(lease)}
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'updated', ARGV[2], 'lease', now + tonumber(ARGV[3]))
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'claimed')
table.insert(out, 2, tostring(now - lease))
table.insert(out, 3, h[2] or '')
return out
`)

// renewScript is one saga's heartbeat, sent for every saga an engine drives
// in one pipeline per tick: it extends the lease only while the engine still
// holds the saga (the stored epoch is the one the engine runs at) and it is
// unfinished, never moving it backwards, and reports what the engine must
// act on at once rather than at its next write.
//
// KEYS[1] record hash. ARGV[1] epoch, ARGV[2] lease TTL in ms.
// Returns {"lost"} (another engine took it over), {"gone"} (no record:
// Redis lost it, or another engine finished it and it was deleted since;
// Engine.act tells them by the tombstone), {"ended"} (it is finished),
// {"cancelled", reason} (a cancellation was recorded while it runs
// forward), {"ok"} otherwise.
var renewScript = redis.NewScript(luaNow + luaUnfinished + `
local h = redis.call('HMGET', KEYS[1], 'epoch', 'state', 'cancelled', 'cancel_reason', 'lease')
if not h[1] then
  return {'gone'}
end
if h[1] ~= ARGV[1] then
  return {'lost'}
end
if unfinished(h[2]) then
  local exp = now + tonumber(ARGV[2])
  if exp > tonumber(h[5] or '0') then
    redis.call('HSET', KEYS[1], 'lease', exp)
  end
  if h[3] == '1' and h[2] ~= 'compensating' then
    return {'cancelled', h[4] or ''}
  end
  return {'ok'}
end
return {'ended'}
`)

// releaseScript ends the lease of a saga an engine hands off, if the engine
// still holds it (same epoch, unfinished): the lease expires now, so another
// engine's recovery claims the saga at its next scan instead of after the
// lease TTL.
//
// KEYS[1] record hash. ARGV[1] epoch. Returns 1 when released, else 0.
var releaseScript = redis.NewScript(luaNow + luaUnfinished + `
local h = redis.call('HMGET', KEYS[1], 'epoch', 'state')
if h[1] == ARGV[1] and unfinished(h[2]) then
  redis.call('HSET', KEYS[1], 'lease', now)
  return 1
end
return 0
`)

// resumeScript reopens a Failed saga for another round of compensation: the
// step whose compensation gave up gets a fresh attempt budget (its cbase
// becomes its attempt count, so attempt numbers keep increasing), the saga
// goes back to Compensating with the error that made it compensate in the
// first place, owned by the caller at a new epoch with a fresh lease. A saga
// in any other state is returned unchanged.
//
// KEYS[1] record hash, KEYS[2..] the mission's other keys, whose expiry a
// resumed saga removes. ARGV[1] owner, ARGV[2] now (unix ms), ARGV[3] lease
// TTL in ms, ARGV[4] index entry deadline (unix ms, see errLate).
// Returns {} when missing, else {resumed ("1" or "0"), hash...}.
var resumeScript = redis.NewScript(luaNow + `
local h = redis.call('HMGET', KEYS[1], 'state', 'current', 'cause.code', 'cause.reason', 'cause.msg')
if not h[1] then
  return {}
end
local resumed = '0'
if h[1] == 'failed' then
` + luaLate("ARGV[4]") + `
  resumed = '1'
  local p = 's' .. (h[2] or '0') .. '.'
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'state', 'compensating', 'owner', ARGV[1], 'updated', ARGV[2], 'ended', '',
    p .. 'state', 'compensating', p .. 'cbase', redis.call('HGET', KEYS[1], p .. 'cattempts') or '0',
    'lease', now + tonumber(ARGV[3]))
  if h[3] then
    redis.call('HSET', KEYS[1], 'err.code', h[3], 'err.reason', h[4] or '', 'err.msg', h[5] or '')
  end
  for k = 1, #KEYS do
    redis.call('PERSIST', KEYS[k])
  end
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, resumed)
return out
`)

// cancelScript records a cancellation request. It is not fenced: any replica
// may ask. A pending or running saga only gets the flag (its owner notices it
// at its next write or lease renewal); a completed saga is reopened for
// teardown with a fresh lease (its index entry was written before this
// script), so that recovery finishes the teardown if its driver dies. Other
// states are left alone.
//
// KEYS[1] record hash, KEYS[2..] the mission's other keys, whose expiry a
// teardown removes (the retention of the completed mission must not run out
// under its teardown). ARGV[1] reason, ARGV[2] now (unix ms), ARGV[3] lease
// TTL in ms, ARGV[4] index entry deadline (unix ms, see errLate).
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
` + luaLate("ARGV[4]") + `
  teardown = '1'
  redis.call('HSET', KEYS[1], 'state', 'compensating', 'cancelled', '1', 'cancel_reason', ARGV[1],
    'updated', ARGV[2], 'ended', '', 'lease', now + tonumber(ARGV[3]))
  for k = 1, #KEYS do
    redis.call('PERSIST', KEYS[k])
  end
end
local h = redis.call('HGETALL', KEYS[1])
table.insert(h, 1, teardown)
return h
`)

// unindexScript removes a mission from an index (an active-index shard, or
// the mission index) only if its entry still has the score the caller saw
// or wrote: an entry another engine rewrote since (a reopened saga's fresh
// entry, a saga created again under a deleted one's key) stays. With a grace,
// only an entry whose score is older than now - grace by the Redis server's
// clock is removed (recovery's drop of stale entries, see Store.deadline).
//
// KEYS[1] the index. ARGV[1] mission key, ARGV[2] score, ARGV[3] grace in
// ms ("": none). Returns 1 when removed.
var unindexScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] ~= '' then
` + luaNow + `
  if tonumber(s) + tonumber(ARGV[3]) >= now then
    return 0
  end
end
-- A write Redis refuses when out of memory (it changes nothing): the
-- removal that rides behind a saga's ending write must fail where that
-- write failed (see Store.saveEnding).
redis.call('ZADD', KEYS[1], 'XX', s, ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
`)
