package progress

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	// DefaultMissionMaxLen keeps far more than a mission writes (a few dozen
	// events, a few hundred with per-agent progress), so trimming only bounds
	// a runaway writer.
	DefaultMissionMaxLen = 10000
	// DefaultGlobalMaxLen keeps roughly the last few thousand missions for
	// consumers that fall behind.
	DefaultGlobalMaxLen = 100000
	// DefaultEndTTL lets a finished mission be replayed for a day.
	DefaultEndTTL = 24 * time.Hour
)

// Options tunes a Publisher. Zero values take the defaults.
type Options struct {
	// MissionMaxLen caps each mission stream (XADD MAXLEN ~); default 10000.
	MissionMaxLen int64
	// GlobalMaxLen caps the global stream (XADD MAXLEN ~); default 100000.
	GlobalMaxLen int64
	// EndTTL is how long a mission stream lives after its terminal event, so
	// late watchers can still replay the mission; default 24h.
	EndTTL time.Duration
	// Logger receives the failures of advisory publishing that callers drop
	// rather than return (see progressgrpc); default slog.Default().
	Logger *slog.Logger
	// AppendOnly makes the publisher add to mission streams that exist and
	// never create one (XADD NOMKSTREAM; the global stream is written
	// either way). Step services set it: a mission's stream is created by
	// the orchestrator's first event and expired with the mission's other
	// keys, so a late or rejected step call arriving after the stream
	// expired or was deleted must not create a stream that no one would
	// ever expire.
	AppendOnly bool
}

// Publisher appends events to the mission and global streams. It is safe for
// concurrent use; it holds no state besides its client and options.
type Publisher struct {
	rdb           redis.UniversalClient
	missionMaxLen int64
	globalMaxLen  int64
	endTTL        time.Duration
	appendOnly    bool
	logger        *slog.Logger
}

// NewPublisher returns a Publisher writing through rdb.
func NewPublisher(rdb redis.UniversalClient, opts Options) *Publisher {
	p := &Publisher{
		rdb:           rdb,
		missionMaxLen: opts.MissionMaxLen,
		globalMaxLen:  opts.GlobalMaxLen,
		endTTL:        opts.EndTTL,
		appendOnly:    opts.AppendOnly,
		logger:        opts.Logger,
	}
	if p.missionMaxLen <= 0 {
		p.missionMaxLen = DefaultMissionMaxLen
	}
	if p.globalMaxLen <= 0 {
		p.globalMaxLen = DefaultGlobalMaxLen
	}
	if p.endTTL <= 0 {
		p.endTTL = DefaultEndTTL
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	return p
}

// Logger returns the logger of the publisher's options, for callers that log
// and drop a publishing failure instead of returning it.
func (p *Publisher) Logger() *slog.Logger { return p.logger }

// Publish appends events, each to its mission stream and to the global
// stream, in one pipelined round trip (two after a NOSCRIPT), and once to
// its mission stream even when go-redis sends the pipeline again (see
// ResendWindow). Events without a trace id get the one of the span in ctx
// (FillTrace).
func (p *Publisher) Publish(ctx context.Context, events ...Event) error {
	return p.publish(ctx, "", events)
}

// PublishTo is Publish with stream in place of each event's mission stream.
// A step service uses it with the stream its SagaContext names, which the
// orchestrator sets to MissionStream(mission_id).
func (p *Publisher) PublishTo(ctx context.Context, stream string, events ...Event) error {
	if stream == "" {
		return fmt.Errorf("progress: publish %d events: empty stream name", len(events))
	}
	return p.publish(ctx, stream, events)
}

// publish sends events in one pipeline; stream "" means each event's mission
// stream. Each mission stream's events go in one call of appendOnceScript,
// so that a pipeline go-redis sends again after its reply timed out appends
// them once; their copies on the global stream are plain XADDs, which such
// a resend duplicates (its consumer groups deliver at least once anyway).
// They follow the scripts in the pipeline; when Redis had not cached the
// script (NOSCRIPT: a restart, SCRIPT FLUSH), its second send comes one
// round trip after the copies.
func (p *Publisher) publish(ctx context.Context, stream string, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	var batches []*appendOnce
	globals := make([][]any, 0, len(events))
	byStream := make(map[string]*appendOnce, 1)
	pipe := p.rdb.Pipeline()
	perEvent := 0
	for i := range events {
		e := events[i]
		FillTrace(ctx, &e)
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		s := stream
		if s == "" {
			s = MissionStream(e.MissionID)
		}
		values := e.values()
		perEvent = len(values)
		b := byStream[s]
		if b == nil {
			b = &appendOnce{stream: s}
			byStream[s] = b
			batches = append(batches, b)
		}
		b.values = append(b.values, values...)
		b.terminal = b.terminal || e.Type.Terminal()
		globals = append(globals, values)
	}
	// The mission streams first: they are the source of truth, the
	// firehose a copy.
	scripts := make([]*redis.Cmd, len(batches))
	for i, b := range batches {
		scripts[i] = appendOnceScript.EvalSha(ctx, pipe, []string{b.stream}, p.onceArgs(b, perEvent)...)
	}
	copies := make([]*redis.StringCmd, len(globals))
	for i, values := range globals {
		copies[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: GlobalStream, MaxLen: p.globalMaxLen, Approx: true, Values: values})
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	var err error
	for i, c := range scripts {
		e := c.Err()
		if redis.HasErrorPrefix(e, "NOSCRIPT") {
			// Not cached (a new or restarted Redis): it did not run.
			e = appendOnceScript.Eval(ctx, p.rdb, []string{batches[i].stream}, p.onceArgs(batches[i], perEvent)...).Err()
		}
		err = cmp.Or(err, e)
	}
	for _, c := range copies {
		err = cmp.Or(err, c.Err())
	}
	if err != nil {
		return fmt.Errorf("progress: publish %d events (first %s of mission %s): %w",
			len(events), events[0].Type, events[0].MissionID, err)
	}
	return nil
}

// Entry is an event encoded as its stream entry: the field-value pairs of
// the package doc, in order. A writer that puts the same event on its
// mission stream (AppendMission) and on the firehose (Firehose.Add)
// encodes it once. The zero Entry holds no event: both skip it.
type Entry struct{ values []any }

// Encode returns e's entry; an event without a time gets the current one.
// It does not set trace ids: call FillTrace first.
func Encode(e Event) Entry {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return Entry{values: e.values()}
}

// AppendMission queues only e's XADD to stream (a mission stream: NOMKSTREAM
// when Options.AppendOnly, MAXLEN ~ Options.MissionMaxLen) into a caller's
// pipeline: no firehose copy and no EXPIRE. It is what a per-mission Lua
// script may run (every command on the mission's slot); the caller adds the
// firehose copy with a Firehose once that script succeeded.
func (p *Publisher) AppendMission(pipe redis.Pipeliner, stream string, e Entry) {
	if e.values == nil {
		return
	}
	pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, NoMkStream: p.appendOnly, MaxLen: p.missionMaxLen, Approx: true, Values: e.values})
}

// ExpireMission queues the EXPIRE that lets an ended mission's stream go
// after Options.EndTTL. Publish sets it itself when it appends a terminal
// event; a writer that appends through AppendMission calls this.
func (p *Publisher) ExpireMission(pipe redis.Pipeliner, missionID string) {
	p.expire(pipe, MissionStream(missionID))
}

func (p *Publisher) expire(pipe redis.Pipeliner, stream string) {
	pipe.Expire(context.Background(), stream, p.endTTL)
}

// TrimGlobal drops the firehose (GlobalStream) entries older than before,
// with XTRIM MINID ~ (entry ids are Redis server milliseconds), and returns
// how many it dropped. MAXLEN ~ alone bounds the firehose by count, so at a
// low mission rate it would keep events long after their missions expired;
// an orchestrator's janitor calls this with now - retention. Idempotent, so
// every replica may run it; the "~" lets Redis trim whole macro nodes only,
// so a few older entries may stay until the next call.
func TrimGlobal(ctx context.Context, rdb redis.Cmdable, before time.Time) (int64, error) {
	minID := strconv.FormatInt(before.UnixMilli(), 10) + "-0"
	n, err := rdb.XTrimMinIDApprox(ctx, GlobalStream, minID, 0).Result()
	if err != nil {
		return 0, fmt.Errorf("progress: trim %s before %s: %w", GlobalStream, minID, err)
	}
	return n, nil
}
