package progress_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/progress"
)

func TestRead(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	stream := progress.MissionStream("m")
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("m", 1), stepEvent("m", 2), stepEvent("m", 3)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	all, err := progress.Read(ctx, rdb, stream, "0", 0, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("Read from 0 = %v, %v; want 3 events", all, err)
	}
	tests := []struct {
		name  string
		after string
		count int64
		block time.Duration
		want  []string
	}{
		{"from start", "0", 10, 0, []string{"m/event 1", "m/event 2", "m/event 3"}},
		{"empty after means start", "", 10, 0, []string{"m/event 1", "m/event 2", "m/event 3"}},
		{"count", "0", 2, 0, []string{"m/event 1", "m/event 2"}},
		{"after an entry", all[0].ID, 10, 0, []string{"m/event 2", "m/event 3"}},
		{"nothing new, no block", all[2].ID, 10, 0, nil},
		{"nothing new, block times out", all[2].ID, 10, 50 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := progress.Read(ctx, rdb, stream, tt.after, tt.count, tt.block)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got == nil != (tt.want == nil) || !slices.Equal(messages(got), tt.want) {
				t.Fatalf("Read = %q, want %q", messages(got), tt.want)
			}
		})
	}
}

func TestReadWaitsForNewEvent(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	first, err := progress.Read(ctx, rdb, progress.MissionStream("m"), "0", 1, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("Read = %v, %v", first, err)
	}
	published := make(chan error, 1)
	go func() {
		// Whether this lands before or during the blocking read, it is after
		// first[0] and so must be returned.
		published <- pub.Publish(ctx, stepEvent("m", 2))
	}()
	got, err := progress.Read(ctx, rdb, progress.MissionStream("m"), first[0].ID, 10, 10*time.Second)
	if err := <-published; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err != nil || !slices.Equal(messages(got), []string{"m/event 2"}) {
		t.Fatalf("blocking Read = %q, %v; want event 2", messages(got), err)
	}
}

func TestFollowHistory(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	// Bounded, so a Follow that misses the terminal event fails the test
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pub := progress.NewPublisher(rdb, progress.Options{})
	events := []progress.Event{
		{MissionID: "m", Type: progress.MissionStarted, Message: "start"},
		{MissionID: "m", Type: progress.StepStarted, Message: "step"},
		{MissionID: "m", Type: progress.MissionFailed, Message: "failed"},
		// Resumed after it failed: the outcome is the last terminal event,
		// and a watcher that reads the first does not stop there.
		{MissionID: "m", Type: progress.CompensationStarted, Message: "resumed"},
		{MissionID: "m", Type: progress.MissionCompensated, Message: "end"},
	}
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	all, err := progress.Range(ctx, rdb, progress.MissionStream("m"))
	if err != nil || len(all) != 5 {
		t.Fatalf("Range = %v, %v", all, err)
	}
	tests := []struct {
		name  string
		after string
		want  []string
	}{
		{"from start", "", []string{"m/start", "m/step", "m/failed", "m/resumed", "m/end"}},
		{"resume", all[0].ID, []string{"m/step", "m/failed", "m/resumed", "m/end"}},
		{"after the first end", all[2].ID, []string{"m/resumed", "m/end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []progress.Event
			err := progress.Follow(ctx, rdb, "m", tt.after, func(e progress.Event) error {
				got = append(got, e)
				return nil
			})
			if err != nil {
				t.Fatalf("Follow: %v", err)
			}
			if !slices.Equal(messages(got), tt.want) {
				t.Fatalf("Follow delivered %q, want %q", messages(got), tt.want)
			}
		})
	}
}

func TestFollowLive(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pub := progress.NewPublisher(rdb, progress.Options{})
	delivered := make(chan progress.Event)
	done := make(chan error, 1)
	go func() {
		done <- progress.Follow(ctx, rdb, "m", "0", func(e progress.Event) error {
			select {
			case delivered <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	steps := []progress.Type{progress.MissionStarted, progress.StepStarted, progress.StepCompleted, progress.MissionCompleted}
	for _, typ := range steps {
		// Publish one event at a time and wait for it, so Follow is seen to
		// pick up events that arrive while it blocks.
		if err := pub.Publish(ctx, progress.Event{MissionID: "m", Type: typ}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		select {
		case e := <-delivered:
			if e.Type != typ {
				t.Fatalf("Follow delivered %s, want %s", e.Type, typ)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Follow did not deliver %s within 10s", typ)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow after the terminal event: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after the terminal event")
	}
}

func TestFollowReturnsHandlerError(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("m", 1), stepEvent("m", 2)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	errClientGone := errors.New("client gone")
	calls := 0
	err := progress.Follow(ctx, rdb, "m", "0", func(progress.Event) error {
		calls++
		return errClientGone
	})
	if !errors.Is(err, errClientGone) || calls != 1 {
		t.Fatalf("Follow = %v after %d calls; want errClientGone after 1", err, calls)
	}
}

func TestFollowStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- progress.Follow(ctx, rdb, "never-ends", "0", func(progress.Event) error { return nil })
	}()
	awaitBlockedClients(t, rdb)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return within 5s of cancellation: its BLOCK is not finite")
	}
}
