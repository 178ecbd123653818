package barrier

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// stepScript is the whole barrier of one call, on the keys of one mission
// (one Redis Cluster slot). It runs atomically on the server: no other
// command interleaves between reading the marks and writing the new ones, so
// the decision is taken on the marks as they are at the commit.
//
// KEYS[1] barrier hash (saga, action, compensation, result, and call: the
// tokens of the last 8 action calls that announced, space-separated),
// KEYS[2] effects hash, KEYS[3] owner hash (unused without an owner),
// KEYS[4..] the business keys of the plan (declared for Redis Cluster
// routing; the commands below name them again).
//
// ARGV[1] mode: "act" (decide, then apply the plan), "probe-act" (decide
// only), "comp" (decide, then apply the undo), "probe-comp" (decide, and
// mark a null compensation). ARGV[2] saga id, ARGV[3] step, ARGV[4] "1" to
// check the owner, ARGV[5] the action's result, ARGV[6] number of
// preconditions, ARGV[7] number of business commands, ARGV[8] number of
// announcement commands, ARGV[9] the call's token (callToken); then the
// preconditions as (key, field, present, value) quadruples (field "" for a
// string key; present "0" expects the field/key to be missing; fields of
// one hash stated one after another are read with one HMGET), then the
// business commands and the announcements, each as its argument count
// followed by its arguments.
//
// Returns {status[, detail]}: gone, mismatch <stored or owner's saga>, forbidden,
// dup [<result>], null, run [<result>], stale, applied.
var stepScript = redis.NewScript(`
local mode = ARGV[1]
if ARGV[4] == '1' then
  if redis.call('PTTL', KEYS[3]) ~= -1 then return {'gone'} end
  local owner = redis.call('HGET', KEYS[3], 'saga_id')
  if owner and owner ~= ARGV[2] then return {'mismatch', owner} end
end
local m = redis.call('HMGET', KEYS[1], 'saga', 'action', 'compensation', 'result', 'call')
if m[1] and m[1] ~= ARGV[2] then return {'mismatch', m[1]} end
local nexp, nw, na = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 10
local expects = i
i = i + 4 * nexp
local writes = i
for _ = 1, nw do i = i + 1 + tonumber(ARGV[i]) end
local announce = i
local function run(at, n)
  for _ = 1, n do
    local argc = tonumber(ARGV[at])
    redis.call(unpack(ARGV, at + 1, at + argc))
    at = at + 1 + argc
  end
end
local function fresh()
  local k = 0
  while k < nexp do
    local a = expects + 4 * k
    local n, v = 1, nil
    if ARGV[a + 1] == '' then
      v = {redis.call('GET', ARGV[a])}
    else
      -- The fields stated on this hash one after another (up to a
      -- thousand, well within unpack's limit): one HMGET. The checks keep
      -- the order stated, so a failing one still answers before a later
      -- read of another key could fail.
      local fields = {ARGV[a + 1]}
      while k + n < nexp and n < 1000 and ARGV[a + 4 * n] == ARGV[a] and ARGV[a + 4 * n + 1] ~= '' do
        fields[n + 1] = ARGV[a + 4 * n + 1]
        n = n + 1
      end
      v = redis.call('HMGET', ARGV[a], unpack(fields))
    end
    for j = 0, n - 1 do
      local b = a + 4 * j
      if ARGV[b + 2] == '0' then
        if v[j + 1] then return false end
      elseif v[j + 1] ~= ARGV[b + 3] then
        return false
      end
    end
    k = k + n
  end
  return true
end
if mode == 'act' or mode == 'probe-act' then
  if m[3] then return {'forbidden'} end
  if m[2] then
    -- A call announces once: the same call sent again (go-redis resends
    -- a script whose reply timed out) finds its own token among those of
    -- the last 8 calls that announced, even when Redis runs a later call
    -- (the orchestrator's retry) between the two sends.
    if na > 0 and not string.find(' ' .. (m[5] or '') .. ' ', ' ' .. ARGV[9] .. ' ', 1, true) then
      run(announce, na)
      local calls = {}
      for t in string.gmatch(m[5] or '', '%S+') do calls[#calls + 1] = t end
      calls[#calls + 1] = ARGV[9]
      redis.call('HSET', KEYS[1], 'call', table.concat(calls, ' ', math.max(1, #calls - 7)))
    end
    return {'dup', m[4] or ''}
  end
  if mode == 'probe-act' then return {'run'} end
  if not fresh() then return {'stale'} end
  run(writes, nw)
  if na > 0 then
    redis.call('HSET', KEYS[1], 'saga', ARGV[2], 'action', 'done', 'result', ARGV[5], 'call', ARGV[9])
  else
    redis.call('HSET', KEYS[1], 'saga', ARGV[2], 'action', 'done', 'result', ARGV[5])
  end
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':action', 1)
  run(announce, na)
  return {'applied'}
end
if m[3] then return {'dup'} end
if not m[2] then
  redis.call('HSET', KEYS[1], 'saga', ARGV[2], 'compensation', 'null')
  return {'null'}
end
if mode == 'probe-comp' then return {'run', m[4] or ''} end
if not fresh() then return {'stale'} end
run(writes, nw)
redis.call('HDEL', KEYS[1], 'result', 'call')
redis.call('HSET', KEYS[1], 'compensation', 'done')
redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':compensation', 1)
return {'applied'}
`)

// Scripts returns the Lua scripts of the package, for a test that runs every
// script against a Redis Cluster (each touches keys of one slot).
func Scripts() []*redis.Script { return []*redis.Script{stepScript} }

// Script modes (ARGV[1]).
const (
	modeAct       = "act"
	modeProbeAct  = "probe-act"
	modeComp      = "comp"
	modeProbeComp = "probe-comp"
)

// expectation is one precondition of a plan.
type expectation struct {
	key, field string
	present    bool
	value      string
}

// multiKey lists the commands whose every argument is a key; any other
// command a plan records names its one key first (HSET, HDEL, INCRBY, XADD,
// EXPIRE, ZADD, ...).
var multiKey = map[string]bool{"del": true, "unlink": true, "exists": true, "touch": true}

// encode appends cmds to argv as (argc, args...) and their keys to keys.
func encode(argv []any, keys []string, cmds []redis.Cmder) ([]any, []string, error) {
	for _, c := range cmds {
		args := c.Args()
		if len(args) < 2 {
			return nil, nil, fmt.Errorf("barrier: command %v names no key", args)
		}
		name, _ := args[0].(string)
		last := 2
		if multiKey[strings.ToLower(name)] {
			last = len(args)
		}
		for _, a := range args[1:last] {
			k, ok := a.(string)
			if !ok {
				return nil, nil, fmt.Errorf("barrier: command %s: key %v is not a string", name, a)
			}
			keys = addKey(keys, k)
		}
		argv = append(argv, len(args))
		argv = append(argv, args...)
	}
	return argv, keys, nil
}

// addKey appends k to keys unless present (plans name a handful of keys).
func addKey(keys []string, k string) []string {
	for _, have := range keys {
		if have == k {
			return keys
		}
	}
	return append(keys, k)
}
