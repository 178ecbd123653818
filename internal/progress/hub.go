package progress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors of Hub.Follow.
var (
	// ErrTooManyWatchers means the hub already serves HubOptions.MaxWatchers
	// watchers.
	ErrTooManyWatchers = errors.New("progress: too many watchers")
	// ErrHubClosed means the hub was closed (the process is draining):
	// watchers should resume on another replica.
	ErrHubClosed = errors.New("progress: hub closed")
)

// Defaults of HubOptions.
const (
	DefaultMaxWatchers = 1000
	// DefaultHubBlock bounds the hub's blocking read: how long a stream that
	// starts being watched may wait before the hub watches it too, and how
	// long Close waits for the read in flight.
	DefaultHubBlock = 200 * time.Millisecond
)

// hubCount is how many entries of one stream the hub's read asks for: it
// only learns that a stream grew, the watchers read the entries themselves.
const hubCount = 64

// HubOptions tune a Hub; zero fields take the defaults.
type HubOptions struct {
	// MaxWatchers caps the watchers following at once; Follow past it
	// fails with ErrTooManyWatchers (default 1000).
	MaxWatchers int
	// Block bounds the hub's blocking read (default 200ms).
	Block time.Duration
	// Skips counts and logs the entries watchers skip (default: a Skips on
	// the global meter provider and slog.Default()).
	Skips *Skips
	// Logger receives Redis failures of the hub's read (default
	// slog.Default()).
	Logger *slog.Logger
	// ClusterPoll is the interval of the hub's polls on a Redis Cluster
	// (default 50ms; see Hub).
	ClusterPoll time.Duration
}

// DefaultClusterPoll is the default HubOptions.ClusterPoll.
const DefaultClusterPoll = 50 * time.Millisecond

// Hub follows many mission streams for many watchers with one blocking
// read: a single goroutine runs XREAD BLOCK over every watched stream and,
// when one grows, wakes its watchers, which read the new entries with
// non-blocking XREADs of their own. A process with a thousand watchers thus
// holds one Redis connection blocked, not a thousand, and its other Redis
// work (saga writes, lease renewals) never queues behind watchers for a
// connection of the pool.
//
// On a Redis Cluster (a *redis.ClusterClient) one XREAD may not name
// streams of different hash slots, and every mission stream has its own:
// the hub then polls instead, one non-blocking XREAD per watched stream in
// one pipeline (which the client splits per node, so one round trip per
// node) every ClusterPoll, so a watcher learns of new entries within
// ClusterPoll rather than at once.
type Hub struct {
	rdb   redis.UniversalClient
	skips *Skips
	log   *slog.Logger
	max   int
	block time.Duration
	// poll > 0: rdb is a Cluster client, read by polling every poll.
	poll time.Duration

	mu       sync.Mutex
	streams  map[string]*hubStream
	watchers int
	closed   bool

	wake     chan struct{} // a stream was added while the loop waited for one
	done     chan struct{} // closed by Close
	loopDone chan struct{}
	once     sync.Once
}

// hubStream is one watched stream: the position of the hub's read (the
// newest entry id it has seen) and its watchers' wake-up channels.
type hubStream struct {
	pos      string
	watchers map[chan struct{}]struct{}
}

// NewHub starts a hub reading through rdb — best a client of its own, so
// that the watchers' reads have their own connection pool. Close stops it.
func NewHub(rdb redis.UniversalClient, opts HubOptions) *Hub {
	if opts.MaxWatchers <= 0 {
		opts.MaxWatchers = DefaultMaxWatchers
	}
	if opts.Block <= 0 {
		opts.Block = DefaultHubBlock
	}
	if opts.Skips == nil {
		opts.Skips = defaultSkips()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClusterPoll <= 0 {
		opts.ClusterPoll = DefaultClusterPoll
	}
	var poll time.Duration
	if _, ok := rdb.(*redis.ClusterClient); ok {
		poll = opts.ClusterPoll
	}
	h := &Hub{
		poll:     poll,
		rdb:      rdb,
		skips:    opts.Skips,
		log:      opts.Logger,
		max:      opts.MaxWatchers,
		block:    opts.Block,
		streams:  make(map[string]*hubStream),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go h.loop()
	return h
}

// Watchers returns how many watchers are following now.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchers
}

// Close ends every Follow with ErrHubClosed, refuses new ones, and stops
// the hub's read (waiting at most its Block for the read in flight).
func (h *Hub) Close() {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		<-h.loopDone
	})
}

// Follow is progress.Follow through the hub: it calls fn with each event
// of the mission's stream after entry id after ("" or "0": from the start),
// in order, until the stream has no more and the events delivered leave
// the mission ended (then it returns nil; see progress.Follow and Ended),
// fn returns an error (returned), ctx ends (ctx.Err()), or the hub closes
// (ErrHubClosed). It fails at once with ErrTooManyWatchers when the hub
// serves its maximum. Entries that cannot be decoded are skipped and
// counted.
func (h *Hub) Follow(ctx context.Context, missionID, after string, fn func(Event) error) error {
	slot, err := h.Acquire()
	if err != nil {
		return err
	}
	defer slot.Release()
	_, err = slot.Follow(ctx, missionID, after, fn)
	return err
}

// Slot is one watcher's place in a hub (Hub.Acquire). A watch that follows
// a mission on past an end — reopened by a teardown or a resume — keeps its
// slot between its follows, so that a hub filled meanwhile cannot fail a
// watch that has already sent events.
type Slot struct {
	h    *Hub
	once sync.Once
}

// Acquire takes a watcher's slot, to be given back with Release. It fails
// with ErrHubClosed, or with ErrTooManyWatchers when the hub serves
// HubOptions.MaxWatchers already.
func (h *Hub) Acquire() (*Slot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, ErrHubClosed
	case h.watchers >= h.max:
		return nil, fmt.Errorf("%w: %d follow their missions already, at most %d", ErrTooManyWatchers, h.watchers, h.max)
	}
	h.watchers++
	return &Slot{h: h}, nil
}

// Release gives the slot back; later calls do nothing.
func (s *Slot) Release() {
	s.once.Do(func() {
		s.h.mu.Lock()
		s.h.watchers--
		s.h.mu.Unlock()
	})
}

// Follow is Hub.Follow in this slot, one follow at a time. It also returns
// the stream position it read to: past the last event delivered when
// undecodable entries followed it, so that a follow on from there does not
// read and count them again.
func (s *Slot) Follow(ctx context.Context, missionID, after string, fn func(Event) error) (string, error) {
	h := s.h
	if after == "" {
		after = "0"
	}
	stream := MissionStream(missionID)
	signal, err := h.register(stream, after)
	if err != nil {
		return after, err
	}
	defer h.unregister(stream, signal)
	ended := false // the events delivered leave the mission ended (Ended)
	for {
		// Read everything there is, then wait for the hub to see more.
		for {
			events, last, err := ReadBatch(ctx, h.rdb, h.skips, stream, after, followCount, 0)
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return after, ctxErr
				}
				return after, err
			}
			if ended, err = deliver(events, fn, ended); err != nil {
				return after, err
			}
			if last == "" {
				break
			}
			after = last
		}
		if ended {
			return after, nil
		}
		select {
		case <-signal:
		case <-ctx.Done():
			return after, ctx.Err()
		case <-h.done:
			return after, ErrHubClosed
		}
	}
}

// register adds a wake-up of stream, whose reads start after id after.
func (h *Hub) register(stream, after string) (chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	st := h.streams[stream]
	if st == nil {
		// Entries up to after are the watcher's first read; the hub reports
		// those after it. A stream already watched keeps its position: the
		// first read of the new watcher covers everything up to it.
		st = &hubStream{pos: after, watchers: make(map[chan struct{}]struct{})}
		h.streams[stream] = st
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	signal := make(chan struct{}, 1)
	st.watchers[signal] = struct{}{}
	return signal, nil
}

func (h *Hub) unregister(stream string, signal chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.streams[stream]
	delete(st.watchers, signal)
	if len(st.watchers) == 0 {
		delete(h.streams, stream)
	}
}

// loop is the hub's one blocking reader.
func (h *Hub) loop() {
	defer close(h.loopDone)
	ctx := context.Background()
	failures := 0
	for {
		keys, ids := h.snapshot()
		if keys == nil {
			select {
			case <-h.wake:
				continue
			case <-h.done:
				return
			}
		}
		res, err := h.read(ctx, keys, ids)
		select {
		case <-h.done:
			return
		default:
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			// Redis is down or restarting: the watchers wait (their own
			// contexts bound them); retry with a capped back-off.
			if failures++; failures == 1 {
				h.log.Warn("progress: hub read failed; retrying", "streams", len(keys), "error", err.Error())
			}
			select {
			case <-time.After(min(time.Duration(failures)*50*time.Millisecond, time.Second)):
			case <-h.done:
				return
			}
			continue
		}
		failures = 0
		h.notify(res)
	}
}

// read waits for entries after ids in the streams keys: one blocking XREAD
// of them all on one Redis, a poll of each on a Cluster (see Hub).
func (h *Hub) read(ctx context.Context, keys, ids []string) ([]redis.XStream, error) {
	if h.poll == 0 {
		return h.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: append(keys, ids...),
			Count:   hubCount,
			Block:   h.block,
		}).Result()
	}
	select {
	case <-time.After(h.poll):
	case <-h.done:
		return nil, redis.Nil
	}
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(keys))
	for i := range keys {
		// A negative Block omits BLOCK: the read does not wait.
		cmds[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{keys[i], ids[i]}, Count: hubCount, Block: -1})
	}
	_, _ = pipe.Exec(ctx)
	var out []redis.XStream
	for _, c := range cmds {
		res, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// snapshot returns the watched streams and the hub's position in each, or
// nil when none is watched. Draining h.wake here means a stream added after
// the snapshot wakes the next wait, never one that already includes it.
func (h *Hub) snapshot() (keys, ids []string) {
	select {
	case <-h.wake:
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.streams) == 0 {
		return nil, nil
	}
	keys = make([]string, 0, len(h.streams))
	ids = make([]string, 0, len(h.streams))
	for k, st := range h.streams {
		keys = append(keys, k)
		ids = append(ids, st.pos)
	}
	return keys, ids
}

// notify moves the hub's position in each stream that grew and wakes its
// watchers.
func (h *Hub) notify(res []redis.XStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range res {
		st := h.streams[s.Stream]
		if st == nil || len(s.Messages) == 0 {
			continue
		}
		st.pos = s.Messages[len(s.Messages)-1].ID
		for signal := range st.watchers {
			select {
			case signal <- struct{}{}:
			default:
			}
		}
	}
}
