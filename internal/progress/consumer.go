package progress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// consumer; any other entry that does not parse is logged and acked, since
// retrying cannot fix it.
// Run returns an error when Redis fails (go-redis has already retried);
// pending entries survive for the next Run.
func (c *Consumer) Run(ctx context.Context, handler func(context.Context, Event) error) error {
	if err := c.createGroup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Reclaim right away (entries a crashed consumer left behind), then at
	// half MinIdle so a reclaimable entry waits at most 1.5 MinIdle plus one
	// Block.
	claimEvery := c.cfg.MinIdle / 2
	var nextClaim time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		if now := time.Now(); !now.Before(nextClaim) {
			nextClaim = now.Add(claimEvery)
			if err := c.reclaim(ctx, handler); err != nil {
				if ctx.Err() != nil {
					return nil
				}
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
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("progress: consumer %s/%s: read %s: %w", c.cfg.Group, c.cfg.Name, c.cfg.Stream, err)
		}
		for _, s := range res {
			if err := c.handle(ctx, handler, s.Messages); err != nil {
				return err
			}
		}
	}
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
// whoever holds it, and handles it.
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
		if err := c.handle(ctx, handler, msgs); err != nil {
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

// handle runs handler over msgs and acks the ones it accepted in one XACK.
// Once ctx ends it stops calling handler: the rest stay pending for a
// reclaim.
func (c *Consumer) handle(ctx context.Context, handler func(context.Context, Event) error, msgs []redis.XMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	done := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		e, err := Parse(m)
		if errors.Is(err, ErrUnsupportedVersion) {
			// Written by a newer slammesh: leave it pending, so that an
			// upgraded consumer of the group reclaims it, rather than lose it
			// during a rolling upgrade.
			c.cfg.Logger.WarnContext(ctx, "progress: stream entry of an unsupported schema version left pending",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "consumer", c.cfg.Name, "entry_id", m.ID, "error", err)
			continue
		}
		if err != nil {
			c.cfg.Logger.ErrorContext(ctx, "progress: dropping malformed stream entry",
				"stream", c.cfg.Stream, "group", c.cfg.Group, "entry_id", m.ID, "error", err)
			done = append(done, m.ID)
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
