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
	// Retry is a transient failure: retried up to Policy.MaxAttempts attempts.
	Retry Class = iota + 1
	// RetryFew is an internal or unknown failure: retried
	// Policy.FewAttempts more times, then the saga compensates.
	RetryFew
	// Fail is a business failure: the saga compensates at once.
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
)

// Policy bounds retries and time. Zero fields take the defaults below.
type Policy struct {
	// MaxAttempts bounds the attempts of a step's action for Retry errors
	// (default 5).
	MaxAttempts int
	// FewAttempts is how many retries a RetryFew error gets (default 2).
	FewAttempts int
	// AttemptTimeout bounds each action and compensation attempt (default 10s).
	AttemptTimeout time.Duration
	// InitialBackoff and MaxBackoff shape the exponential back-off with full
	// jitter between attempts (defaults 20ms and 1s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// CompensationMaxAttempts bounds the attempts of one compensation before
	// the saga is declared Failed (default 10).
	CompensationMaxAttempts int
	// MissionDeadline bounds the forward path, counted from the record's
	// creation so that a resume does not extend it (default 5m). Compensation
	// is not bounded by it.
	MissionDeadline time.Duration
}

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
	def(&p.MaxAttempts, 5)
	def(&p.FewAttempts, 2)
	def(&p.CompensationMaxAttempts, 10)
	defDur(&p.AttemptTimeout, 10*time.Second)
	defDur(&p.InitialBackoff, 20*time.Millisecond)
	defDur(&p.MaxBackoff, time.Second)
	defDur(&p.MissionDeadline, 5*time.Minute)
	return p
}

// attemptLimit is the total number of attempts a step gets when its last
// attempt failed with an error of class c.
func (p Policy) attemptLimit(c Class) int {
	switch c {
	case Retry:
		return p.MaxAttempts
	case RetryFew:
		return min(1+p.FewAttempts, p.MaxAttempts)
	default:
		return 1
	}
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
