package saga

import (
	"context"
	"testing"
	"time"
)

// deadlineOnly is a context whose deadline is set but whose timer has not
// fired: Err is nil however late it is, as a real context's is for a moment
// after its deadline.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

// TestAttemptExpired pins that an attempt whose deadline is past counts as
// expired even before its context's timer marks it done (a gRPC client
// reports the server's RST_STREAM at the deadline in that window), so the
// step's failure names the deadline; and that a stop of the parent does not.
func TestAttemptExpired(t *testing.T) {
	t.Parallel()
	now := time.Now()
	parent := context.Background()
	if !attemptExpired(deadlineOnly{parent, now.Add(-time.Millisecond)}, parent, now) {
		t.Error("deadline past, timer not fired: not expired")
	}
	if attemptExpired(deadlineOnly{parent, now.Add(time.Second)}, parent, now) {
		t.Error("deadline ahead: expired")
	}
	timed, cancel := context.WithTimeout(parent, -time.Second)
	defer cancel()
	if !attemptExpired(timed, parent, now) {
		t.Error("context ended by its deadline: not expired")
	}
	stopped, stop := context.WithCancel(parent)
	stop()
	if attemptExpired(deadlineOnly{stopped, now.Add(-time.Millisecond)}, stopped, now) {
		t.Error("parent stopped: expired")
	}
}
