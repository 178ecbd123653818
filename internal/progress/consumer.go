package progress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of ConsumerConfig.
const (
	// DefaultConsumerBlock lets Run notice cancellation within a second.
	DefaultConsumerBlock = time.Second
	// DefaultConsumerMinIdle is far above any event handler's run time, so a
	// live consumer's entry is not stolen.
	DefaultConsumerMinIdle = time.Minute
	// DefaultConsumerCount batches reads and acks without holding many
	// entries hostage when a consumer dies.
	DefaultConsumerCount = 16
	// DefaultMaxDeliveries is how many times an entry is handed out before
	// it is dead-lettered.
	DefaultMaxDeliveries = 5
	// DefaultDeadLetterMaxLen trims a dead-letter stream (XADD MAXLEN ~).
	DefaultDeadLetterMaxLen = 10_000
	// DefaultDeadLetterTTL is how long a dead-letter stream lives after its
	// last entry: long enough for an operator to look, bounded so that
	// nothing piles up.
	DefaultDeadLetterTTL = 7 * 24 * time.Hour
)

// DeadLetterStream names the dead-letter stream of stream: stream + ":dlq".
// For a mission stream, slammesh:{<id>}:events:dlq keeps the hash tag, so
// it lands in the mission's Redis Cluster slot.
func DeadLetterStream(stream string) string { return stream + ":dlq" }

// Fields a dead-lettered entry carries besides the original entry's.
const (
	fieldDLQSourceID   = "dlq_source_id"
	fieldDLQGroup      = "dlq_group"
	fieldDLQDeliveries = "dlq_deliveries"
	fieldDLQError      = "dlq_error"
)

// ConsumerConfig names a consumer of a consumer group and tunes its reads.
type ConsumerConfig struct {
	// Stream is the stream to consume, usually GlobalStream; required.
	Stream string
	// Group is the consumer group; every replica of one service uses the same
	// group so each entry is handled once across them; required.
	Group string
	// Name identifies this consumer within the group (e.g. host and pid); it
	// must be unique among the group's live consumers; required.
	Name string
	// Block bounds each XREADGROUP wait and so how long Run takes to notice
	// cancellation; default 1s.
	Block time.Duration
	// MinIdle is how long an entry must have been pending, unacked, before
	// any consumer of the group reclaims it with XAUTOCLAIM. It must exceed
	// the longest handler run, or a slow handler's entry is handled twice
	// concurrently. It is also the retry delay of an entry whose handler
	// failed. Default 1m.
	MinIdle time.Duration
	// Count is the most entries fetched per read or reclaim; default 16.
	Count int64
	// MaxDeliveries is how many times an entry is handed out (a handler
	// that keeps failing, a schema version this consumer does not know)
	// before it is moved to DeadLetterStream(Stream) and acked, so that one
	// poison entry is not redelivered forever; default 5.
	MaxDeliveries int64
	// DeadLetterMaxLen trims the dead-letter stream; default 10000.
	DeadLetterMaxLen int64
	// DeadLetterTTL is the expiry the dead-letter stream gets at each new
	// entry; default 7 days.
	DeadLetterTTL time.Duration
	// Logger receives handler failures and malformed entries, which Run
	// survives rather than returns; default slog.Default().
	Logger *slog.Logger
}

// Consumer reads a stream through a consumer group: at-least-once delivery,
// ack after the handler succeeds, entries of failed handlers or crashed
// consumers reclaimed after MinIdle.
type Consumer struct {
	rdb redis.UniversalClient
	cfg ConsumerConfig
}

// NewConsumer checks cfg, fills its defaults and returns a Consumer reading
// through rdb.
func NewConsumer(rdb redis.UniversalClient, cfg ConsumerConfig) (*Consumer, error) {
	switch {
	case cfg.Stream == "":
		return nil, errors.New("progress: consumer: empty Stream")
	case cfg.Group == "":
		return nil, errors.New("progress: consumer: empty Group")
	case cfg.Name == "":
		return nil, errors.New("progress: consumer: empty Name")
	}
	if cfg.Block <= 0 {
		cfg.Block = DefaultConsumerBlock
	}
	if cfg.MinIdle <= 0 {
		cfg.MinIdle = DefaultConsumerMinIdle
	}
	if cfg.Count <= 0 {
		cfg.Count = DefaultConsumerCount
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.DeadLetterMaxLen <= 0 {
		cfg.DeadLetterMaxLen = DefaultDeadLetterMaxLen
	}
	if cfg.DeadLetterTTL <= 0 {
		cfg.DeadLetterTTL = DefaultDeadLetterTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{rdb: rdb, cfg: cfg}, nil
}

// Run creates the group if needed and hands each entry to handler, one at a
// time, until ctx ends; then it returns nil. An entry is acked only when
// handler returns nil; otherwise it stays pending and is handed out again
// (to this or another consumer) once it has been idle for MinIdle. An entry
// of an unknown schema version is left pending the same way, for an upgraded
// consumer. An entry handed out MaxDeliveries times, and at once any entry
// that does not parse (retrying cannot fix it), is moved to the dead-letter
// stream DeadLetterStream(Stream) and acked.
//
// When Redis cannot be reached (it is restarting, failing over), Run waits
// and retries, with a back-off capped at a second, until it can. When the
// group vanishes (Redis restarted empty, or someone destroyed it: NOGROUP),
// Run creates it again and carries on, from the start of what the stream now
// holds. Run returns an error only for a Redis error reply it cannot handle
// (a wrong type, say); pending entries survive for the next Run.
func (c *Consumer) Run(ctx context.Context, handler func(context.Context, Event) error) error {
	for n := 1; ; n++ {
		err := c.createGroup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !c.unreachable(ctx, err, n) {
			return err
		}
	}
	// Reclaim right away (entries a crashed consumer left behind), then at
	// half MinIdle so a reclaimable entry waits at most 1.5 MinIdle plus one
	// Block.
	claimEvery := c.cfg.MinIdle / 2
	var nextClaim time.Time
	failures := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		err := c.step(ctx, handler, &nextClaim, claimEvery)
		if err != nil && !isNoGroup(err) {
			failures++
			if ctx.Err() == nil && c.unreachable(ctx, err, failures) {
				continue
			}
		}
		if err == nil && failures > 0 {
			c.cfg.Logger.InfoContext(ctx, "progress: consumer reaches Redis again",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name, "failures", failures)
			failures = 0
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case isNoGroup(err):
			c.cfg.Logger.WarnContext(ctx, "progress: consumer group gone (Redis restarted empty?); creating it again",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name, "error", err)
			if err := c.createGroup(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if failures++; c.unreachable(ctx, err, failures) {
					continue
				}
				return err
			}
			nextClaim = time.Time{}
		default:
			return err
		}
	}
}

// step reclaims when due, then reads and handles one batch of new entries.
func (c *Consumer) step(ctx context.Context, handler func(context.Context, Event) error, nextClaim *time.Time, claimEvery time.Duration) error {
	if now := time.Now(); !now.Before(*nextClaim) {
		*nextClaim = now.Add(claimEvery)
		if err := c.reclaim(ctx, handler); err != nil {
			return err
		}
	}
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    c.cfg.Group,
		Consumer: c.cfg.Name,
		Streams:  []string{c.cfg.Stream, ">"},
		Count:    c.cfg.Count,
		Block:    c.cfg.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("progress: consumer %s/%s: read %s: %w", c.cfg.Group, c.cfg.Name, c.cfg.Stream, err)
	}
	for _, s := range res {
		if err := c.handle(ctx, handler, s.Messages, nil); err != nil {
			return err
		}
	}
	return nil
}

// unreachable reports whether err says Redis could not be reached (a
// network error, not an error reply), and if so waits before the retry
// number failures: 50 ms per failure, at most a second. The first failure
// of an outage is logged.
func (c *Consumer) unreachable(ctx context.Context, err error, failures int) bool {
	var reply redis.Error
	if errors.As(err, &reply) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	if failures == 1 {
		c.cfg.Logger.WarnContext(ctx, "progress: consumer cannot reach Redis; retrying",
			"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name, "error", err)
	}
	t := time.NewTimer(min(time.Duration(failures)*50*time.Millisecond, time.Second))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// isNoGroup reports a Redis error saying the group is gone: NOGROUP (the
// stream or its group does not exist), or UNBLOCKED (the stream was deleted
// while this consumer was blocked reading it).
func isNoGroup(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED")
}

// createGroup creates the group (and the stream) from the stream's start, so
// a new group sees history. BUSYGROUP means another replica, or an earlier
// run, created it: that is the normal restart path.
func (c *Consumer) createGroup(ctx context.Context) error {
	err := c.rdb.XGroupCreateMkStream(ctx, c.cfg.Stream, c.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("progress: consumer: create group %s on %s: %w", c.cfg.Group, c.cfg.Stream, err)
	}
	return nil
}

// reclaim takes over every entry of the group pending longer than MinIdle,
// whoever holds it, and handles it — or dead-letters it when it has been
// handed out MaxDeliveries times.
func (c *Consumer) reclaim(ctx context.Context, handler func(context.Context, Event) error) error {
	start := "0-0"
	for {
		msgs, next, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream:   c.cfg.Stream,
			Group:    c.cfg.Group,
			Consumer: c.cfg.Name,
			MinIdle:  c.cfg.MinIdle,
			Start:    start,
			Count:    c.cfg.Count,
		}).Result()
		if err != nil {
			return fmt.Errorf("progress: consumer %s/%s: autoclaim %s: %w", c.cfg.Group, c.cfg.Name, c.cfg.Stream, err)
		}
		deliveries, err := c.deliveries(ctx, msgs)
		if err != nil {
			return err
		}
		if err := c.handle(ctx, handler, msgs, deliveries); err != nil {
			return err
		}
		// XAUTOCLAIM scans a bounded slice of the pending list per call and
		// returns "0-0" once the scan has wrapped around.
		if next == "0-0" || ctx.Err() != nil {
			return nil
		}
		start = next
	}
}

// deliveries returns how many times each of msgs (just claimed, so pending
// to this consumer) has been handed out, by entry id, in one XPENDING.
func (c *Consumer) deliveries(ctx context.Context, msgs []redis.XMessage) (map[string]int64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	pending, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream:   c.cfg.Stream,
		Group:    c.cfg.Group,
		Start:    msgs[0].ID,
		End:      msgs[len(msgs)-1].ID,
		Count:    int64(len(msgs)) + c.cfg.Count,
		Consumer: c.cfg.Name,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("progress: consumer %s/%s: pending %s: %w", c.cfg.Group, c.cfg.Name, c.cfg.Stream, err)
	}
	out := make(map[string]int64, len(pending))
	for _, p := range pending {
		out[p.ID] = p.RetryCount
	}
	return out, nil
}

// deadLetter is an entry on its way to the dead-letter stream.
type deadLetter struct {
	msg        redis.XMessage
	deliveries int64
	err        error
}

// handle runs handler over msgs and acks the ones it accepted in one XACK.
// deliveries, for reclaimed entries, says how often each was handed out
// (this time included): those past MaxDeliveries are dead-lettered instead. Once
// ctx ends it stops calling handler: the rest stay pending for a reclaim.
func (c *Consumer) handle(ctx context.Context, handler func(context.Context, Event) error, msgs []redis.XMessage, deliveries map[string]int64) error {
	if len(msgs) == 0 {
		return nil
	}
	done := make([]string, 0, len(msgs))
	var dead []deadLetter
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		n := deliveries[m.ID]
		e, err := Parse(m)
		switch {
		case err != nil && !errors.Is(err, ErrUnsupportedVersion):
			// Nothing can ever handle it.
			dead = append(dead, deadLetter{m, max(n, 1), err})
			continue
		case n > c.cfg.MaxDeliveries:
			if err == nil {
				err = fmt.Errorf("handed out %d times without being handled", n)
			}
			dead = append(dead, deadLetter{m, n, err})
			continue
		case err != nil:
			// Written by a newer slammesh: leave it pending, so that an
			// upgraded consumer of the group reclaims it, rather than lose it
			// during a rolling upgrade — up to MaxDeliveries.
			c.cfg.Logger.WarnContext(ctx, "progress: stream entry of an unsupported schema version left pending",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name, "entry_id", m.ID, "error", err)
			continue
		}
		if err := handler(ctx, e); err != nil {
			c.cfg.Logger.WarnContext(ctx, "progress: handler failed; entry stays pending for a retry",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name,
				"entry_id", m.ID, "mission_id", e.MissionID, "saga_id", e.SagaID,
				"trace_id", e.TraceID, "type", string(e.Type), "error", err)
			continue
		}
		done = append(done, m.ID)
	}
	if len(dead) > 0 {
		if err := c.deadLetter(ctx, dead); err != nil {
			return err
		}
	}
	if len(done) == 0 {
		return nil
	}
	// Ack what was handled even when ctx has just ended, so finished work is
	// not redone; go-redis's read and write timeouts bound the call.
	if err := c.rdb.XAck(context.WithoutCancel(ctx), c.cfg.Stream, c.cfg.Group, done...).Err(); err != nil {
		return fmt.Errorf("progress: consumer %s/%s: ack %d entries of %s: %w", c.cfg.Group, c.cfg.Name, len(done), c.cfg.Stream, err)
	}
	return nil
}

// deadLetter appends each entry, with its original fields and why it was
// given up on, to the dead-letter stream, refreshes that stream's expiry and
// acks the entries — one pipelined round trip of separate commands, not a
// transaction, since the firehose and its dead-letter stream need not share
// a Cluster slot. Should the process die between the append and the ack,
// the entry is dead-lettered twice, never lost.
func (c *Consumer) deadLetter(ctx context.Context, dead []deadLetter) error {
	ctx = context.WithoutCancel(ctx)
	dlq := DeadLetterStream(c.cfg.Stream)
	ids := make([]string, len(dead))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range dead {
			ids[i] = d.msg.ID
			p.XAdd(ctx, &redis.XAddArgs{
				Stream: dlq,
				MaxLen: c.cfg.DeadLetterMaxLen,
				Approx: true,
				Values: deadLetterValues(d, c.cfg.Group),
			})
		}
		p.Expire(ctx, dlq, c.cfg.DeadLetterTTL)
		p.XAck(ctx, c.cfg.Stream, c.cfg.Group, ids...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("progress: consumer %s/%s: dead-letter %d entries of %s: %w", c.cfg.Group, c.cfg.Name, len(dead), c.cfg.Stream, err)
	}
	for _, d := range dead {
		c.cfg.Logger.ErrorContext(ctx, "progress: stream entry moved to the dead-letter stream",
			"stream", c.cfg.Stream, "dead_letter_stream", dlq, "group", c.cfg.Group, "entry_id", d.msg.ID,
			"deliveries", d.deliveries, "error", d.err.Error())
	}
	return nil
}

// deadLetterValues are the fields of a dead-lettered entry: the original
// entry's, in name order, then the dlq_* fields.
func deadLetterValues(d deadLetter, group string) []any {
	names := make([]string, 0, len(d.msg.Values))
	for k := range d.msg.Values {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]any, 0, 2*len(names)+8)
	for _, k := range names {
		out = append(out, k, d.msg.Values[k])
	}
	return append(out,
		fieldDLQSourceID, d.msg.ID,
		fieldDLQGroup, group,
		fieldDLQDeliveries, strconv.FormatInt(d.deliveries, 10),
		fieldDLQError, d.err.Error())
}
