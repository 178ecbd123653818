package progress_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
)

// blockedClients returns Redis's count of clients blocked in a read.
func blockedClients(t *testing.T, rdb redis.UniversalClient) int {
	t.Helper()
	info, err := rdb.Info(t.Context(), "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no blocked_clients in INFO clients:\n%s", info)
	return 0
}

// Many watchers of several missions, some of one mission, follow through
// one blocked connection, each gets every event of its mission in order (a
// poison entry skipped), and each ends with its mission.
func TestHubFansOutToManyWatchers(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	hub := progress.NewHub(rdb, progress.HubOptions{Logger: quietLogger(), Skips: progress.NewSkips(nil, quietLogger())})
	defer hub.Close()
	const missions, perMission, events = 10, 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, missions*perMission)
	for m := range missions {
		for range perMission {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				var got []string
				err := hub.Follow(ctx, fmt.Sprint("m", m), "", func(e progress.Event) error {
					got = append(got, e.Message)
					return nil
				})
				want := make([]string, events)
				for i := range want {
					want[i] = "event " + strconv.Itoa(i)
				}
				if err != nil || !slices.Equal(got, want) {
					errs <- fmt.Errorf("watcher of m%d: %v, got %d events %v", m, err, len(got), got)
				}
			}()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for hub.Watchers() < missions*perMission {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers registered, want %d", hub.Watchers(), missions*perMission)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the hub's read block over every stream
	if n := blockedClients(t, rdb); n > 1 {
		t.Errorf("%d clients blocked in reads for %d watchers, want the hub's one", n, missions*perMission)
	}
	pub := progress.NewPublisher(rdb, progress.Options{})
	for i := range events {
		for m := range missions {
			e := stepEvent(fmt.Sprint("m", m), i)
			if i == events-1 {
				e.Type = progress.MissionCompleted
			}
			if err := pub.Publish(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			if i == events/2 {
				if err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: progress.MissionStream(fmt.Sprint("m", m)), Values: []string{"v", "2", "type", "x"}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := hub.Watchers(); n != 0 {
		t.Errorf("%d watchers left after every mission ended", n)
	}
}

// Past MaxWatchers Follow fails at once; Close ends the watchers with
// ErrHubClosed and refuses new ones.
func TestHubCapAndClose(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	hub := progress.NewHub(rdb, progress.HubOptions{MaxWatchers: 2, Logger: quietLogger()})
	ended := make(chan error, 2)
	for i := range 2 {
		go func() {
			ended <- hub.Follow(context.Background(), fmt.Sprint("m", i), "", func(progress.Event) error { return nil })
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for hub.Watchers() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("watchers did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := hub.Follow(t.Context(), "m3", "", nil); !errors.Is(err, progress.ErrTooManyWatchers) {
		t.Fatalf("third watcher: %v, want ErrTooManyWatchers", err)
	}
	start := time.Now()
	hub.Close()
	for range 2 {
		select {
		case err := <-ended:
			if !errors.Is(err, progress.ErrHubClosed) {
				t.Errorf("watcher ended with %v, want ErrHubClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a watcher outlived Close by 5s")
		}
	}
	t.Logf("watchers ended %v after Close", time.Since(start))
	if err := hub.Follow(t.Context(), "m", "", nil); !errors.Is(err, progress.ErrHubClosed) {
		t.Errorf("Follow after Close: %v, want ErrHubClosed", err)
	}
}

// A slot is one watcher's place across follows: while it is held a full
// hub refuses others, its second follow needs no new place, and the
// position a follow returns lies past an undecodable entry after the end,
// so the next follow neither reads nor counts it again.
func TestSlotKeepsItsPlaceAcrossFollows(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	hub := progress.NewHub(rdb, progress.HubOptions{MaxWatchers: 1, Logger: quietLogger(), Skips: progress.NewSkips(nil, quietLogger())})
	defer hub.Close()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx,
		progress.Event{MissionID: "sl", Type: progress.MissionStarted, Message: "start"},
		progress.Event{MissionID: "sl", Type: progress.MissionCompleted, Message: "completed"},
	); err != nil {
		t.Fatal(err)
	}
	bad, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: progress.MissionStream("sl"), Values: []any{"v", "99", "type", "mission.started"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	slot, err := hub.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Acquire(); !errors.Is(err, progress.ErrTooManyWatchers) {
		t.Fatalf("a second slot of a hub of one: %v, want ErrTooManyWatchers", err)
	}
	var got []string
	collect := func(e progress.Event) error { got = append(got, e.Message); return nil }
	pos, err := slot.Follow(ctx, "sl", "", collect)
	if err != nil || pos != bad {
		t.Fatalf("first follow = %q, %v; want the undecodable entry's id %q", pos, err, bad)
	}
	if err := pub.Publish(ctx,
		progress.Event{MissionID: "sl", Type: progress.CompensationStarted, Message: "teardown"},
		progress.Event{MissionID: "sl", Type: progress.MissionCompensated, Message: "compensated"},
	); err != nil {
		t.Fatal(err)
	}
	if _, err := slot.Follow(ctx, "sl", pos, collect); err != nil {
		t.Fatalf("second follow in the slot of a full hub: %v", err)
	}
	if want := "start completed teardown compensated"; strings.Join(got, " ") != want {
		t.Errorf("events %q, want %q", strings.Join(got, " "), want)
	}
	slot.Release()
	slot.Release()
	if n := hub.Watchers(); n != 0 {
		t.Fatalf("%d watchers after the slot was released twice, want 0", n)
	}
	if _, err := hub.Acquire(); err != nil {
		t.Fatalf("a slot after the release: %v", err)
	}
}

// A watcher of a finished mission being torn down follows the teardown to
// its end: the first terminal event, with more after it, does not end the
// watch; the last one does.
func TestHubFollowsATeardownToItsEnd(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	hub := progress.NewHub(rdb, progress.HubOptions{Logger: quietLogger(), Skips: progress.NewSkips(nil, quietLogger())})
	defer hub.Close()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx,
		progress.Event{MissionID: "td", Type: progress.MissionStarted, Message: "start"},
		progress.Event{MissionID: "td", Type: progress.MissionCompleted, Message: "completed"},
		progress.Event{MissionID: "td", Type: progress.CompensationStarted, Message: "teardown"},
	); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- hub.Follow(ctx, "td", "", func(e progress.Event) error {
			got <- e.Message
			return nil
		})
	}()
	for _, want := range []string{"start", "completed", "teardown"} {
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("event %q, want %q", m, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %q", want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Follow returned (%v) in the middle of the teardown", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := pub.Publish(ctx, progress.Event{MissionID: "td", Type: progress.MissionCompensated, Message: "compensated"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if m := <-got; m != "compensated" {
		t.Fatalf("last event %q, want compensated", m)
	}
}

// A step's late event after the mission's end (a step.failed from a call
// the compensation overtook) ends no watch and reopens nothing: both
// followers return after delivering it, where waiting for another terminal
// event would hang.
func TestLateStepEventAfterTheEnd(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx,
		progress.Event{MissionID: "late", Type: progress.MissionStarted, Message: "start"},
		progress.Event{MissionID: "late", Type: progress.MissionCompensated, Message: "end"},
		progress.Event{MissionID: "late", Type: progress.StepFailed, Step: "localize_agents", Message: "late"},
	); err != nil {
		t.Fatal(err)
	}
	hub := progress.NewHub(rdb, progress.HubOptions{Logger: quietLogger(), Skips: progress.NewSkips(nil, quietLogger())})
	defer hub.Close()
	follow := map[string]func(func(progress.Event) error) error{
		"progress.Follow": func(fn func(progress.Event) error) error { return progress.Follow(ctx, rdb, "late", "", fn) },
		"Hub.Follow":      func(fn func(progress.Event) error) error { return hub.Follow(ctx, "late", "", fn) },
	}
	for name, f := range follow {
		var got []string
		if err := f(func(e progress.Event) error { got = append(got, e.Message); return nil }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, []string{"start", "end", "late"}) {
			t.Errorf("%s delivered %q, want start, end, late", name, got)
		}
	}
}
