// Package pipepool reuses go-redis pipelines. A pipeline costs a handful of
// allocations to make (the struct and the closures go-redis binds to it)
// and its command slice grows as commands are queued; the barrier, the saga
// store and the group commit each build several per step call, most of them
// only to record commands that a Lua script then replays. Reusing them
// removes those allocations from every step call.
package pipepool

import (
	"sync"

	"github.com/redis/go-redis/v9"
)

// Pool hands out empty pipelines of one client. It is safe for concurrent
// use; a pipeline it hands out belongs to one goroutine until Put.
type Pool struct {
	pool sync.Pool
}

// New returns a pool of rdb's pipelines.
func New(rdb redis.UniversalClient) *Pool {
	return &Pool{pool: sync.Pool{New: func() any { return rdb.Pipeline() }}}
}

// Get returns an empty pipeline.
func (p *Pool) Get() redis.Pipeliner { return p.pool.Get().(redis.Pipeliner) }

// Put discards pipe's queued commands and keeps pipe for a later Get. The
// caller must not use pipe again, nor a slice its Cmds returned (the next
// user queues into the same array); commands it queued stay the caller's
// to read.
func (p *Pool) Put(pipe redis.Pipeliner) {
	pipe.Discard()
	p.pool.Put(pipe)
}
