package progress_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
)

func TestPublishWritesMissionAndGlobalStreamsInOrder(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	events := []progress.Event{stepEvent("a", 1), stepEvent("b", 2), stepEvent("a", 3)}
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	tests := []struct {
		stream string
		want   []string
	}{
		{progress.MissionStream("a"), []string{"a/event 1", "a/event 3"}},
		{progress.MissionStream("b"), []string{"b/event 2"}},
		{progress.GlobalStream, []string{"a/event 1", "b/event 2", "a/event 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.stream, func(t *testing.T) {
			got, err := progress.Range(ctx, rdb, tt.stream)
			if err != nil {
				t.Fatalf("Range: %v", err)
			}
			if !slices.Equal(messages(got), tt.want) {
				t.Fatalf("%s holds %q, want %q", tt.stream, messages(got), tt.want)
			}
		})
	}
}

func TestPublishFillsTraceFromContext(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
	})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got, err := progress.Range(ctx, rdb, progress.MissionStream("m"))
	if err != nil || len(got) != 1 {
		t.Fatalf("Range = %v, %v", got, err)
	}
	if got[0].TraceID != sc.TraceID().String() || got[0].SpanID != sc.SpanID().String() {
		t.Fatalf("trace %s span %s, want %s %s", got[0].TraceID, got[0].SpanID, sc.TraceID(), sc.SpanID())
	}
}

func TestPublishToNamedStream(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.PublishTo(ctx, "custom:stream", stepEvent("m", 1)); err != nil {
		t.Fatalf("PublishTo: %v", err)
	}
	for stream, want := range map[string]int64{"custom:stream": 1, progress.GlobalStream: 1, progress.MissionStream("m"): 0} {
		if n, err := rdb.XLen(ctx, stream).Result(); err != nil || n != want {
			t.Errorf("XLEN %s = %d, %v; want %d", stream, n, err, want)
		}
	}
	if err := pub.PublishTo(ctx, "", stepEvent("m", 1)); err == nil {
		t.Fatal("PublishTo with an empty stream name succeeded")
	}
}

func TestTerminalEventExpiresMissionStream(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Hour
	tests := []struct {
		typ     progress.Type
		expires bool
	}{
		{progress.StepCompleted, false},
		{progress.CompensationFailed, false},
		{progress.MissionCompleted, true},
		{progress.MissionCompensated, true},
		{progress.MissionFailed, true},
	}
	rdb := newClient(t)
	pub := progress.NewPublisher(rdb, progress.Options{EndTTL: ttl})
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			ctx := t.Context()
			m := "m-" + string(tt.typ)
			if err := pub.Publish(ctx, progress.Event{MissionID: m, Type: tt.typ}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			got, err := rdb.TTL(ctx, progress.MissionStream(m)).Result()
			if err != nil {
				t.Fatalf("TTL: %v", err)
			}
			if expires := got > 0; expires != tt.expires || (expires && (got > ttl || got < ttl-time.Minute)) {
				t.Fatalf("TTL = %v, want expiring=%v around %v", got, tt.expires, ttl)
			}
			if g, err := rdb.TTL(ctx, progress.GlobalStream).Result(); err != nil || g >= 0 {
				t.Fatalf("global stream TTL = %v, %v; it must never expire", g, err)
			}
		})
	}
}

func TestExpireMission(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent("m", 1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	pipe := rdb.Pipeline()
	pub.ExpireMission(pipe, "m")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	got, err := rdb.TTL(ctx, progress.MissionStream("m")).Result()
	if err != nil || got > progress.DefaultEndTTL || got < progress.DefaultEndTTL-time.Minute {
		t.Fatalf("TTL = %v, %v; want about the default %v", got, err, progress.DefaultEndTTL)
	}
}

func TestPublishTrimsStreams(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{MissionMaxLen: 10, GlobalMaxLen: 20})
	const published = 2000
	events := make([]progress.Event, published)
	for i := range events {
		events[i] = stepEvent("m", i)
	}
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries by default), so a
	// stream keeps at least its cap and at most about one node more.
	for stream, maxLen := range map[string]int64{progress.MissionStream("m"): 10, progress.GlobalStream: 20} {
		n, err := rdb.XLen(ctx, stream).Result()
		if err != nil || n < maxLen || n > maxLen+200 {
			t.Errorf("XLEN %s = %d, %v; want within [%d, %d] after %d events", stream, n, err, maxLen, maxLen+200, published)
		}
	}
	// The newest entries are the ones kept.
	last, err := rdb.XRevRangeN(ctx, progress.MissionStream("m"), "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("XREVRANGE = %v, %v", last, err)
	}
	if e, err := progress.Parse(last[0]); err != nil || e.Message != "event 1999" {
		t.Fatalf("newest entry = %+v, %v; want event 1999", e, err)
	}
}

func TestPublishReportsRedisFailure(t *testing.T) {
	t.Parallel()
	// A server of its own, even in a cluster run: the test shuts it down.
	srv := redistest.StartServer(t).Client(t)
	addr := srv.Options().Addr
	// A client of a server that has gone away: publishing must say so.
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	// SHUTDOWN's own reply is lost as the server exits; its error says nothing.
	_ = srv.Shutdown(context.Background()).Err()
	err := progress.NewPublisher(rdb, progress.Options{}).Publish(t.Context(), stepEvent("m", 1))
	if err == nil {
		t.Fatal("Publish to a stopped Redis succeeded")
	}
}

// BenchmarkPublish measures one event per call: one pipelined round trip with
// an XADD to each stream, as a step service's interceptor sends it.
func BenchmarkPublish(b *testing.B) {
	rdb := redistest.Start(b).Universal(b)
	pub := progress.NewPublisher(rdb, progress.Options{})
	ctx := b.Context()
	e := stepEvent("bench", 5)
	e.TraceID, e.SpanID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTrimGlobalDropsEventsBeforeTheCutoff: the firehose is trimmed by age,
// not only by count, so it holds nothing older than the retention.
func TestTrimGlobalDropsEventsBeforeTheCutoff(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	// 500 entries from 1970 fill five whole stream nodes (100 entries each
	// by default), which is what XTRIM MINID ~ removes.
	for i := range 500 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: progress.GlobalStream, ID: "1000-" + strconv.Itoa(i), Values: []string{"v", "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pub := progress.NewPublisher(rdb, progress.Options{})
	if err := pub.Publish(ctx, stepEvent("a", 1), stepEvent("b", 2)); err != nil {
		t.Fatal(err)
	}
	n, err := progress.TrimGlobal(ctx, rdb, time.Now().Add(-time.Hour))
	if err != nil || n != 500 {
		t.Fatalf("TrimGlobal = %d, %v; want the 500 old entries dropped", n, err)
	}
	got, err := progress.Range(ctx, rdb, progress.GlobalStream)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a/event 1", "b/event 2"}; !slices.Equal(messages(got), want) {
		t.Fatalf("firehose after the trim holds %q, want %q", messages(got), want)
	}
	if n, err := progress.TrimGlobal(ctx, rdb, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("second TrimGlobal = %d, %v; want 0 (idempotent)", n, err)
	}
}
