// Package groupcommit sends the Redis writes of concurrent callers to Redis
// together: group commit (DeWitt et al. 1984, "Implementation techniques for
// main memory database systems", §4; Helland et al. 1987). While one batch is
// in flight, the callers that arrive queue; when it returns, the first of
// them sends everything queued as one pipeline. A caller alone (one mission
// at a time) sends its commands at once, in the round trip it would have
// made anyway; under load, one write and one read carry the commands of
// many sagas, and Redis reads and answers them in one pass instead of one
// per connection.
//
// Batching changes no command's meaning: each script still runs atomically
// and alone, each command keeps its own reply and error, and the commands of
// one caller keep their order (on a Redis Cluster, their order per node, as
// in any pipeline). It only changes which connection carries them.
package groupcommit

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/pipepool"
)

// Defaults of Options.
const (
	DefaultMaxBytes      = 64 << 10
	DefaultMaxBatch      = 512
	DefaultMaxBatchBytes = 1 << 20
)

// Options configures a Group.
type Options struct {
	// Hooks wrap each caller's commands as go-redis wraps a pipeline, in
	// the caller's context: pass the client's tracing hook here, so that
	// each caller's round trip is a span of its own trace (covering its
	// wait in the queue, which is part of its latency). The commands
	// themselves go out in a context without a span, so the client's own
	// hooks record nothing for them in any one caller's trace.
	Hooks []redis.Hook
	// MaxBytes is the size of a call's arguments (strings and byte slices
	// by length, numbers 8) above which it is sent alone, on its own
	// connection, rather than batched: a merged map's cells must not hold
	// up the round trips of the sagas behind it. ≤ 0: DefaultMaxBytes.
	MaxBytes int
	// MaxBatch and MaxBatchBytes bound a batch, in commands and in bytes
	// of arguments (a call alone may exceed them): go-redis reads all of a
	// pipeline's replies under one read timeout and retries a pipeline
	// that timed out whole, so an unbounded batch of slow scripts would
	// fail, again and again, writes that alone would succeed.
	// ≤ 0: DefaultMaxBatch, DefaultMaxBatchBytes.
	MaxBatch, MaxBatchBytes int
}

// Group batches the commands of concurrent Exec calls on one client. At
// most one batch is in flight at a time. The zero value is not usable; use
// New. A Group is safe for concurrent use.
type Group struct {
	rdb                               redis.UniversalClient
	pipes                             *pipepool.Pool
	maxBytes, maxBatch, maxBatchBytes int
	// exec is g.dispatch wrapped in Options.Hooks.
	exec redis.ProcessPipelineHook

	mu    sync.Mutex
	busy  bool // a batch is in flight, or its successor is being handed the lead
	queue []*call
}

// call is one Exec waiting in the queue.
type call struct {
	ctx  context.Context
	cmds []redis.Cmder
	size int // bytes of arguments
	// queued is true while the call waits in Group.queue (under
	// Group.mu): until then it may leave on cancellation.
	queued bool
	// turn receives true when the call is to lead the next batch, false
	// when a batch that carried its commands returned.
	turn chan bool
}

// New returns a group on rdb.
func New(rdb redis.UniversalClient, opts Options) *Group {
	g := &Group{rdb: rdb, pipes: pipepool.New(rdb), maxBytes: opts.MaxBytes, maxBatch: opts.MaxBatch, maxBatchBytes: opts.MaxBatchBytes}
	if g.maxBytes <= 0 {
		g.maxBytes = DefaultMaxBytes
	}
	if g.maxBatch <= 0 {
		g.maxBatch = DefaultMaxBatch
	}
	if g.maxBatchBytes <= 0 {
		g.maxBatchBytes = DefaultMaxBatchBytes
	}
	g.exec = g.dispatch
	for i := len(opts.Hooks) - 1; i >= 0; i-- {
		g.exec = opts.Hooks[i].ProcessPipelineHook(g.exec)
	}
	return g
}

// Exec sends cmds to Redis, batched with the commands of concurrent calls,
// and returns once their replies are in. Each command holds its own reply
// and error, as after redis.Pipeliner.Exec; the error returned is the first
// command's error, if any. A call cancelled while its commands wait in the
// queue leaves it and fails them with ctx.Err(); once they are sent, it
// waits for their replies. A call past MaxBytes, or with an argument other
// than a string, string pointer, byte slice, number or bool (which go-redis
// might fail to write, failing the whole pipeline), goes alone.
func (g *Group) Exec(ctx context.Context, cmds []redis.Cmder) error {
	if len(cmds) == 0 {
		return nil
	}
	return g.exec(ctx, cmds)
}

// dispatch is Exec within the hooks.
func (g *Group) dispatch(ctx context.Context, cmds []redis.Cmder) error {
	n, plain := size(cmds)
	if !plain || n > g.maxBytes {
		g.send(ctx, &call{cmds: cmds})
		return firstErr(cmds)
	}
	return g.enqueue(&call{ctx: ctx, cmds: cmds, size: n})
}

// enqueue leads a batch of c at once when none is in flight, else waits for
// c's commands to go in one.
func (g *Group) enqueue(c *call) error {
	ctx, cmds := c.ctx, c.cmds
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		g.lead(c, nil)
		return firstErr(cmds)
	}
	c.queued, c.turn = true, make(chan bool, 1)
	g.queue = append(g.queue, c)
	g.mu.Unlock()

	var lead bool
	select {
	case lead = <-c.turn:
	case <-ctx.Done():
		g.mu.Lock()
		if c.queued {
			g.remove(c)
			g.mu.Unlock()
			for _, cmd := range cmds {
				cmd.SetErr(ctx.Err())
			}
			return ctx.Err()
		}
		g.mu.Unlock()
		// Taken into a batch, or handed the lead: the commands are the
		// group's until their batch returns.
		lead = <-c.turn
	}
	if lead {
		g.mu.Lock()
		rest := g.take(c)
		g.mu.Unlock()
		g.lead(c, rest)
	}
	return firstErr(cmds)
}

// take removes from the queue the calls that join c's batch, in their
// order, within the batch's bounds (g.mu held).
func (g *Group) take(c *call) []*call {
	cmds, bytes := len(c.cmds), c.size
	n := 0
	for _, o := range g.queue {
		if cmds+len(o.cmds) > g.maxBatch || bytes+o.size > g.maxBatchBytes {
			break
		}
		cmds, bytes = cmds+len(o.cmds), bytes+o.size
		o.queued = false
		n++
	}
	rest := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	return rest
}

// lead sends the batch of c and others, hands the lead to the first call
// that queued meanwhile, and tells the others their replies are in.
func (g *Group) lead(c *call, others []*call) {
	ctx := c.ctx
	if len(others) > 0 {
		// The batch is everyone's: the leader's cancellation must not
		// fail the others' commands.
		ctx = context.WithoutCancel(ctx)
	}
	g.send(ctx, c, others...)

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		g.queue = g.queue[1:]
		next.queued = false
		next.turn <- true
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for _, o := range others {
		o.turn <- false
	}
}

// send runs the commands of c and then others' as one pipeline, in ctx
// without its span. Each command holds its own reply and error.
func (g *Group) send(ctx context.Context, c *call, others ...*call) {
	ctx = unspanned(ctx)
	p := g.pipes.Get()
	defer g.pipes.Put(p)
	for _, cmd := range c.cmds {
		_ = p.Process(ctx, cmd)
	}
	for _, o := range others {
		for _, cmd := range o.cmds {
			_ = p.Process(ctx, cmd)
		}
	}
	_, _ = p.Exec(ctx)
}

// Send runs pipe's commands through g, or as pipe's own round trip when g
// is nil: the door for code whose group commit is optional. Each command
// holds its own reply and error.
func (g *Group) Send(ctx context.Context, pipe redis.Pipeliner) {
	if g == nil {
		_, _ = pipe.Exec(ctx)
		return
	}
	_ = g.Exec(ctx, pipe.Cmds())
}

// remove takes c out of the queue (g.mu held).
func (g *Group) remove(c *call) {
	for i, o := range g.queue {
		if o == c {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return
		}
	}
}

// unspanned is ctx without its span: a batch's span would sit in the
// leader's trace and list the others' commands, and a call's own span is
// Options.Hooks' to record.
func unspanned(ctx context.Context) context.Context {
	return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
}

// firstErr is the first error among cmds' replies, as Pipeliner.Exec
// returns it.
func firstErr(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

// size is the bytes of cmds' arguments (strings, string pointers and byte
// slices by length, numbers and bools 8), and whether all of them are of
// those kinds.
func size(cmds []redis.Cmder) (n int, plain bool) {
	for _, cmd := range cmds {
		for _, a := range cmd.Args() {
			switch v := a.(type) {
			case string:
				n += len(v)
			case *string: // progress entries' values
				if v == nil {
					return n, false
				}
				n += len(*v)
			case []byte:
				n += len(v)
			case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, bool:
				n += 8
			default:
				return n, false
			}
		}
	}
	return n, true
}

// Scripter returns g as a redis.Scripter, for redis.Script.Run: EVAL and
// EVALSHA (and their read-only forms) go through Exec, batched; SCRIPT
// EXISTS and SCRIPT LOAD go straight to the client.
func (g *Group) Scripter() redis.Scripter { return scripter{g} }

type scripter struct{ g *Group }

// run sends the one command queue builds (on a pipeline, which builds it as
// the client would, keys and arguments flattened, and only queues it)
// through the group.
func (s scripter) run(ctx context.Context, queue func(p redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	p := s.g.pipes.Get()
	cmd := queue(p)
	s.g.pipes.Put(p)
	_ = s.g.Exec(ctx, []redis.Cmder{cmd})
	return cmd
}

func (s scripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.Eval(ctx, script, keys, args...) })
}

func (s scripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.EvalSha(ctx, sha1, keys, args...) })
}

func (s scripter) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.EvalRO(ctx, script, keys, args...) })
}

func (s scripter) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.EvalShaRO(ctx, sha1, keys, args...) })
}

func (s scripter) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return s.g.rdb.ScriptExists(ctx, hashes...)
}

func (s scripter) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return s.g.rdb.ScriptLoad(ctx, script)
}
