package progress_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
)

const testGroup = "dashboards"

// runConsumer starts c.Run in a goroutine and returns a func that waits for
// it (failing the test if it takes over 10s) and returns Run's error.
func runConsumer(t *testing.T, ctx context.Context, c *progress.Consumer, h func(context.Context, progress.Event) error) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Consumer.Run did not return within 10s")
			return nil
		}
	}
}

func newConsumer(t *testing.T, rdb redis.UniversalClient, cfg progress.ConsumerConfig) *progress.Consumer {
	t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = progress.GlobalStream
	}
	if cfg.Group == "" {
		cfg.Group = testGroup
	}
	if cfg.Block == 0 {
		cfg.Block = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := progress.NewConsumer(rdb, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

func pendingCount(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), progress.GlobalStream, testGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

func TestNewConsumerValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  progress.ConsumerConfig
	}{
		{"no stream", progress.ConsumerConfig{Group: "g", Name: "n"}},
		{"no group", progress.ConsumerConfig{Stream: "s", Name: "n"}},
		{"no name", progress.ConsumerConfig{Stream: "s", Group: "g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if c, err := progress.NewConsumer(nil, tt.cfg); err == nil {
				t.Fatalf("NewConsumer(%+v) = %v, want an error", tt.cfg, c)
			}
		})
	}
}

func TestConsumerAcksAfterSuccess(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("a", 1), stepEvent("b", 2), stepEvent("a", 3)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	c := newConsumer(t, rdb, progress.ConsumerConfig{Name: "c1"})
	var got []progress.Event
	wait := runConsumer(t, ctx, c, func(_ context.Context, e progress.Event) error {
		// While the handler runs, its entry is delivered but not yet acked.
		if p, err := rdb.XPending(ctx, progress.GlobalStream, testGroup).Result(); err != nil || p.Count == 0 {
			t.Errorf("entry %s acked before its handler returned (XPENDING %+v, %v)", e.ID, p, err)
		}
		got = append(got, e)
		if len(got) == 3 {
			cancel()
		}
		return nil
	})
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []string{"a/event 1", "b/event 2", "a/event 3"}; !slices.Equal(messages(got), want) {
		t.Fatalf("handled %q, want %q", messages(got), want)
	}
	if n := pendingCount(t, rdb); n != 0 {
		t.Fatalf("%d entries still pending after successful handling", n)
	}
}

// TestConsumerReclaimsFailedEntry: consumer a fails one entry, which stays
// pending; consumer b of the same group gets it (and only it) again through
// XAUTOCLAIM once it has been idle for MinIdle, and acks it.
func TestConsumerReclaimsFailedEntry(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	events := []progress.Event{stepEvent("m", 1), stepEvent("m", 2), stepEvent("m", 3)}
	events[1].Step = "poisoned-for-a"
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, events...); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	// Written by a's Run goroutine, read only after Run has returned.
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	aCtx, aCancel := context.WithCancel(ctx)
	defer aCancel()
	a := newConsumer(t, rdb, progress.ConsumerConfig{Name: "a", MinIdle: time.Hour, Logger: logger})
	var failedID string
	seenByA := 0
	waitA := runConsumer(t, aCtx, a, func(_ context.Context, e progress.Event) error {
		seenByA++
		if seenByA == 3 {
			aCancel()
		}
		if e.Step == "poisoned-for-a" {
			failedID = e.ID
			return errors.New("downstream unavailable")
		}
		return nil
	})
	if err := waitA(); err != nil {
		t.Fatalf("Run a: %v", err)
	}
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: progress.GlobalStream, Group: testGroup, Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	if len(pending) != 1 || pending[0].ID != failedID || pending[0].Consumer != "a" {
		t.Fatalf("pending after a = %+v, want only %s held by a", pending, failedID)
	}
	if logged := logs.String(); !strings.Contains(logged, "handler failed") || !strings.Contains(logged, failedID) {
		t.Fatalf("handler failure not logged with its entry id; logs:\n%s", logged)
	}

	bCtx, bCancel := context.WithCancel(ctx)
	defer bCancel()
	b := newConsumer(t, rdb, progress.ConsumerConfig{Name: "b", MinIdle: 50 * time.Millisecond})
	var seenByB []string
	waitB := runConsumer(t, bCtx, b, func(_ context.Context, e progress.Event) error {
		seenByB = append(seenByB, e.ID)
		bCancel()
		return nil
	})
	if err := waitB(); err != nil {
		t.Fatalf("Run b: %v", err)
	}
	if !slices.Equal(seenByB, []string{failedID}) {
		t.Fatalf("b handled %v, want exactly the failed entry %s", seenByB, failedID)
	}
	if n := pendingCount(t, rdb); n != 0 {
		t.Fatalf("%d entries pending after b handled the reclaimed one", n)
	}
}

func TestConsumerRestartToleratesBusyGroup(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	// The group exists before the first Run, as after another replica's start.
	if err := rdb.XGroupCreateMkStream(ctx, progress.GlobalStream, testGroup, "0").Err(); err != nil {
		t.Fatalf("XGROUP CREATE: %v", err)
	}
	for run := 1; run <= 2; run++ {
		if err := pub.Publish(ctx, stepEvent("m", run)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		var got []string
		wait := runConsumer(t, runCtx, newConsumer(t, rdb, progress.ConsumerConfig{Name: "c"}), func(_ context.Context, e progress.Event) error {
			got = append(got, e.Message)
			cancel()
			return nil
		})
		err := wait()
		cancel()
		if err != nil {
			t.Fatalf("run %d: Run: %v", run, err)
		}
		// The group's cursor survives the restart: each run sees only its event.
		if want := []string{stepEvent("m", run).Message}; !slices.Equal(got, want) {
			t.Fatalf("run %d handled %q, want %q", run, got, want)
		}
	}
}

func TestConsumerUnparsableEntries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		values      []string
		wantPending int64
	}{
		// Nothing can ever handle it: acked, not retried forever.
		{"malformed", []string{"v", "1", "type", "step.started"}, 0},
		// An upgraded consumer can: left pending for it to reclaim.
		{"newer schema", []string{"v", "99", "mission_id", "m", "type", "step.started"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := newClient(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: progress.GlobalStream, Values: tt.values}).Err(); err != nil {
				t.Fatalf("XADD: %v", err)
			}
			if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("m", 1)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			var got []string
			wait := runConsumer(t, ctx, newConsumer(t, rdb, progress.ConsumerConfig{Name: "c"}), func(_ context.Context, e progress.Event) error {
				got = append(got, e.Message)
				cancel()
				return nil
			})
			if err := wait(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(got, []string{"event 1"}) {
				t.Fatalf("handled %q, want only the well-formed event", got)
			}
			if n := pendingCount(t, rdb); n != tt.wantPending {
				t.Fatalf("%d entries pending, want %d", n, tt.wantPending)
			}
		})
	}
}

func TestConsumerRunReturnsPromptlyAfterCancel(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	const block = 300 * time.Millisecond
	c := newConsumer(t, rdb, progress.ConsumerConfig{Name: "idle", Block: block})
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(context.Context, progress.Event) error { return nil })
	}()
	awaitBlockedClients(t, rdb)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
		t.Logf("Run returned %v after cancel (block %v)", time.Since(start), block)
	case <-time.After(block + 3*time.Second):
		t.Fatalf("Run still blocked %v after cancel: its BLOCK is not finite", block+3*time.Second)
	}
}

func TestConsumerCreatesGroupFromStreamStart(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Published before the group exists: a new group still sees it.
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("m", 7)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var got []string
	wait := runConsumer(t, ctx, newConsumer(t, rdb, progress.ConsumerConfig{Name: "late"}), func(_ context.Context, e progress.Event) error {
		got = append(got, e.Message)
		cancel()
		return nil
	})
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(got, []string{"event 7"}) {
		t.Fatalf("handled %q, want the event published before the group existed", got)
	}
}
