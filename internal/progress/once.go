package progress

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// ResendWindow is how many of a stream's newest entries, besides as many as
// the batch holds, appendOnceScript looks through for each event it is
// asked to append. A copy of the event is there only when go-redis sent
// the same publish again after its reply timed out (a Redis stall past the
// read timeout, or a reply lost), and what can land after the first send's
// batch and before the second is a few events: the writes of the mission's
// other writers, each of which waits on Redis for its own write before the
// next (the orchestrator's record write, a retried call of the step).
const ResendWindow = 32

// appendOnceScript appends a batch of events to one mission stream, each
// unless it is among the stream's newest entries already (ResendWindow
// besides the batch's own): a batch sent again (go-redis resends a
// pipeline whose reply timed out) is written once, whichever of the two
// sends Redis runs first, and an event that a barrier commit wrote before
// its reply was lost is not written again by the step's failure report. An
// event is identified by all its fields: its ts (nanoseconds) and span id
// make two distinct events differ.
//
// KEYS[1] the stream. ARGV[1] "1" for NOMKSTREAM (Options.AppendOnly),
// ARGV[2] MAXLEN ~, ARGV[3] how many of the newest entries to look through
// (ResendWindow plus the batch's events), ARGV[4] the stream's PEXPIRE in
// milliseconds after a terminal event, "" for none, ARGV[5] the number of
// values per event (field-value pairs, in Event.values order), then the
// events' values one event after another.
//
// Returns the number of events appended: 0 when all were there, or when
// the stream does not exist under NOMKSTREAM.
var appendOnceScript = redis.NewScript(`
local n = tonumber(ARGV[5])
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])
local function present(at)
  for _, entry in ipairs(newest) do
    local f = entry[2]
    if #f == n then
      -- From the last value, ts: it differs first.
      local j = n
      while j > 0 and f[j] == ARGV[at + j - 1] do j = j - 1 end
      if j == 0 then return true end
    end
  end
  return false
end
local added = 0
for at = 6, #ARGV, n do
  if not present(at) then
    local id
    if ARGV[1] == '1' then
      id = redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, at, at + n - 1))
    else
      id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, at, at + n - 1))
    end
    if not id then return added end
    added = added + 1
  end
end
if added > 0 and ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return added
`)

// Scripts returns the Lua scripts of the package, for a test that runs every
// script against a Redis Cluster (each touches keys of one slot).
func Scripts() []*redis.Script { return []*redis.Script{appendOnceScript} }

// appendOnce is one call of appendOnceScript: a batch of one stream.
type appendOnce struct {
	stream string
	// terminal: the batch holds a terminal event, so the stream expires.
	terminal bool
	values   []any
}

// onceArgs returns appendOnceScript's arguments for the batch; perEvent is
// the number of values of each event.
func (p *Publisher) onceArgs(b *appendOnce, perEvent int) []any {
	nomk, expire := "0", ""
	if p.appendOnly {
		nomk = "1"
	}
	if b.terminal {
		// At least 1 ms: PEXPIRE 0 would delete the stream.
		expire = strconv.FormatInt(max(p.endTTL.Milliseconds(), 1), 10)
	}
	window := ResendWindow + len(b.values)/perEvent
	return append([]any{nomk, p.missionMaxLen, window, expire, perEvent}, b.values...)
}
