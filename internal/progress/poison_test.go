package progress_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redisproc"
)

// poisonEntries are entries a version-1 reader cannot decode: a newer
// schema, no mission id, an unknown type, a bad number.
var poisonEntries = [][]string{
	{"v", "2", "type", "x"},
	{"v", "1", "type", "step.started"},
	{"v", "1", "mission_id", "m", "type", "step.teleported"},
	{"v", "1", "mission_id", "m", "type", "step.progress", "attempt", "one"},
}

// publishAround publishes event 1, the poison entries, then event 2 to
// mission m's stream, and returns the id of event 1.
func publishAround(t *testing.T, rdb redis.UniversalClient, m string) string {
	t.Helper()
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent(m, 1)); err != nil {
		t.Fatal(err)
	}
	first, err := rdb.XRevRangeN(ctx, progress.MissionStream(m), "+", "-", 1).Result()
	if err != nil || len(first) != 1 {
		t.Fatalf("XREVRANGE: %v, %v", first, err)
	}
	for _, v := range poisonEntries {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: progress.MissionStream(m), Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	end := stepEvent(m, 2)
	end.Type = progress.MissionCompleted
	if err := pub.Publish(ctx, end); err != nil {
		t.Fatal(err)
	}
	return first[0].ID
}

// Readers skip what they cannot decode, count it by reason and log it once
// per stream; the good events around it, and the end of the mission, still
// arrive — also for a reader resuming from the last good id.
func TestReadersSkipPoisonEntries(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	first := publishAround(t, rdb, "m")
	stream := progress.MissionStream("m")

	reader := sdkmetric.NewManualReader()
	var logs bytes.Buffer
	skips := progress.NewSkips(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"),
		slog.New(slog.NewTextHandler(&logs, nil)))
	events, last, err := progress.ReadBatch(t.Context(), rdb, skips, stream, first, 100, 0)
	if err != nil {
		t.Fatalf("ReadBatch: %v", err)
	}
	if got := messages(events); !slices.Equal(got, []string{"m/event 2"}) {
		t.Errorf("ReadBatch after the first event = %v, want only event 2", got)
	}
	if last != events[len(events)-1].ID {
		t.Errorf("last = %s, want the last entry's id %s", last, events[len(events)-1].ID)
	}
	if n := strings.Count(logs.String(), "skipping stream entries"); n != 1 {
		t.Errorf("logged %d skip lines for one stream, want 1:\n%s", n, logs.String())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	byReason := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "slammesh.progress.entries.skipped" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := p.Attributes.Value("reason")
				byReason[r.AsString()] += p.Value
			}
		}
	}
	if byReason["version"] != 1 || byReason["malformed"] != 3 {
		t.Errorf("skipped by reason = %v, want version 1, malformed 3", byReason)
	}

	for _, from := range []string{"", first} {
		var got []string
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := progress.Follow(ctx, rdb, "m", from, func(e progress.Event) error {
			got = append(got, e.Message)
			return nil
		})
		cancel()
		want := []string{"event 1", "event 2"}
		if from != "" {
			want = want[1:]
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Follow from %q = %v, %v; want %v and the terminal event to end it", from, got, err, want)
		}
	}
	if events, err := progress.Range(t.Context(), rdb, stream); err != nil || len(events) != 2 {
		t.Errorf("Range = %d events, %v; want the 2 good ones", len(events), err)
	}
}

// An entry whose handler keeps failing is handed out MaxDeliveries times,
// then moved, with its fields and why, to <stream>:dlq (same hash tag, with
// an expiry) and acked; a malformed entry goes there at once.
func TestConsumerDeadLettersAfterMaxDeliveries(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream := progress.MissionStream("m")
	dlq := progress.DeadLetterStream(stream)
	if dlq != "slammesh:{m}:events:dlq" {
		t.Fatalf("DeadLetterStream(%s) = %s", stream, dlq)
	}
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"v", "1", "type", "step.started"}}).Err(); err != nil {
		t.Fatal(err)
	}
	const maxDeliveries = 3
	handled := 0
	c := newConsumer(t, rdb, progress.ConsumerConfig{Stream: stream, Name: "c", MinIdle: 20 * time.Millisecond,
		Block: 20 * time.Millisecond, MaxDeliveries: maxDeliveries})
	wait := runConsumer(t, ctx, c, func(context.Context, progress.Event) error {
		handled++
		return context.DeadlineExceeded // a handler that never succeeds
	})
	deadline := time.Now().Add(10 * time.Second)
	for rdb.XLen(ctx, dlq).Val() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter stream has %d entries after 10s, want 2", rdb.XLen(ctx, dlq).Val())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if handled != maxDeliveries {
		t.Errorf("handler ran %d times, want MaxDeliveries = %d", handled, maxDeliveries)
	}
	if p, err := rdb.XPending(t.Context(), stream, testGroup).Result(); err != nil || p.Count != 0 {
		n := int64(-1)
		if p != nil {
			n = p.Count
		}
		t.Errorf("%d entries still pending, want 0: dead-lettered entries are acked", n)
	}
	entries, err := rdb.XRange(t.Context(), dlq, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	reasons := []string{entries[0].Values["dlq_error"].(string), entries[1].Values["dlq_error"].(string)}
	if !strings.Contains(reasons[0]+reasons[1], "missing mission_id") || !strings.Contains(reasons[0]+reasons[1], "handed out 4 times") {
		t.Errorf("dead-letter reasons = %q", reasons)
	}
	for _, e := range entries {
		if e.Values["type"] == nil || e.Values["dlq_source_id"] == nil || e.Values["dlq_group"] != testGroup {
			t.Errorf("dead-letter entry lacks the original fields or its source: %v", e.Values)
		}
	}
	if ttl := rdb.TTL(t.Context(), dlq).Val(); ttl <= 0 || ttl > progress.DefaultDeadLetterTTL {
		t.Errorf("dead-letter stream TTL = %v, want (0, %v]", ttl, progress.DefaultDeadLetterTTL)
	}
}

// After Redis restarts empty (FLUSHALL here), the group is gone and reads
// fail NOGROUP: the consumer creates it again and handles what comes next,
// without its caller restarting it.
func TestConsumerRecoversFromNoGroup(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pub := progress.NewPublisher(rdb, progress.Options{})
	got := make(chan string, 10)
	c := newConsumer(t, rdb, progress.ConsumerConfig{Name: "c", Block: 20 * time.Millisecond})
	wait := runConsumer(t, ctx, c, func(_ context.Context, e progress.Event) error {
		got <- e.Message
		return nil
	})
	await := func(want string) {
		t.Helper()
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("handled %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not handled within 10s", want)
		}
	}
	if err := pub.Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatal(err)
	}
	await("event 1")
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Until the consumer has read once more, its group may not exist yet:
	// publish until the new event is handled.
	for i := 2; ; i++ {
		if err := pub.Publish(ctx, stepEvent("m", i)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if !strings.HasPrefix(m, "event ") {
				t.Fatalf("handled %q", m)
			}
			cancel()
			if err := wait(); err != nil {
				t.Fatalf("Run after FLUSHALL = %v, want it to have recovered", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if i > 50 {
				t.Fatal("no event handled within 10s of FLUSHALL: the consumer did not recover from NOGROUP")
			}
		}
	}
}

// A consumer rides out a Redis restart on an empty data set: it retries
// while Redis is down, then meets NOGROUP, creates its group again and
// handles what is published next — its caller restarts nothing.
func TestConsumerSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := redisproc.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	t.Cleanup(func() { p.Stop() })
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan string, 100)
	c := newConsumer(t, rdb, progress.ConsumerConfig{Name: "c", Block: 50 * time.Millisecond})
	wait := runConsumer(t, ctx, c, func(_ context.Context, e progress.Event) error {
		got <- e.Message
		return nil
	})
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("event 1 not handled")
	}
	p.Stop()
	time.Sleep(time.Second) // the consumer meets the outage
	n, _ := strconv.Atoi(port)
	if p, err = redisproc.StartOn(t.TempDir(), n); err != nil {
		t.Fatalf("restart Redis on %s: %v", port, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for i := 2; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("nothing handled within 15s of the restart: the consumer did not recover")
		}
		_ = pub.Publish(ctx, stepEvent("m", i)) // may fail while the client reconnects
		select {
		case <-got:
			cancel()
			if err := wait(); err != nil {
				t.Fatalf("Run = %v, want it to have ridden out the restart", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
