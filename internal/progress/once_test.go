package progress_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
)

// resendPipeline sends the first pipeline twice, as go-redis does when the
// reply of a pipeline that landed times out (a Redis stall beyond the read
// timeout); between the two sends it runs between, standing for the writes
// of other clients that Redis ran in the meantime.
type resendPipeline struct {
	done    atomic.Bool
	between func(ctx context.Context)
}

func (h *resendPipeline) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *resendPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *resendPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.done.CompareAndSwap(false, true) {
			_ = next(ctx, cmds)
			h.between(ctx)
		}
		return next(ctx, cmds)
	}
}

// TestResentPublishAppendsOnce: a publish that go-redis sends twice writes
// its events to the mission stream once, even with other events appended
// between the two sends (as long as the copies stay among the stream's
// newest ResendWindow entries), and a later publish of the step's events is
// appended. The firehose copies of a resend are
// written twice: the global stream is at least once.
func TestResentPublishAppendsOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// between: how many events other writers append between the sends.
		between int
		// uncached: Redis has not cached the script (NOSCRIPT fallback).
		uncached bool
		// progress: step.progress events between the publish's
		// step.started and step.failed.
		progress int
	}{
		{name: "back to back"},
		{name: "others between", between: progress.ResendWindow},
		{name: "script not cached", between: 1, uncached: true},
		{name: "batch larger than the window", between: 2, progress: progress.ResendWindow + 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := newClient(t)
			ctx := t.Context()
			stream := progress.MissionStream("m")
			other := progress.NewPublisher(rdb, progress.Options{})
			if err := other.Publish(ctx, stepEvent("m", 0)); err != nil { // loads the script
				t.Fatal(err)
			}
			if tt.uncached {
				if err := rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			rdb.AddHook(&resendPipeline{between: func(ctx context.Context) {
				for i := range tt.between {
					// Single commands: the hook resends pipelines only.
					if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"v", "1", "mission_id", "m", "type", "step.progress", "message", "other " + string(rune('a'+i))}}).Err(); err != nil {
						t.Error(err)
					}
				}
			}})
			pub := progress.NewPublisher(rdb, progress.Options{AppendOnly: !tt.uncached})
			now := time.Now()
			batch := make([]progress.Event, tt.progress+2)
			want := make([]string, len(batch))
			for i := range batch {
				batch[i] = stepEvent("m", 100+i)
				batch[i].Time = now.Add(time.Duration(i) * time.Microsecond)
				want[i] = string(progress.StepProgress)
			}
			batch[0].Type, batch[len(batch)-1].Type = progress.StepStarted, progress.StepFailed
			want[0], want[len(want)-1] = string(progress.StepStarted), string(progress.StepFailed)
			if err := pub.PublishTo(ctx, stream, batch...); err != nil {
				t.Fatalf("PublishTo: %v", err)
			}
			if got := ours(t, rdb, stream, batch...); !slices.Equal(got, want) {
				t.Errorf("mission stream after a resent publish holds %q of ours, want %q", got, want)
			}
			if got := ours(t, rdb, progress.GlobalStream, batch...); len(got) != 2*len(batch) {
				t.Errorf("global stream after a resent publish holds %d of ours, want them twice (%d)", len(got), 2*len(batch))
			}

			// A later publish of the step (new events, same fields but
			// the time) is appended.
			for i := range batch {
				batch[i].Time = batch[i].Time.Add(time.Second)
			}
			if err := pub.PublishTo(ctx, stream, batch...); err != nil {
				t.Fatalf("PublishTo: %v", err)
			}
			if got := ours(t, rdb, stream, batch...); len(got) != 2*len(batch) {
				t.Errorf("mission stream after another publish holds %d of ours, want %d", len(got), 2*len(batch))
			}
		})
	}
}

// ours returns the types of the events of stream carrying the messages of
// events, in order.
func ours(t *testing.T, rdb redis.UniversalClient, stream string, events ...progress.Event) []string {
	t.Helper()
	got, err := progress.Range(t.Context(), rdb, stream)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range got {
		if slices.ContainsFunc(events, func(o progress.Event) bool { return o.Message == e.Message }) {
			types = append(types, string(e.Type))
		}
	}
	return types
}

// TestPublishSkipsEventsTheStreamHas: a batch whose first event is on the
// stream already (a barrier commit wrote step.started, then its reply was
// lost and the step reports its failure) appends only the events that are
// not.
func TestPublishSkipsEventsTheStreamHas(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	stream := progress.MissionStream("m")
	pub := progress.NewPublisher(rdb, progress.Options{})
	started := stepEvent("m", 1)
	started.Type, started.Time = progress.StepStarted, time.Now()
	completed := stepEvent("m", 2)
	completed.Type, completed.Time = progress.StepCompleted, started.Time.Add(time.Millisecond)
	if err := pub.PublishTo(ctx, stream, started, completed); err != nil {
		t.Fatal(err)
	}
	failed := stepEvent("m", 3)
	failed.Type, failed.Time = progress.StepFailed, completed.Time.Add(time.Millisecond)
	if err := pub.PublishTo(ctx, stream, started, failed); err != nil {
		t.Fatal(err)
	}
	want := []string{"step.started", "step.completed", "step.failed"}
	if got := ours(t, rdb, stream, started, completed, failed); !slices.Equal(got, want) {
		t.Errorf("mission stream holds %q, want %q", got, want)
	}
}
