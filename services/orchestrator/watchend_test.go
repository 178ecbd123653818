package orchestrator

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/saga"
)

// stateReadHook runs before() ahead of the first read of key's state
// (HGET) after it is armed: the moment a watch asks the record whether the
// terminal event it saw is the mission's end.
type stateReadHook struct {
	key    string
	armed  atomic.Bool
	before func()
}

func (h *stateReadHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stateReadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		a := cmd.Args()
		if strings.EqualFold(cmd.Name(), "hget") && len(a) == 3 && a[1] == h.key && h.armed.CompareAndSwap(true, false) {
			h.before()
		}
		return next(ctx, cmd)
	}
}
func (h *stateReadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// watchServer is a bare orchestrator on a real Redis whose client runs a
// stateReadHook for mission id's record, with side a plain client to write
// the mission's record and events by hand. It serves one watcher at a time.
func watchServer(t *testing.T, id string) (s *Server, side *redis.Client, h *stateReadHook) {
	srv := redistest.Start(t)
	side = srv.Client(t)
	rdb := srv.Client(t)
	h = &stateReadHook{key: saga.RecordKey(id)}
	rdb.AddHook(h)
	s, err := NewServer(Config{LostCheckInterval: 100 * time.Millisecond, RecoveryInterval: time.Hour, MaxWatchers: 1}, Deps{
		Redis:        rdb,
		Mapping:      mappingv1.NewMappingServiceClient(nil),
		Localization: localizationv1.NewLocalizationServiceClient(nil),
		Merge:        mergev1.NewMergeServiceClient(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, side, h
}

// setState writes a minimal saga record of mission id in state.
func setState(t *testing.T, rdb *redis.Client, id, state string) {
	t.Helper()
	if err := rdb.HSet(context.Background(), saga.RecordKey(id), "v", "1", "saga_id", "s-"+id, "mission_id", id,
		"state", state, "current", "0", "steps", "0", "epoch", "1",
		"created", strconv.FormatInt(time.Now().UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
}

// publish appends events of the given types to mission id's stream.
func publish(t *testing.T, rdb *redis.Client, id string, types ...progress.Type) {
	t.Helper()
	pub := progress.NewPublisher(rdb, progress.Options{})
	for _, ty := range types {
		if err := pub.Publish(context.Background(), progress.Event{MissionID: id, Type: ty, Step: "x", Message: string(ty)}); err != nil {
			t.Fatal(err)
		}
	}
}

// lastType is the type of the last event, "" for none.
func lastType(evs []progress.Event) progress.Type {
	if len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1].Type
}

// A reopen whose new chapter ends between the hub's last read and the
// watch's read of the record: the watch delivers that chapter to its end
// rather than stopping at the old terminal event (found by a review).
func TestFollowDeliversAFastChapter(t *testing.T) {
	s, side, h := watchServer(t, "fast1")
	followAFastChapter(t, s, side, h, "fast1", nil)
}

// followAFastChapter follows mission id, completed and reopened, whose new
// chapter (a whole teardown) is written, after during runs, at the moment
// the watch reads the record; the watch must end at that chapter's
// mission.compensated.
func followAFastChapter(t *testing.T, s *Server, side *redis.Client, h *stateReadHook, id string, during func()) {
	t.Helper()
	setState(t, side, id, "compensating") // reopened, new chapter not yet written
	publish(t, side, id, progress.MissionStarted, progress.MissionCompleted)
	h.before = func() {
		if during != nil {
			during()
		}
		publish(t, side, id, progress.MissionStarted, progress.CompensationStarted, progress.CompensationCompleted, progress.MissionCompensated)
		setState(t, side, id, "compensated")
	}
	h.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []progress.Event
	err := s.follow(ctx, id, "", func(e progress.Event) error { got = append(got, e); return nil })
	if err != nil || lastType(got) != progress.MissionCompensated {
		t.Errorf("follow = %v, ended at %q; want the new chapter's mission.compensated", err, lastType(got))
	}
}

// A watch keeps its hub slot between the chapters it follows: another
// watcher of a full hub cannot take it at the moment the watch asks the
// record whether the end it saw is the mission's, which would fail a watch
// that has sent events already RESOURCE_EXHAUSTED.
func TestFollowKeepsItsSlotBetweenChapters(t *testing.T) {
	s, side, h := watchServer(t, "slot1")
	var took error
	followAFastChapter(t, s, side, h, "slot1", func() {
		slot, err := s.hub.Acquire()
		if err == nil {
			slot.Release()
		}
		took = err
	})
	if !errors.Is(took, progress.ErrTooManyWatchers) {
		t.Errorf("another watcher between the chapters got %v, want ErrTooManyWatchers: the watch let its slot go", took)
	}
}

// The same race at replay's check of the record.
func TestReplayDeliversAFastChapter(t *testing.T) {
	id := "fast2"
	s, side, h := watchServer(t, id)
	setState(t, side, id, "compensating")
	publish(t, side, id, progress.MissionStarted, progress.MissionCompleted, progress.MissionStarted, progress.CompensationStarted)
	h.before = func() {
		publish(t, side, id, progress.CompensationCompleted, progress.MissionCompensated)
		setState(t, side, id, "compensated")
	}
	h.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []progress.Event
	err := s.replay(ctx, id, "", func(e progress.Event) error { got = append(got, e); return nil })
	if err != nil || lastType(got) != progress.MissionCompensated {
		t.Errorf("replay = %v, ended at %q; want the chapter's mission.compensated", err, lastType(got))
	}
}

// A terminal entry this reader cannot decode (another schema's v) is
// skipped, so no event ends the watch: the record's terminal state does,
// after LostCheckInterval without an event (found by a review).
func TestFollowEndsWithAnUndecodableEnd(t *testing.T) {
	id := "undec"
	s, side, _ := watchServer(t, id)
	setState(t, side, id, "running")
	publish(t, side, id, progress.MissionStarted)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.follow(ctx, id, "", func(progress.Event) error { return nil }) }()
	time.Sleep(200 * time.Millisecond)
	if err := side.XAdd(ctx, &redis.XAddArgs{Stream: progress.MissionStream(id), Values: []any{"v", "99", "mission_id", id, "type", "mission.completed"}}).Err(); err != nil {
		t.Fatal(err)
	}
	setState(t, side, id, "completed")
	if err := <-done; err != nil {
		t.Errorf("the watch of a completed mission did not end: %v", err)
	}
}
