package progress_test

import (
	"context"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/progress"
)

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

func TestFirehoseFlushesAddedEventsInOrder(t *testing.T) {
	rdb := newClient(t)
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{MaxDelay: time.Millisecond, Logger: quietLogger()})
	for i := range 5 {
		fh.Add(progress.Encode(stepEvent("m", i)))
	}
	waitFor(t, func() bool { return rdb.XLen(t.Context(), progress.GlobalStream).Val() == 5 })
	events, err := progress.Range(t.Context(), rdb, progress.GlobalStream)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if want := stepEvent("m", i).Message; e.Message != want || e.MissionID != "m" {
			t.Errorf("firehose entry %d = %q of %q, want %q of m", i, e.Message, e.MissionID, want)
		}
	}
	if err := fh.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	fh.Add(progress.Encode(stepEvent("m", 9))) // dropped after Close
	if n := rdb.XLen(t.Context(), progress.GlobalStream).Val(); n != 5 {
		t.Errorf("firehose holds %d entries after an Add past Close, want 5", n)
	}
}

func TestFirehoseTakeCarriesEventsInCallersPipeline(t *testing.T) {
	rdb := newClient(t)
	// A delay no test waits for: only Take or Close can write.
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{MaxDelay: time.Hour, Logger: quietLogger()})
	fh.Add(progress.Encode(stepEvent("m", 0)), progress.Encode(stepEvent("m", 1)))
	pipe := rdb.Pipeline()
	done := fh.Take(pipe)
	set := pipe.Set(t.Context(), "other", "1", 0)
	if _, err := pipe.Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	done()
	if set.Err() != nil {
		t.Fatal(set.Err())
	}
	if n := rdb.XLen(t.Context(), progress.GlobalStream).Val(); n != 2 {
		t.Fatalf("firehose holds %d entries after the caller's pipeline, want 2", n)
	}
	// Nothing is left to flush: Close writes no duplicate.
	if err := fh.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(t.Context(), progress.GlobalStream).Val(); n != 2 {
		t.Errorf("firehose holds %d entries after Close, want 2", n)
	}
}

func TestFirehoseRequeuesEventsOfAFailedPipeline(t *testing.T) {
	rdb := newClient(t)
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{MaxDelay: time.Hour, Logger: quietLogger()})
	fh.Add(progress.Encode(stepEvent("m", 0)))
	pipe := rdb.Pipeline()
	done := fh.Take(pipe)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := pipe.Exec(ctx); err == nil {
		t.Fatal("Exec on a cancelled context succeeded")
	}
	done()
	if err := fh.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(t.Context(), progress.GlobalStream).Val(); n != 1 {
		t.Errorf("firehose holds %d entries, want the requeued event written by Close", n)
	}
}

func TestFirehoseQueueBoundDropsOldest(t *testing.T) {
	rdb := newClient(t)
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{MaxDelay: time.Hour, MaxBatch: 100, MaxQueue: 3, Logger: quietLogger()})
	for i := range 5 {
		fh.Add(progress.Encode(stepEvent("m", i)))
	}
	if err := fh.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	events, err := progress.Range(t.Context(), rdb, progress.GlobalStream)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].Message != stepEvent("m", 2).Message {
		t.Errorf("firehose = %v, want the newest 3 events", events)
	}
}

// TestZeroEntryIsSkipped: the zero Entry holds no event, so neither the
// firehose nor AppendMission writes it (an XADD without fields would fail,
// and with it every flush of the events queued beside it).
func TestZeroEntryIsSkipped(t *testing.T) {
	rdb := newClient(t)
	ctx := t.Context()
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{MaxDelay: time.Hour, Logger: quietLogger()})
	fh.Add(progress.Entry{}, progress.Encode(stepEvent("m", 0)))
	if err := fh.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := rdb.XLen(ctx, progress.GlobalStream).Val(); n != 1 {
		t.Errorf("firehose holds %d entries, want the one event", n)
	}
	pipe := rdb.Pipeline()
	progress.NewPublisher(rdb, progress.Options{}).AppendMission(pipe, progress.MissionStream("m"), progress.Entry{})
	if n := pipe.Len(); n != 0 {
		t.Errorf("AppendMission of the zero Entry queued %d commands, want none", n)
	}
}
