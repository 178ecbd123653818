package progress_test

import (
	"testing"

	"github.com/slammesh/slammesh/internal/progress"
)

// A step service's publisher (AppendOnly) never creates a mission stream: a
// late call after the mission's keys expired leaves no key behind.
func TestAppendOnlyNeverCreatesAMissionStream(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{AppendOnly: true, Logger: quietLogger()})
	if err := pub.PublishTo(ctx, progress.MissionStream("gone"), stepEvent("gone", 1)); err != nil {
		t.Fatalf("PublishTo a missing stream: %v", err)
	}
	if n := rdb.Exists(ctx, progress.MissionStream("gone")).Val(); n != 0 {
		t.Error("AppendOnly created the mission stream")
	}
	if n := rdb.XLen(ctx, progress.GlobalStream).Val(); n != 1 {
		t.Errorf("global stream has %d events, want 1", n)
	}
	// An existing stream (the orchestrator created it) is appended to.
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, stepEvent("live", 1)); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishTo(ctx, progress.MissionStream("live"), stepEvent("live", 2)); err != nil {
		t.Fatalf("PublishTo an existing stream: %v", err)
	}
	if n := rdb.XLen(ctx, progress.MissionStream("live")).Val(); n != 2 {
		t.Errorf("live stream has %d events, want 2", n)
	}
}
