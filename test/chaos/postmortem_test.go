//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/saga"
)

// postMortemMissions bounds how many unfinished missions postMortem
// describes, and postMortemEvents how many of each one's last events.
const (
	postMortemMissions = 3
	postMortemEvents   = 6
)

// postMortem describes what Redis holds of the missions a run left
// unfinished or unlisted: the saga record, its entries in the mission
// index and its active-index shard, and the last events of its stream.
// A stuck mission is rare and depends on timing, so the one CI run that
// hits it must say enough to find the cause.
func postMortem(ctx context.Context, rdb redis.UniversalClient, ids []string) string {
	var b strings.Builder
	for _, id := range head(ids, postMortemMissions) {
		fmt.Fprintf(&b, "post-mortem of %s:\n", id)
		rec, err := rdb.HGetAll(ctx, saga.RecordKey(id)).Result()
		switch {
		case err != nil:
			fmt.Fprintf(&b, "  record: %v\n", err)
		case len(rec) == 0:
			fmt.Fprintf(&b, "  record: none\n")
		default:
			var fields []string
			for _, k := range slices.Sorted(maps.Keys(rec)) {
				v := rec[k]
				if len(v) > 80 {
					v = v[:80] + "…"
				}
				fields = append(fields, k+"="+v)
			}
			fmt.Fprintf(&b, "  record: %s\n", strings.Join(fields, " "))
		}
		fmt.Fprintf(&b, "  mission index: %s; active index: %s\n",
			score(rdb.ZScore(ctx, saga.MissionsKey, id)), score(rdb.ZScore(ctx, saga.ActiveKey(id), id)))
		events, err := progress.Range(ctx, rdb, progress.MissionStream(id))
		if err != nil {
			fmt.Fprintf(&b, "  events: %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "  events: %d, the last:\n", len(events))
		for _, e := range events[max(len(events)-postMortemEvents, 0):] {
			fmt.Fprintf(&b, "    %s %s %s attempt %d %s %s %q\n", e.ID, e.Type, e.Step, e.Attempt, e.ErrorCode, e.ErrorReason, e.Message)
		}
	}
	return b.String()
}

// score prints a sorted-set score read, "none" for a missing member.
func score(c *redis.FloatCmd) string {
	v, err := c.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "none"
	case err != nil:
		return err.Error()
	}
	return fmt.Sprintf("%.0f", v)
}

// TestPostMortem: the post-mortem of an unfinished mission names its record
// fields, its index entries (or their absence) and its last events, and of
// a mission Redis knows nothing of says so.
func TestPostMortem(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Universal(t)
	const id = "pm-1"
	if err := rdb.HSet(ctx, saga.RecordKey(id), "state", "running", "owner", "vm:42", "epoch", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, saga.MissionsKey, redis.Z{Score: 1700000000000, Member: id}).Err(); err != nil {
		t.Fatal(err)
	}
	pub := progress.NewPublisher(rdb, progress.Options{})
	var events []progress.Event
	for i := range postMortemEvents + 2 {
		events = append(events, progress.Event{MissionID: id, Type: progress.StepRetrying, Step: "localize_agents", Attempt: i + 1, Message: fmt.Sprintf("try %d", i+1)})
	}
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatal(err)
	}
	got := postMortem(ctx, rdb, []string{id, "pm-unknown"})
	for _, want := range []string{
		"post-mortem of pm-1:\n  record: epoch=2 owner=vm:42 state=running\n",
		"  mission index: 1700000000000; active index: none\n",
		fmt.Sprintf("  events: %d, the last:\n", postMortemEvents+2),
		`step.retrying localize_agents attempt 8   "try 8"`,
		"post-mortem of pm-unknown:\n  record: none\n  mission index: none; active index: none\n  events: 0, the last:\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("post-mortem lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, `"try 2"`) {
		t.Errorf("post-mortem shows more than the last %d events:\n%s", postMortemEvents, got)
	}
}
