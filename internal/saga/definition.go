package saga

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Step is one forward action of a saga and the compensation that undoes it.
//
// Both functions may be called more than once for the same saga (retries,
// resumes after a crash, a compensation for an action whose outcome is
// unknown), so the services behind them must be idempotent — which is what
// internal/barrier gives them.
type Step struct {
	Name string
	// Action does the step. It runs with a per-attempt deadline; it may call
	// x.SetOutput to pass bytes to later steps (and to its compensation).
	Action func(ctx context.Context, x *Exec) error
	// Compensate undoes the step. It runs on a context the caller of Run cannot
	// cancel, and must succeed even when the action never ran (null
	// compensation). A nil Compensate means the step has nothing to undo.
	Compensate func(ctx context.Context, x *Exec) error
}

// Class says what the engine does after a failed attempt.
type Class int

// Error classes. The orchestrator maps gRPC codes onto them; the engine knows
// no gRPC.
const (
	// Retry is a transient failure (a service restarting, a lost
	// connection, an attempt deadline): retried for as long as
	// Policy.RetryBudget allows (Policy.CompensationRetryBudget for a
	// compensation).
	Retry Class = iota + 1
	// RetryFew is an internal or unknown failure: retried
	// Policy.FewAttempts more times, then the saga compensates (a
	// compensation gets Policy.CompensationFewAttempts attempts).
	RetryFew
	// Fail is a business failure: the saga compensates at once (a
	// compensation is retried as RetryFew: it must eventually succeed).
	Fail
)

// Definition is a named sequence of steps with its error policy.
type Definition struct {
	// Name is stored in the record; Run refuses a record of another definition.
	Name  string
	Steps []Step
	// Classify tells transient from business failures. Nil classifies every
	// error as RetryFew.
	Classify func(error) Class
	// Describe extracts the code, reason and message recorded for an error
	// (the orchestrator reads them from the gRPC status and its ErrorInfo).
	// Nil uses DescribeDefault.
	Describe func(error) Failure
	Policy   Policy
}

// DescribeDefault describes context errors by their gRPC-style code names
// ("CANCELLED", "DEADLINE_EXCEEDED") and anything else as "UNKNOWN".
func DescribeDefault(err error) Failure {
	switch {
	case errors.Is(err, context.Canceled):
		return Failure{Code: CodeCancelled, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return Failure{Code: CodeDeadlineExceeded, Message: err.Error()}
	default:
		return Failure{Code: "UNKNOWN", Message: err.Error()}
	}
}

// Codes and reasons the engine itself records. The codes are gRPC code names so
// that records read alike whichever side produced the error.
const (
	CodeCancelled          = "CANCELLED"
	CodeDeadlineExceeded   = "DEADLINE_EXCEEDED"
	ReasonMissionCancelled = "MISSION_CANCELLED"
	ReasonMissionDeadline  = "MISSION_DEADLINE"
	// ReasonStepDeadlineExceeded is recorded when a step gave up because
	// its last attempt ran past the step's attempt deadline: the step is
	// slower than its deadline on this machine, and its message names the
	// step, the deadline and the attempts, so an operator can raise it
	// (Policy.StepTimeouts, the orchestrator's --step-timeout).
	ReasonStepDeadlineExceeded = "STEP_DEADLINE_EXCEEDED"
	// ReasonRetryBudgetExhausted is recorded when a step gave up after
	// transient errors that carried no reason of their own (a service
	// unreachable: connection refused) for longer than the retry budget;
	// its message names the step, the attempts, the budget and the last
	// error (Policy.RetryBudget, the orchestrator's --retry-budget).
	ReasonRetryBudgetExhausted = "RETRY_BUDGET_EXHAUSTED"
)

// Policy bounds retries and time. Zero fields take the defaults below.
//
// Transient failures are bounded by time, not by a count: a rolling restart
// of a step service refuses connections for seconds, however many attempts
// fit in them. Failures that a retry is unlikely to fix (RetryFew) are
// bounded by a count.
type Policy struct {
	// RetryBudget bounds how long a step's action is retried after Retry
	// errors, counted from the start of its first attempt in this run
	// (default 2m): a retry whose back-off would end past it is not made.
	// An attempt that runs to its deadline uses that much of it, so a
	// budget no longer than a step's deadline never retries a hung attempt.
	RetryBudget time.Duration
	// MaxAttempts, when positive, also caps the attempts of a step's action
	// whatever the error class; 0 (the default) leaves transient failures
	// bounded by RetryBudget only.
	MaxAttempts int
	// FewAttempts is how many retries a RetryFew error gets (default 2).
	FewAttempts int
	// AttemptTimeout bounds each action and compensation attempt of a step
	// not named in StepTimeouts (default 10s).
	AttemptTimeout time.Duration
	// StepTimeouts overrides AttemptTimeout per step name; NewEngine refuses
	// a name that is not a step of the definition, or a non-positive value.
	StepTimeouts map[string]time.Duration
	// InitialBackoff and MaxBackoff shape the exponential back-off with full
	// jitter between attempts (defaults 20ms and 1s). MaxBackoff also bounds
	// how long after a service comes back its first retry is made.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// CompensationRetryBudget bounds how long one compensation is retried
	// after Retry errors before the saga is declared Failed, counted from
	// its first attempt in this run (default 10m): a compensation outlives
	// any restart of its service.
	CompensationRetryBudget time.Duration
	// CompensationFewAttempts bounds the attempts of one compensation that
	// fails with other than Retry errors (default 10).
	CompensationFewAttempts int
	// CompensationMaxAttempts, when positive, also caps the attempts of one
	// compensation whatever the error class; 0 (the default) leaves
	// transient failures bounded by CompensationRetryBudget only.
	CompensationMaxAttempts int
	// MissionDeadline bounds the forward path, counted from the record's
	// creation so that a resume does not extend it (default 5m). Compensation
	// is not bounded by it.
	MissionDeadline time.Duration
}

// Defaults of Policy's zero fields.
const (
	// DefaultRetryBudget is twice the orchestrator's longest default step
	// deadline (a minute, for localization and merge), so that a hung
	// attempt of any step is retried once.
	DefaultRetryBudget             = 2 * time.Minute
	DefaultCompensationRetryBudget = 10 * time.Minute
	DefaultAttemptTimeout          = 10 * time.Second
	DefaultFewAttempts             = 2
	DefaultCompensationFewAttempts = 10
)

// saveAttempts bounds the attempts of one record write when MaxAttempts does
// not: past it the run stops and leaves the saga to recovery.
const saveAttempts = 5

func (p Policy) withDefaults() Policy {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&p.FewAttempts, DefaultFewAttempts)
	def(&p.CompensationFewAttempts, DefaultCompensationFewAttempts)
	defDur(&p.RetryBudget, DefaultRetryBudget)
	defDur(&p.CompensationRetryBudget, DefaultCompensationRetryBudget)
	defDur(&p.AttemptTimeout, DefaultAttemptTimeout)
	defDur(&p.InitialBackoff, 20*time.Millisecond)
	defDur(&p.MaxBackoff, time.Second)
	defDur(&p.MissionDeadline, 5*time.Minute)
	return p
}

// timeout is the attempt deadline of step.
func (p Policy) timeout(step string) time.Duration {
	if d, ok := p.StepTimeouts[step]; ok {
		return d
	}
	return p.AttemptTimeout
}

// giveUp reports whether a step whose action failed with an error of class
// c on attempt n (n ≥ 1), elapsed after its first attempt began, is not
// retried after a back-off of delay.
func (p Policy) giveUp(c Class, n int, elapsed, delay time.Duration) bool {
	if p.MaxAttempts > 0 && n >= p.MaxAttempts {
		return true
	}
	switch c {
	case Retry:
		return elapsed+delay > p.RetryBudget
	case RetryFew:
		return n >= 1+p.FewAttempts
	default:
		return true
	}
}

// giveUpCompensation is giveUp for a compensation: n attempts used, elapsed
// since the first of them began.
func (p Policy) giveUpCompensation(c Class, n int, elapsed, delay time.Duration) bool {
	if p.CompensationMaxAttempts > 0 && n >= p.CompensationMaxAttempts {
		return true
	}
	if c == Retry {
		return elapsed+delay > p.CompensationRetryBudget
	}
	return n >= p.CompensationFewAttempts
}

// backoff is the wait before retry number n (n ≥ 1): uniform in
// [0, min(MaxBackoff, InitialBackoff·2^(n-1))] ("full jitter"), which spreads
// the retries of many sagas hitting the same failing service.
func (p Policy) backoff(n int) time.Duration {
	ceiling := p.InitialBackoff
	for i := 1; i < n && ceiling < p.MaxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.MaxBackoff)
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

func (d *Definition) validate() error {
	if d.Name == "" {
		return errors.New("saga definition: empty name")
	}
	if len(d.Steps) == 0 {
		return fmt.Errorf("saga definition %s: no steps", d.Name)
	}
	seen := make(map[string]bool, len(d.Steps))
	for i, s := range d.Steps {
		switch {
		case s.Name == "":
			return fmt.Errorf("saga definition %s: step %d has no name", d.Name, i)
		case seen[s.Name]:
			return fmt.Errorf("saga definition %s: duplicate step %q", d.Name, s.Name)
		case s.Action == nil:
			return fmt.Errorf("saga definition %s: step %q has no action", d.Name, s.Name)
		}
		seen[s.Name] = true
	}
	for name, timeout := range d.Policy.StepTimeouts {
		switch {
		case !seen[name]:
			return fmt.Errorf("saga definition %s: step timeout for unknown step %q", d.Name, name)
		case timeout <= 0:
			return fmt.Errorf("saga definition %s: step timeout %v for %q is not positive", d.Name, timeout, name)
		}
	}
	return nil
}

// Exec is what a step function sees of its saga. It is valid only during the
// call it was passed to and is not safe for concurrent use.
type Exec struct {
	rec     *Record
	step    int
	attempt int
	output  []byte
}

// SagaID returns the saga's id.
func (x *Exec) SagaID() string { return x.rec.SagaID }

// Key returns the saga's key (the mission id).
func (x *Exec) Key() string { return x.rec.Key }

// Step returns the name of the step being run or compensated.
func (x *Exec) Step() string { return x.rec.Steps[x.step].Name }

// Attempt returns the 1-based number of this attempt of the action, or of the
// compensation when called from Compensate.
func (x *Exec) Attempt() int { return x.attempt }

// Input returns the saga input given to Start. Callers must not modify it.
func (x *Exec) Input() []byte { return x.rec.Input }

// Output returns the output a step (usually an earlier one, or the step itself
// from its compensation) recorded, or nil. A step's output is dropped once
// its compensation has completed, so a compensation sees the outputs of its
// own step and the earlier ones only. Callers must not modify it.
func (x *Exec) Output(step string) []byte { return x.rec.Outputs[step] }

// SetOutput sets this step's output, persisted with the record when the
// attempt succeeds. It has no effect from a compensation or a failed attempt.
func (x *Exec) SetOutput(b []byte) { x.output = b }
