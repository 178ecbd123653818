package saga

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// budgetPolicy bounds transient retries by time only (no MaxAttempts), with
// back-offs short enough for a test.
var budgetPolicy = Policy{
	RetryBudget:             2 * time.Second,
	CompensationRetryBudget: 2 * time.Second,
	AttemptTimeout:          5 * time.Second,
	InitialBackoff:          time.Millisecond,
	MaxBackoff:              5 * time.Millisecond,
}

// A service that refuses calls for a while (a restart) costs attempts, not
// the mission: transient errors are retried for the retry budget, however
// many attempts fit in it — far more than any fixed count.
func TestTransientRetriesBoundedByTimeNotCount(t *testing.T) {
	t.Parallel()
	// The service is down for 300 ms from the first call it sees (not from
	// the test's start: setting up on a loaded machine or a Redis Cluster
	// may take longer than that).
	var once sync.Once
	var down time.Time
	restarting := func(context.Context, *Exec) error {
		once.Do(func() { down = time.Now().Add(300 * time.Millisecond) })
		if time.Now().Before(down) {
			return errTransient
		}
		return nil
	}
	f := newFixture(t, map[string]behaviour{"b": {act: restarting}, "a": {comp: restarting}})
	f.def.Policy = budgetPolicy
	rec := startRun(t, f.engine(t, Options{}), "m")
	if rec.State != Completed {
		t.Fatalf("state = %s (error %+v), want completed once the service is back", rec.State, rec.Error)
	}
	if n := rec.Steps[1].Attempts; n <= 10 {
		t.Errorf("b took %d attempts; want more than the old fixed bound of 5-10 (the budget is time)", n)
	}
}

// Past the retry budget a transient failure compensates, and a compensation
// whose service keeps refusing for longer than its budget fails the saga,
// saying how long it tried.
func TestRetryBudgetsExhausted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]behaviour{
		"b": {act: func(context.Context, *Exec) error { return errTransient }},
		"a": {comp: func(context.Context, *Exec) error { return errTransient }},
	})
	p := budgetPolicy
	p.RetryBudget = 200 * time.Millisecond
	p.CompensationRetryBudget = 300 * time.Millisecond
	f.def.Policy = p
	start := time.Now()
	rec := startRun(t, f.engine(t, Options{}), "m")
	if rec.State != Failed {
		t.Fatalf("state = %s, want failed (a's compensation never succeeds)", rec.State)
	}
	// A retry whose back-off would end past the budget is not made, so each
	// budget may end up to one MaxBackoff (5ms) early.
	if took := time.Since(start); took < 490*time.Millisecond {
		t.Errorf("gave up after %v, before the two budgets (500ms) were spent", took)
	}
	if got := rec.Steps[1].State; got != StepCompensated {
		t.Errorf("b = %s, want compensated after its retry budget", got)
	}
	if rec.Steps[0].CompAttempts <= DefaultCompensationFewAttempts {
		t.Errorf("a's compensation made %d attempts; a transient failure is bounded by time, not by CompensationFewAttempts",
			rec.Steps[0].CompAttempts)
	}
	if !strings.Contains(rec.Error.Message, "compensation of a failed after") || !strings.Contains(rec.Error.Message, " over ") {
		t.Errorf("error message %q does not say how long the compensation was tried", rec.Error.Message)
	}
}

// A step slower than its attempt deadline on every attempt gives up with
// STEP_DEADLINE_EXCEEDED, naming the step, its own deadline (from
// StepTimeouts) and the attempts; the other steps keep the default deadline.
func TestSlowStepReasonNamesDeadline(t *testing.T) {
	t.Parallel()
	var aDeadline atomic.Int64
	f := newFixture(t, map[string]behaviour{
		"a": {act: func(ctx context.Context, x *Exec) error {
			d, _ := ctx.Deadline()
			aDeadline.Store(int64(time.Until(d)))
			return nil
		}},
		"b": {act: func(ctx context.Context, _ *Exec) error {
			<-ctx.Done()
			return ctx.Err()
		}},
	})
	p := budgetPolicy
	p.RetryBudget = 500 * time.Millisecond
	p.StepTimeouts = map[string]time.Duration{"b": 150 * time.Millisecond}
	f.def.Policy = p
	rec := startRun(t, f.engine(t, Options{}), "m")
	if rec.State != Compensated {
		t.Fatalf("state = %s, want compensated", rec.State)
	}
	if d := time.Duration(aDeadline.Load()); d < time.Second {
		t.Errorf("step a ran with a deadline of %v, want the default AttemptTimeout (5s)", d)
	}
	e := rec.Error
	if e.Code != CodeDeadlineExceeded || e.Reason != ReasonStepDeadlineExceeded {
		t.Fatalf("error = %+v, want %s %s", e, CodeDeadlineExceeded, ReasonStepDeadlineExceeded)
	}
	for _, want := range []string{"step b", "150ms", "attempts", "--step-timeout b="} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q lacks %q", e.Message, want)
		}
	}
	if n := rec.Steps[1].Attempts; n < 2 {
		t.Errorf("b attempted %d times, want retries within the budget", n)
	}
}

// NewEngine refuses a step timeout for a step the definition lacks, so a
// typo in --step-timeout fails at start rather than being ignored.
func TestStepTimeoutsValidated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for name, timeouts := range map[string]map[string]time.Duration{
		"unknown step": {"nope": time.Second},
		"not positive": {"a": 0},
	} {
		def := f.def
		def.Policy.StepTimeouts = timeouts
		if _, err := NewEngine(f.store, def, Options{}); err == nil {
			t.Errorf("%s: NewEngine accepted StepTimeouts %v", name, timeouts)
		}
	}
}

// A step given up after transient errors without a reason of their own
// (a service that refuses connections) records RETRY_BUDGET_EXHAUSTED,
// naming the step, the budget and the last error; a transient error with a
// reason keeps it.
func TestRetryBudgetReasonWhenTheErrorHasNone(t *testing.T) {
	t.Parallel()
	unreachable := &stepErr{class: Retry, code: "UNAVAILABLE"}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{unreachable, ReasonRetryBudgetExhausted},
		{errTransient, "FLAKY"},
	} {
		f := newFixture(t, map[string]behaviour{"b": {act: func(context.Context, *Exec) error { return tt.err }}})
		p := budgetPolicy
		p.RetryBudget = 100 * time.Millisecond
		f.def.Policy = p
		rec := startRun(t, f.engine(t, Options{}), "m")
		if rec.State != Compensated {
			t.Fatalf("%v: state = %s, want compensated", tt.err, rec.State)
		}
		e := rec.Steps[1].Error
		if e.Code != "UNAVAILABLE" || e.Reason != tt.want || rec.Error != e {
			t.Errorf("%v: step error %+v, mission error %+v; want UNAVAILABLE %s on both", tt.err, e, rec.Error, tt.want)
		}
		if tt.want != ReasonRetryBudgetExhausted {
			continue
		}
		for _, want := range []string{"step b", "attempts", "100ms retry budget", "--retry-budget", "last error: " + unreachable.Error()} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q lacks %q", e.Message, want)
			}
		}
	}
}

// A step given up at Policy.MaxAttempts, inside its retry budget, is not
// said to have exhausted the budget.
func TestMaxAttemptsIsNotTheRetryBudget(t *testing.T) {
	t.Parallel()
	unreachable := &stepErr{class: Retry, code: "UNAVAILABLE"}
	f := newFixture(t, map[string]behaviour{"b": {act: func(context.Context, *Exec) error { return unreachable }}})
	p := budgetPolicy
	p.RetryBudget = time.Hour
	p.MaxAttempts = 3
	f.def.Policy = p
	rec := startRun(t, f.engine(t, Options{}), "m")
	if e := rec.Steps[1].Error; rec.State != Compensated || e.Reason == ReasonRetryBudgetExhausted || rec.Steps[1].Attempts != 3 {
		t.Errorf("state %s, %d attempts, step error %+v; want compensated after 3 attempts, no %s", rec.State, rec.Steps[1].Attempts, e, ReasonRetryBudgetExhausted)
	}
}

// TestAttemptsWord: one attempt is singular (found by a review: "after 1
// attempts").
func TestAttemptsWord(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "0 attempts", 1: "1 attempt", 2: "2 attempts"} {
		if got := attemptsWord(n); got != want {
			t.Errorf("attemptsWord(%d) = %q, want %q", n, got, want)
		}
	}
}
