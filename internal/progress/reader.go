package progress

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// followBlock bounds each blocking read of Follow: go-redis does not abort a
// blocked XREAD when its context ends, so this is how long Follow may take to
// notice cancellation.
const followBlock = time.Second

// followCount is how many entries Follow asks for per read; a mission writes
// a few dozen events, so one read usually catches a late watcher up.
const followCount = 256

// Read returns up to count events (count <= 0: all there are) of stream
// after entry id after ("0" or "" means from the start), waiting up to block
// for one to arrive. block <= 0 does not wait; there is no way to block
// forever, so callers keep noticing cancellation. It returns nil, nil when
// nothing arrived in time. Entries that cannot be decoded are skipped and
// counted (see Skips); a caller that reads on from the last event it got
// may read them again, which ReadBatch avoids.
func Read(ctx context.Context, rdb redis.UniversalClient, stream, after string, count int64, block time.Duration) ([]Event, error) {
	events, _, err := ReadBatch(ctx, rdb, nil, stream, after, count, block)
	return events, err
}

// ReadBatch is Read that also returns last, the id of the last entry read
// whether it decoded or not ("" when nothing arrived): the position to read
// on from, past any skipped entry. Skipped entries are recorded in skips
// (nil: a Skips on the global meter provider and slog.Default()).
func ReadBatch(ctx context.Context, rdb redis.UniversalClient, skips *Skips, stream, after string, count int64, block time.Duration) (events []Event, last string, err error) {
	if after == "" {
		after = "0"
	}
	if block <= 0 {
		// go-redis sends BLOCK for any Block >= 0, and BLOCK 0 waits forever;
		// a negative Block omits it.
		block = -1
	}
	res, err := rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{stream, after},
		Count:   count,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("progress: read %s after %s: %w", stream, after, err)
	}
	if len(res) == 0 {
		return nil, "", nil
	}
	if skips == nil {
		skips = defaultSkips()
	}
	events, last = decode(ctx, skips, stream, res[0].Messages)
	return events, last, nil
}

// Range returns every event of stream, oldest first, skipping (and
// counting) entries that cannot be decoded. It reads the whole stream in
// one reply, which suits tests and tools, not the global stream of a busy
// deployment.
func Range(ctx context.Context, rdb redis.UniversalClient, stream string) ([]Event, error) {
	msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("progress: range %s: %w", stream, err)
	}
	events, _ := decode(ctx, defaultSkips(), stream, msgs)
	return events, nil
}

// Follow calls fn with each event of the mission's stream after entry id
// after ("" or "0": from the start), in order, until the stream has no more
// and the events delivered leave the mission ended (see Ended; then it
// returns nil), fn returns an error (Follow returns it), or ctx ends (Follow
// returns ctx.Err() within about a second). A terminal event followed by a
// new chapter (a finished mission torn down, or a failed one resumed) does
// not end it: the mission's outcome is its last terminal event, as
// GetMission's state. A step's late event after a terminal one is
// delivered and reopens nothing.
// A watcher resumes by passing the ID of the last event it saw. Entries that
// cannot be decoded are skipped and counted (see Skips).
//
// Follow waits for a mission that has not written anything yet (or whose
// stream has expired), so callers check that the mission exists first. Each
// Follow holds a Redis connection in a blocking read; a process with many
// watchers uses a Hub instead.
func Follow(ctx context.Context, rdb redis.UniversalClient, missionID, after string, fn func(Event) error) error {
	stream := MissionStream(missionID)
	ended := false // the events delivered leave the mission ended (Ended)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		block := followBlock
		if ended {
			block = 0 // is there more after it? Don't wait for it.
		}
		events, last, err := ReadBatch(ctx, rdb, nil, stream, after, followCount, block)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return err
		}
		if ended && last == "" {
			return nil
		}
		if ended, err = deliver(events, fn, ended); err != nil {
			return err
		}
		if last != "" {
			after = last
		}
	}
}

// deliver calls fn with each event in order and reports whether the
// mission has ended after them: a terminal event ends it, and only a new
// chapter (Type.reopens) after it opens it again (ended is the state
// before the events).
func deliver(events []Event, fn func(Event) error, ended bool) (bool, error) {
	for _, e := range events {
		if err := fn(e); err != nil {
			return ended, err
		}
		ended = Ended(ended, e.Type)
	}
	return ended, nil
}

// Ended is whether a mission has ended after an event of type t, given
// whether it had before: a terminal event ends it, a new chapter (a
// teardown, a resume) opens it again, and any other event leaves it as it
// was, so that a step's late event after the end does not reopen it.
func Ended(before bool, t Type) bool {
	switch {
	case t.Terminal():
		return true
	case t.reopens():
		return false
	}
	return before
}
