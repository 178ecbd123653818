package progress

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of FirehoseOptions.
const (
	// DefaultFirehoseDelay is how long an added event may wait for company
	// before the firehose flushes it alone.
	DefaultFirehoseDelay = 2 * time.Millisecond
	// DefaultFirehoseBatch flushes at once when this many events wait.
	DefaultFirehoseBatch = 512
	// DefaultFirehoseQueue bounds the events waiting; past it Add drops the
	// oldest (the firehose is a copy: the mission streams keep the events).
	DefaultFirehoseQueue = 100_000
)

// FirehoseOptions tune a Firehose; zero fields take the defaults.
type FirehoseOptions struct {
	// MaxLen caps GlobalStream (XADD MAXLEN ~); default DefaultGlobalMaxLen.
	MaxLen int64
	// MaxDelay is the longest an event waits before a flush of its own
	// (default 2ms): the group-commit window. A writer whose round trips
	// are further apart than that (a step service at one mission at a
	// time) sets it longer, so that its copies ride in its next round trip
	// (Take) rather than cost their own; the firehose feeds consumer
	// groups, watchers read the mission streams, written at once.
	MaxDelay time.Duration
	// MaxBatch flushes at once when this many events wait (default 512).
	MaxBatch int
	// MaxQueue bounds the events waiting while Redis is unreachable
	// (default 100000); past it the oldest are dropped and counted.
	MaxQueue int
	// Logger receives flush failures and drops (default slog.Default()).
	Logger *slog.Logger
}

// Firehose copies events to the global stream GlobalStream, after the write
// that appended them to their mission stream committed. The mission stream
// is the source of truth; the firehose is a copy that consumer groups read,
// so it is written outside any per-mission script (the global stream lives
// in another Redis Cluster slot than every mission) and as a group commit:
// events added by concurrent writers within MaxDelay of each other go out in
// one pipelined round trip, and a writer about to send a round trip of its
// own carries the waiting events in it (Take).
//
// What a crash loses: events added and not yet flushed (at most MaxDelay
// worth, or more while Redis is unreachable) never reach the firehose,
// though they are in their mission streams. A flush whose reply is lost is
// retried, so a consumer may see an event twice (consumer groups deliver at
// least once anyway). Safe for concurrent use.
type Firehose struct {
	rdb      redis.UniversalClient
	maxLen   int64
	delay    time.Duration
	maxBatch int
	maxQueue int
	log      *slog.Logger

	mu      sync.Mutex
	pending [][]any // the values of each waiting event, in order
	dropped int
	closed  bool

	kick chan struct{} // an event was added to an empty queue, or a batch filled
	done chan struct{} // closed by Close
	exit chan struct{} // closed when the flusher has returned
	once sync.Once
}

// NewFirehose starts a firehose writing through rdb; Close stops it.
func NewFirehose(rdb redis.UniversalClient, opts FirehoseOptions) *Firehose {
	if opts.MaxLen <= 0 {
		opts.MaxLen = DefaultGlobalMaxLen
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultFirehoseDelay
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultFirehoseBatch
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultFirehoseQueue
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Firehose{
		rdb: rdb, maxLen: opts.MaxLen, delay: opts.MaxDelay, maxBatch: opts.MaxBatch,
		maxQueue: opts.MaxQueue, log: opts.Logger,
		kick: make(chan struct{}, 1), done: make(chan struct{}), exit: make(chan struct{}),
	}
	go f.flusher()
	return f
}

// Add queues entries for the firehose and returns at once. Call it only
// once their events are committed to their mission streams. It skips the
// zero Entry; after Close, it drops them all.
func (f *Firehose) Add(entries ...Entry) {
	if len(entries) == 0 {
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	wasEmpty := len(f.pending) == 0
	for _, e := range entries {
		if e.values != nil { // the zero Entry: an XADD without fields would fail every flush
			f.pending = append(f.pending, e.values)
		}
	}
	f.trimLocked()
	full := len(f.pending) >= f.maxBatch
	f.mu.Unlock()
	if wasEmpty || full {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// trimLocked drops the oldest waiting events past MaxQueue.
func (f *Firehose) trimLocked() {
	if over := len(f.pending) - f.maxQueue; over > 0 {
		f.pending = append(f.pending[:0:0], f.pending[over:]...)
		f.dropped += over
	}
}

// Take moves the waiting events into pipe, the caller's next round trip, so
// that they cost no round trip of their own. The caller must call done once
// that pipeline was executed (whatever its outcome): the events whose XADD
// failed or was never sent are queued again, in front.
func (f *Firehose) Take(pipe redis.Pipeliner) (done func()) {
	f.mu.Lock()
	batch := f.pending
	f.pending = nil
	f.mu.Unlock()
	if len(batch) == 0 {
		return func() {}
	}
	cmds := f.queue(pipe, batch)
	return func() {
		var failed [][]any
		for i, c := range cmds {
			if c.Err() != nil || c.Val() == "" {
				failed = append(failed, batch[i])
			}
		}
		if len(failed) > 0 {
			f.requeue(failed)
		}
	}
}

func (f *Firehose) queue(pipe redis.Pipeliner, batch [][]any) []*redis.StringCmd {
	ctx := context.Background() // a pipeline's commands use the Exec context
	cmds := make([]*redis.StringCmd, len(batch))
	for i, v := range batch {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: GlobalStream, MaxLen: f.maxLen, Approx: true, Values: v})
	}
	return cmds
}

// requeue puts a batch that failed back in front of the queue.
func (f *Firehose) requeue(batch [][]any) {
	f.mu.Lock()
	f.pending = append(batch, f.pending...)
	f.trimLocked()
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Close flushes what waits (bounded by ctx) and stops the firehose; events
// added afterwards are dropped. It returns the error of the last flush.
func (f *Firehose) Close(ctx context.Context) error {
	var err error
	f.once.Do(func() {
		close(f.done)
		<-f.exit
		f.mu.Lock()
		f.closed = true
		batch := f.pending
		f.pending = nil
		f.mu.Unlock()
		if len(batch) > 0 {
			err = f.flush(ctx, batch)
		}
	})
	return err
}

// flusher sends the waiting events MaxDelay after the first of them
// arrived, or at once when a batch is full.
func (f *Firehose) flusher() {
	defer close(f.exit)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	failures := 0
	for {
		select {
		case <-f.done:
			return
		case <-f.kick:
		}
		f.mu.Lock()
		full := len(f.pending) >= f.maxBatch
		f.mu.Unlock()
		if !full {
			timer.Reset(f.delay)
			select {
			case <-f.done:
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		f.mu.Lock()
		batch := f.pending
		f.pending = nil
		dropped := f.dropped
		f.dropped = 0
		f.mu.Unlock()
		if dropped > 0 {
			f.log.Warn("progress: firehose queue full; oldest events dropped from the firehose (their mission streams keep them)",
				"dropped", dropped)
		}
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f.flush(ctx, batch)
		cancel()
		if err == nil {
			failures = 0
			continue
		}
		if failures++; failures == 1 {
			f.log.Warn("progress: firehose write failed; retrying", "events", len(batch), "error", err.Error())
		}
		f.requeue(batch)
		select {
		case <-f.done:
			return
		case <-time.After(min(time.Duration(failures)*50*time.Millisecond, time.Second)):
		}
	}
}

// flush writes batch in one pipelined round trip.
func (f *Firehose) flush(ctx context.Context, batch [][]any) error {
	pipe := f.rdb.Pipeline()
	f.queue(pipe, batch)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("progress: firehose: write %d events: %w", len(batch), err)
	}
	return nil
}
