package barrier

import (
	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/pipepool"
)

// Tx is the plan of one barrier call: the business writes that commit with
// the barrier mark, the preconditions they rest on, and the announcements
// (progress events) written whenever the call succeeds. Nothing is sent to
// Redis while it is built: Commit (or Action, Compensate) sends the whole
// plan with the barrier's check in one script.
type Tx struct {
	rdb      redis.UniversalClient
	pipes    *pipepool.Pool
	writes   redis.Pipeliner
	announce redis.Pipeliner
	expects  []expectation
	carry    func(pipe redis.Pipeliner) (done func())
}

// NewTx returns an empty plan for Commit.
func (b *Barrier) NewTx() *Tx { return &Tx{rdb: b.rdb, pipes: b.pipes} }

// Reader returns a client for the reads a plan is derived from. Reads are
// not part of the commit: whatever a plan relies on that another writer may
// change must be stated with Expect, which the commit checks.
func (t *Tx) Reader() redis.Cmdable { return t.rdb }

// Expect makes the commit conditional on hash field field of key holding
// value (field "": the string key holding value). When it does not, nothing
// is written and the call is redone (Action, Compensate) or fails with
// ErrStale (Commit). A precondition stated twice is checked once.
// Preconditions are checked in the order stated; fields of one hash stated
// one after another are read with one command.
func (t *Tx) Expect(key, field, value string) {
	t.expect(expectation{key: key, field: field, present: true, value: value})
}

// ExpectMissing is Expect for a field (field "": a key) that must not exist.
func (t *Tx) ExpectMissing(key, field string) {
	t.expect(expectation{key: key, field: field})
}

// expect adds e unless the plan states it already (a merge on a stated map
// expects its map id both as the head it fuses onto and as the map it was
// told of).
func (t *Tx) expect(e expectation) {
	for _, have := range t.expects {
		if have == e {
			return
		}
	}
	t.expects = append(t.expects, e)
}

// Write queues business writes: fn is called with a pipeline that only
// records commands, which the commit replays in the barrier's script. Every
// command must name its key(s) in its first argument(s) (all the string,
// hash, sorted set and stream writes do, and DEL), and every key must be in
// the mission's Redis Cluster slot.
func (t *Tx) Write(fn func(pipe redis.Pipeliner)) {
	if t.writes == nil {
		t.writes = t.pipes.Get()
	}
	fn(t.writes)
}

// Announce queues writes that commit whenever an action call succeeds —
// applied, or answered as a duplicate — such as the step's progress events
// on the mission stream. Compensations ignore them.
func (t *Tx) Announce(fn func(pipe redis.Pipeliner)) {
	if t.announce == nil {
		t.announce = t.pipes.Get()
	}
	fn(t.announce)
}

// Carry sends other commands in the same pipeline as Commit's script, so
// that they cost no round trip of their own: writes outside the mission's
// slot that need no atomicity with the commit and go out whatever it
// answers (the firehose copies of earlier calls' events, progress.Firehose
// Take). queue queues them and returns what to call once the pipeline was
// executed. Action and Compensate ignore it.
func (t *Tx) Carry(queue func(pipe redis.Pipeliner) (done func())) { t.carry = queue }

// cmds returns the commands recorded in p, nil for no pipeline.
func cmds(p redis.Pipeliner) []redis.Cmder {
	if p == nil {
		return nil
	}
	return p.Cmds()
}

// release returns the plan's recording pipelines to the pool once the plan
// committed (nil: no plan); a later Write or Announce starts another.
func (t *Tx) release() {
	if t == nil {
		return
	}
	if t.writes != nil {
		t.pipes.Put(t.writes)
		t.writes = nil
	}
	if t.announce != nil {
		t.pipes.Put(t.announce)
		t.announce = nil
	}
}
