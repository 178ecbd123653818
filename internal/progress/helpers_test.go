package progress_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
)

// newClient starts a redis-server of the test's own and returns a client.
func newClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	return redistest.Start(t).Universal(t)
}

// quietLogger drops the warnings the code under test logs on purpose.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// stepEvent returns a step.progress event of mission m with a distinct
// message, the shape most tests publish.
func stepEvent(m string, i int) progress.Event {
	return progress.Event{
		MissionID: m,
		SagaID:    "saga-" + m,
		Type:      progress.StepProgress,
		Step:      "localize_agents",
		Service:   "localization",
		Attempt:   1,
		Progress:  float64(i) / 10,
		Message:   "event " + strconv.Itoa(i),
	}
}

// awaitBlockedClients waits until Redis reports at least one client blocked
// in a stream read, so a test cancels a reader that is really inside BLOCK.
func awaitBlockedClients(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := rdb.Info(context.Background(), "clients").Result()
		if err != nil {
			t.Fatalf("INFO clients: %v", err)
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok && v != "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client blocked within 10s; INFO clients:\n%s", info)
		}
		<-tick.C
	}
}

// messages strips the fields a reader sets (ID) or the publisher fills (Time,
// trace) so tests compare what was published with what was read.
func messages(events []progress.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.MissionID + "/" + e.Message
	}
	return out
}
