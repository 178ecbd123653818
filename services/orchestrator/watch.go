package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

// watchBatch is how many events one stream read returns to a watcher.
const watchBatch = 256

// reasonTooManyWatchers is the ErrorInfo reason of a watch refused because
// this orchestrator serves Config.MaxWatchers already (docs/architecture.md).
const reasonTooManyWatchers = "TOO_MANY_WATCHERS"

// newHub builds the server's stream hub: one blocking read for all watchers,
// on deps.StreamRedis when given, capped at cfg.MaxWatchers; the entries it
// skips are recorded in skips.
func newHub(cfg Config, deps Deps, skips *progress.Skips, log *slog.Logger) *progress.Hub {
	rdb := deps.StreamRedis
	if rdb == nil {
		rdb = deps.Redis
	}
	return progress.NewHub(rdb, progress.HubOptions{
		MaxWatchers: cfg.MaxWatchers,
		Skips:       skips,
		Logger:      log,
	})
}

// WatchMission streams a mission's events from its start (or after
// from_stream_id) until it ends: its last terminal event (see follow and
// replay). For a mission that has
// already ended it replays what is left of the stream and returns, so a
// watcher that resumes after the last event does not hang. Entries of the
// stream that cannot be decoded are skipped (and counted). Past
// Config.MaxWatchers it fails RESOURCE_EXHAUSTED; when the server starts
// draining it ends with UNAVAILABLE, and the client resumes on another
// replica from the last event id it got.
func (s *Server) WatchMission(req *orchestratorv1.WatchMissionRequest, stream grpc.ServerStreamingServer[orchestratorv1.WatchMissionResponse]) error {
	ctx := stream.Context()
	key := req.GetMissionId()
	if err := checkMissionID("mission_id", key); err != nil {
		return err
	}
	from := req.GetFromStreamId()
	if from != "" && !isStreamID(from) {
		return rpcerr.InvalidArgument("from_stream_id", "not a stream entry id such as 1700000000000-0")
	}
	rec, err := s.store.Load(ctx, key)
	if err != nil {
		return s.loadError(ctx, key, err)
	}
	send := func(e progress.Event) error {
		if err := stream.Send(&orchestratorv1.WatchMissionResponse{Event: progressgrpc.ToProto(e)}); err != nil {
			return fmt.Errorf("send event: %w", err)
		}
		return nil
	}
	if !rec.State.Terminal() {
		err = s.follow(ctx, key, from, send)
	} else {
		err = s.replay(ctx, key, from, send)
	}
	if err == nil {
		return nil
	}
	return s.watchError(ctx, "watch mission", err)
}

// DefaultLostCheckInterval is Config.LostCheckInterval's default.
const DefaultLostCheckInterval = 5 * time.Second

// follow is the hub's Follow of mission key's events after after, to the
// mission's end: when the hub's Follow ends at a terminal event, the record
// says whether that is the end. A cancel of a completed mission, or a
// resume of a failed one, sets its record COMPENSATING before the new
// chapter's first event, so a watch begun in between would otherwise end
// at the old terminal event; while the record is not terminal, the watch
// follows on from where it read to, in the hub slot it holds throughout.
func (s *Server) follow(ctx context.Context, key, after string, fn func(progress.Event) error) error {
	slot, err := s.hub.Acquire()
	if err != nil {
		return err
	}
	defer slot.Release()
	for {
		pos, err := s.followOnce(ctx, slot, key, after, fn)
		if err != nil && !errors.Is(err, errRecordEnded) {
			return err
		}
		after = pos
		// Past the end the watch delivered, a record it cannot read (gone,
		// or Redis failing) ends it as it stands.
		st, err := s.store.State(ctx, key)
		if err != nil {
			return nil
		}
		if st.Terminal() {
			_, _, err := s.drain(ctx, key, after, fn)
			return err
		}
	}
}

// errRecordEnded ends a followOnce whose record turned terminal while no
// event came: its terminal event cannot be decoded (a schema this reader
// does not know), so the hub would never deliver it.
var errRecordEnded = errors.New("mission record ended with no event read")

// drain sends, without blocking, the events of mission key after after, to
// the end of its stream, and returns the position it read to and whether
// the events sent leave the mission ended (progress.Ended; with none sent,
// it ended before after). A record read terminal holds its end in the
// stream (the saga's script writes both), so a drain after such a read
// sends the chapter a fast teardown or resume wrote in between too.
func (s *Server) drain(ctx context.Context, key, after string, send func(progress.Event) error) (last string, ended bool, err error) {
	stream := progress.MissionStream(key)
	ended = true
	for {
		events, next, err := progress.ReadBatch(ctx, s.rdb, s.skips, stream, after, watchBatch, 0)
		if err != nil || next == "" {
			return after, ended, err
		}
		for _, e := range events {
			if err := send(e); err != nil {
				return after, ended, err
			}
			ended = progress.Ended(ended, e.Type)
		}
		after = next
	}
}

// followOnce is the slot's Follow of mission key's events after after
// (returning the position it read to), ended with the mission's NOT_FOUND
// status when its record disappears
// meanwhile, and with errRecordEnded when the record is terminal while no
// event came. Redis that restarted without persistence, was flushed, or
// failed over to a replica that lacked the mission has lost its saga, so
// no terminal event will ever be written: without the check, the watch
// would wait forever and hold a watcher slot. The record's state is read
// only after LostCheckInterval without an event.
func (s *Server) followOnce(ctx context.Context, slot *progress.Slot, key, after string, fn func(progress.Event) error) (pos string, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	every := s.cfg.LostCheckInterval
	if every <= 0 {
		every = DefaultLostCheckInterval
	}
	var heard atomic.Bool
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if heard.Swap(false) {
				continue
			}
			// The state alone, not a Load: the other fields are of no use.
			st, err := s.store.State(ctx, key)
			switch {
			case errors.Is(err, saga.ErrNotFound):
				s.log.WarnContext(ctx, "mission record gone while its events were followed: Redis lost it (restarted without persistence, flushed, or failed over)",
					slog.String("mission_id", key))
				cancel(s.lostError(ctx, key))
				return
			case err == nil && st.Terminal():
				cancel(errRecordEnded)
				return
			}
		}
	}()
	pos, err = slot.Follow(ctx, key, after, func(e progress.Event) error {
		heard.Store(true)
		return fn(e)
	})
	if cause := context.Cause(ctx); err != nil && (rpcerr.IsStatus(cause) || errors.Is(cause, errRecordEnded)) {
		return pos, cause
	}
	return pos, err
}

// watchError turns the error of a watch or wait into its status: the
// caller's context, the hub's refusals, a status already made, or a store
// failure.
func (s *Server) watchError(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return contextStatus(ctx)
	case errors.Is(err, progress.ErrHubClosed):
		return errDraining
	case errors.Is(err, progress.ErrTooManyWatchers):
		return rpcerr.New(codes.ResourceExhausted, reasonTooManyWatchers,
			fmt.Sprintf("this orchestrator serves %d watchers already (--max-watchers); retry later or on another replica", s.hub.Watchers()))
	case rpcerr.IsStatus(err):
		return err
	default:
		return s.storeError(ctx, op, err)
	}
}

// replay sends the events of an ended mission after entry id after, to
// the end of its stream, without blocking: a mission torn down after it
// completed, or resumed after it failed, ends at its last terminal event,
// the state GetMission reports. A stream whose last chapter has no
// terminal event (the mission was reopened since its record was read) is
// followed from there.
func (s *Server) replay(ctx context.Context, key, after string, send func(progress.Event) error) error {
	last, ended, err := s.drain(ctx, key, after, send)
	if err != nil || ended {
		return err
	}
	// The last chapter has no end yet: reopened since the record was read,
	// unless the record says otherwise: then its end is in the stream now
	// (a chapter that ended since the read above), or cannot be decoded.
	if st, err := s.store.State(ctx, key); err == nil && st.Terminal() {
		_, _, err := s.drain(ctx, key, last, send)
		return err
	}
	return s.follow(ctx, key, last, send)
}

// isStreamID accepts Redis stream ids: "<ms>" or "<ms>-<seq>".
func isStreamID(id string) bool {
	ms, seq, hasSeq := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if hasSeq {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}
