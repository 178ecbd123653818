package saga

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// State is the state of a whole saga (a mission).
type State string

// Saga states. The only paths are Pending → Running → Completed and
// Running → Compensating → Compensated | Failed; a Completed saga that is
// cancelled goes Completed → Compensating again (teardown).
const (
	Pending      State = "pending"
	Running      State = "running"
	Compensating State = "compensating"
	Completed    State = "completed"
	Compensated  State = "compensated"
	Failed       State = "failed"
)

// Terminal reports whether no engine drives a saga in state s any more.
// Completed counts as terminal even though a Cancel can reopen it for teardown.
func (s State) Terminal() bool {
	return s == Completed || s == Compensated || s == Failed
}

// StepState is the state of one step of a saga.
type StepState string

// Step states. A step leaves Pending only when an attempt of its action is about
// to start, so every step not Pending must be compensated on the way back.
const (
	StepPending            StepState = "pending"
	StepRunning            StepState = "running"
	StepSucceeded          StepState = "succeeded"
	StepFailed             StepState = "failed"
	StepCompensating       StepState = "compensating"
	StepCompensated        StepState = "compensated"
	StepCompensationFailed StepState = "compensation_failed"
)

// Failure is the machine-readable description of an error kept in the record
// and written on events: a code (a gRPC code name such as "UNAVAILABLE" when
// the orchestrator describes it), a reason (an ErrorInfo reason such as
// "CAPACITY_EXHAUSTED") and a human message.
type Failure struct {
	Code    string
	Reason  string
	Message string
}

// IsZero reports whether f describes no error.
func (f Failure) IsZero() bool { return f == Failure{} }

// StepRecord is the durable state of one step.
type StepRecord struct {
	Name  string
	State StepState
	// Attempts counts action attempts started (or, during a retry back-off,
	// about to start).
	Attempts int
	// CompAttempts counts compensation attempts started, across every
	// round of compensation: attempt numbers never repeat.
	CompAttempts int
	// CompBase is how many of CompAttempts were made before an operator last
	// resumed the saga (Engine.Resume): Policy.CompensationMaxAttempts bounds
	// the attempts after it.
	CompBase int
	// Error is the last error of the step's action or compensation.
	Error Failure
}

// Record is the durable state of one saga, stored as a flat Redis hash at
// RecordKey(Key). Fields of the hash (one per line, i = step index):
//
//	v                 schema version ("1")
//	saga_id, mission_id, definition, state, current, steps (count)
//	s<i>.name, s<i>.state, s<i>.attempts, s<i>.cattempts, s<i>.cbase, s<i>.code, s<i>.reason, s<i>.msg
//	out.<step name>   the step's output bytes, until the step is compensated
//	input             the saga input bytes
//	traceparent       W3C traceparent of the mission span
//	owner, epoch      the engine driving the saga and its fencing epoch
//	rev               the number of Saves that wrote the record
//	cancelled ("1"), cancel_reason
//	created, updated, ended   unix milliseconds
//	err.code, err.reason, err.msg   the error that ended or compensated the saga
//	cause.code, cause.reason, cause.msg   the error that made it compensate
//
// Empty values are not written (a Save deletes a field that became empty),
// so a fresh record is small and a compensated step leaves no output.
type Record struct {
	SagaID     string
	Key        string // the mission id; also the Redis hash tag of all the saga's keys
	Definition string
	State      State
	// Current is the index of the step being run or compensated.
	Current int
	Steps   []StepRecord
	Outputs map[string][]byte // by step name
	// Input is written by Create only: it is immutable, and Save ignores it.
	Input       []byte
	TraceParent string
	Owner       string
	// Epoch is the fencing token: every Save checks that the stored epoch still
	// equals it, and an engine that takes a saga over increments it.
	Epoch        int64
	Cancelled    bool
	CancelReason string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	EndedAt      time.Time
	// Error is why the saga compensated or, once Failed, why its
	// compensation gave up.
	Error Failure
	// Cause is why the saga turned to compensation. It survives a Failed
	// saga's Error, so that a resumed compensation ends with it.
	Cause Failure

	// rev counts the Saves that wrote the record. A Save writes rev+1 and
	// skips a write that already landed (its reply was lost and it is being
	// retried), so that no event is appended twice.
	rev int64

	// saved is the hash as last read or written, so that Save sends only the
	// fields that changed (and never overwrites a field another writer — a
	// Cancel — changed meanwhile unless this record changed it too).
	saved map[string]string

	// keys are the keys the create and save scripts touch (Store.keysOf),
	// built at the first write: they never change.
	keys []string
}

const schemaVersion = "1"

// Hash field names shared with the Lua scripts in scripts.go.
const (
	fieldVersion      = "v"
	fieldSagaID       = "saga_id"
	fieldKey          = "mission_id"
	fieldDefinition   = "definition"
	fieldState        = "state"
	fieldCurrent      = "current"
	fieldSteps        = "steps"
	fieldInput        = "input"
	fieldTraceParent  = "traceparent"
	fieldOwner        = "owner"
	fieldEpoch        = "epoch"
	fieldRev          = "rev"
	fieldCancelled    = "cancelled"
	fieldCancelReason = "cancel_reason"
	fieldCreated      = "created"
	fieldUpdated      = "updated"
	fieldEnded        = "ended"
	fieldErrCode      = "err.code"
	fieldErrReason    = "err.reason"
	fieldErrMessage   = "err.msg"
	fieldCauseCode    = "cause.code"
	fieldCauseReason  = "cause.reason"
	fieldCauseMessage = "cause.msg"
	// fieldLease is the expiry of the saga's lease in unix ms of the Redis
	// server's clock, written only by the store's scripts (never by Save's
	// field pairs): the authoritative lease (see Store).
	fieldLease   = "lease"
	outputPrefix = "out."
)

// Step fields of the record hash, "s<i>.<suffix>" (stepFieldSuffix).
const (
	stepName = iota
	stepState
	stepAttempts
	stepCompAttempts
	stepCompBase
	stepCode
	stepReason
	stepMsg
	numStepFields
)

var stepFieldSuffix = [numStepFields]string{"name", "state", "attempts", "cattempts", "cbase", "code", "reason", "msg"}

// stepFieldNames holds the field names of the first steps: every save
// names every field of every step, and building the names was a sixth of
// the allocations of a save (docs/performance.md).
var stepFieldNames = func() (t [16][numStepFields]string) {
	for i := range t {
		for f := range t[i] {
			t[i][f] = "s" + strconv.Itoa(i) + "." + stepFieldSuffix[f]
		}
	}
	return t
}()

// stepField names field f (stepName…stepMsg) of step i.
func stepField(i, f int) string {
	if i < len(stepFieldNames) {
		return stepFieldNames[i][f]
	}
	return "s" + strconv.Itoa(i) + "." + stepFieldSuffix[f]
}

// fields returns the record as field/value pairs, empty values left out. The
// input is included only when withInput: it never changes after Create and
// may be large (agents' scans), so saves do not even compare it.
func (r *Record) fields(withInput bool) []string {
	kv := make([]string, 0, 46+16*len(r.Steps)+2*len(r.Outputs))
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k, v)
		}
	}
	add(fieldVersion, schemaVersion)
	add(fieldSagaID, r.SagaID)
	add(fieldKey, r.Key)
	add(fieldDefinition, r.Definition)
	add(fieldState, string(r.State))
	add(fieldCurrent, strconv.Itoa(r.Current))
	add(fieldSteps, strconv.Itoa(len(r.Steps)))
	for i, s := range r.Steps {
		add(stepField(i, stepName), s.Name)
		add(stepField(i, stepState), string(s.State))
		add(stepField(i, stepAttempts), itoaNonZero(s.Attempts))
		add(stepField(i, stepCompAttempts), itoaNonZero(s.CompAttempts))
		add(stepField(i, stepCompBase), itoaNonZero(s.CompBase))
		add(stepField(i, stepCode), s.Error.Code)
		add(stepField(i, stepReason), s.Error.Reason)
		add(stepField(i, stepMsg), s.Error.Message)
	}
	for name, out := range r.Outputs {
		add(outputPrefix+name, string(out))
	}
	if withInput {
		add(fieldInput, string(r.Input))
	}
	add(fieldTraceParent, r.TraceParent)
	add(fieldOwner, r.Owner)
	add(fieldEpoch, strconv.FormatInt(r.Epoch, 10))
	if r.rev != 0 {
		add(fieldRev, strconv.FormatInt(r.rev, 10))
	}
	if r.Cancelled {
		add(fieldCancelled, "1")
	}
	add(fieldCancelReason, r.CancelReason)
	add(fieldCreated, formatMillis(r.CreatedAt))
	add(fieldUpdated, formatMillis(r.UpdatedAt))
	add(fieldEnded, formatMillis(r.EndedAt))
	add(fieldErrCode, r.Error.Code)
	add(fieldErrReason, r.Error.Reason)
	add(fieldErrMessage, r.Error.Message)
	add(fieldCauseCode, r.Cause.Code)
	add(fieldCauseReason, r.Cause.Reason)
	add(fieldCauseMessage, r.Cause.Message)
	return kv
}

// changes returns the field/value pairs that differ from what was last read or
// written (everything, for a record never read or written). A field that
// became empty is sent as "", which the save script deletes.
func (r *Record) changes() []string {
	if r.saved == nil {
		return r.fields(true)
	}
	kv := r.fields(false)
	out := kv[:0]
	seen := make(map[string]bool, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		seen[kv[i]] = true
		if r.saved[kv[i]] != kv[i+1] {
			out = append(out, kv[i], kv[i+1])
		}
	}
	for k, v := range r.saved {
		if !seen[k] && v != "" && k != fieldInput && k != fieldLease {
			out = append(out, k, "")
		}
	}
	return out
}

// markSaved records that the pairs are now what the hash holds.
func (r *Record) markSaved(kv []string) {
	if r.saved == nil {
		r.saved = make(map[string]string, len(kv)/2)
	}
	for i := 0; i < len(kv); i += 2 {
		r.saved[kv[i]] = kv[i+1]
	}
}

// clone returns a deep copy, so that a caller can read a record while the
// engine keeps changing its own.
func (r *Record) clone() *Record {
	c := *r
	c.Steps = append([]StepRecord(nil), r.Steps...)
	c.Outputs = make(map[string][]byte, len(r.Outputs))
	for k, v := range r.Outputs {
		c.Outputs[k] = append([]byte(nil), v...)
	}
	c.Input = append([]byte(nil), r.Input...)
	c.saved = make(map[string]string, len(r.saved))
	for k, v := range r.saved {
		c.saved[k] = v
	}
	return &c
}

// parseRecord decodes a hash read with HGETALL; a hash of this schema
// version, or of none (its fields lost), that it cannot decode is
// ErrDamaged.
func parseRecord(h map[string]string) (*Record, error) {
	if v := h[fieldVersion]; v != "" && v != schemaVersion {
		// Not damage: a newer orchestrator's record (a rolling upgrade),
		// which it drives.
		return nil, fmt.Errorf("saga record: schema version %q, want %q", v, schemaVersion)
	}
	r, err := decodeRecord(h)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return r, nil
}

func decodeRecord(h map[string]string) (*Record, error) {
	if v := h[fieldVersion]; v != schemaVersion {
		return nil, fmt.Errorf("saga record: schema version %q, want %q", v, schemaVersion)
	}
	r := &Record{
		SagaID:       h[fieldSagaID],
		Key:          h[fieldKey],
		Definition:   h[fieldDefinition],
		State:        State(h[fieldState]),
		Outputs:      make(map[string][]byte),
		TraceParent:  h[fieldTraceParent],
		Owner:        h[fieldOwner],
		Cancelled:    h[fieldCancelled] == "1",
		CancelReason: h[fieldCancelReason],
		Error:        Failure{Code: h[fieldErrCode], Reason: h[fieldErrReason], Message: h[fieldErrMessage]},
		Cause:        Failure{Code: h[fieldCauseCode], Reason: h[fieldCauseReason], Message: h[fieldCauseMessage]},
		saved:        h,
	}
	if in := h[fieldInput]; in != "" {
		r.Input = []byte(in)
	}
	var err error
	if r.Current, err = atoiEmpty(h[fieldCurrent]); err != nil {
		return nil, fmt.Errorf("saga record field %s: %w", fieldCurrent, err)
	}
	for _, f := range []struct {
		field string
		dst   *int64
	}{{fieldEpoch, &r.Epoch}, {fieldRev, &r.rev}} {
		if h[f.field] == "" {
			continue
		}
		if *f.dst, err = strconv.ParseInt(h[f.field], 10, 64); err != nil {
			return nil, fmt.Errorf("saga record field %s: %w", f.field, err)
		}
	}
	times := []struct {
		field string
		dst   *time.Time
	}{{fieldCreated, &r.CreatedAt}, {fieldUpdated, &r.UpdatedAt}, {fieldEnded, &r.EndedAt}}
	for _, f := range times {
		if *f.dst, err = parseMillis(h[f.field]); err != nil {
			return nil, fmt.Errorf("saga record field %s: %w", f.field, err)
		}
	}
	n, err := atoiEmpty(h[fieldSteps])
	if err != nil {
		return nil, fmt.Errorf("saga record field %s: %w", fieldSteps, err)
	}
	r.Steps = make([]StepRecord, n)
	for i := range r.Steps {
		s := &r.Steps[i]
		s.Name = h[stepField(i, stepName)]
		s.State = StepState(h[stepField(i, stepState)])
		if s.Attempts, err = atoiEmpty(h[stepField(i, stepAttempts)]); err != nil {
			return nil, fmt.Errorf("saga record field %s: %w", stepField(i, stepAttempts), err)
		}
		if s.CompAttempts, err = atoiEmpty(h[stepField(i, stepCompAttempts)]); err != nil {
			return nil, fmt.Errorf("saga record field %s: %w", stepField(i, stepCompAttempts), err)
		}
		if s.CompBase, err = atoiEmpty(h[stepField(i, stepCompBase)]); err != nil {
			return nil, fmt.Errorf("saga record field %s: %w", stepField(i, stepCompBase), err)
		}
		s.Error = Failure{
			Code:    h[stepField(i, stepCode)],
			Reason:  h[stepField(i, stepReason)],
			Message: h[stepField(i, stepMsg)],
		}
	}
	for k, v := range h {
		if name, ok := strings.CutPrefix(k, outputPrefix); ok && v != "" {
			r.Outputs[name] = []byte(v)
		}
	}
	return r, nil
}

// parseHash turns an HGETALL reply returned by a script (a flat array) into a
// map.
func parseHash(reply []any) (map[string]string, error) {
	if len(reply)%2 != 0 {
		return nil, fmt.Errorf("saga record: odd hash reply length %d", len(reply))
	}
	h := make(map[string]string, len(reply)/2)
	for i := 0; i < len(reply); i += 2 {
		k, ok1 := reply[i].(string)
		v, ok2 := reply[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("saga record: unexpected hash reply types %T, %T", reply[i], reply[i+1])
		}
		h[k] = v
	}
	return h, nil
}

func itoaNonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func atoiEmpty(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}

func formatMillis(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseMillis(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}
