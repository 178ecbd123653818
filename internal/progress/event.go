package progress

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// SchemaVersion is the version written in every entry's v field. A change
// that a version-1 reader would misread or reject (a renamed field, a new
// meaning, a new event type) bumps it; adding an optional field does not.
const SchemaVersion = 1

// schemaVersionString is SchemaVersion as written, computed once so encoding
// does not format it per event.
var schemaVersionString = strconv.Itoa(SchemaVersion)

// GlobalStream is the firehose stream every event of every mission is also
// appended to.
const GlobalStream = "slammesh:events"

// MissionStream names the stream of one mission's events. The braces are a
// Redis Cluster hash tag: the stream lands in the slot of the mission's other
// keys (saga record, barrier, map).
func MissionStream(missionID string) string {
	return "slammesh:{" + missionID + "}:events"
}

// Type says what an event reports. Its values are the stream spelling.
type Type string

// The event types of schema version 1.
const (
	// MissionStarted means the saga began, or resumed after an orchestrator crash.
	MissionStarted Type = "mission.started"
	// StepStarted means a step service began an attempt.
	StepStarted Type = "step.started"
	// StepProgress reports the fractional progress of a running step.
	StepProgress Type = "step.progress"
	// StepCompleted means a step attempt succeeded.
	StepCompleted Type = "step.completed"
	// StepFailed means a step attempt failed; error_code says whether it is retried.
	StepFailed Type = "step.failed"
	// StepRetrying means the orchestrator retries a step after a transient error.
	StepRetrying Type = "step.retrying"
	// CompensationStarted means a compensation attempt began.
	CompensationStarted Type = "compensation.started"
	// CompensationCompleted means a step's effect was undone.
	CompensationCompleted Type = "compensation.completed"
	// CompensationFailed means a compensation attempt failed; it will be retried.
	CompensationFailed Type = "compensation.failed"
	// MissionCompleted means every step succeeded.
	MissionCompleted Type = "mission.completed"
	// MissionCompensated means every attempted step was undone.
	MissionCompensated Type = "mission.compensated"
	// MissionFailed means a compensation could not be completed; an operator is needed.
	MissionFailed Type = "mission.failed"
)

// Terminal reports whether t ends a mission: after it the saga writes no
// further event unless the mission is torn down or resumed later, which
// begins a new chapter (see Ended).
func (t Type) Terminal() bool {
	switch t {
	case MissionCompleted, MissionCompensated, MissionFailed:
		return true
	}
	return false
}

// reopens reports whether t, written after a terminal event, begins a new
// chapter of the mission (a teardown of a completed mission, a failed one
// resumed): the orchestrator starts every run with mission.started and a
// compensation with compensation.started. A step's event after a terminal
// one (a step service's late step.failed, from a call the compensation
// overtook) reopens nothing.
func (t Type) reopens() bool {
	return t == MissionStarted || t == CompensationStarted
}

// known reports whether t is one of the schema's types. Parse rejects the
// others so that a producer's typo surfaces at the first reader instead of,
// say, a watcher never seeing its mission end.
func (t Type) known() bool {
	switch t {
	case MissionStarted, StepStarted, StepProgress, StepCompleted, StepFailed,
		StepRetrying, CompensationStarted, CompensationCompleted,
		CompensationFailed, MissionCompleted, MissionCompensated, MissionFailed:
		return true
	}
	return false
}

// Event is one progress event. Its fields are the stream entry's fields (see
// the package documentation), plus ID, which only a reader sets.
type Event struct {
	// ID is the stream entry id ("1700000000000-0"); set when read, ignored
	// when published (Redis assigns it).
	ID string
	// MissionID is the mission the event belongs to; required.
	MissionID string
	// SagaID is the saga driving the mission.
	SagaID string
	// Type says what happened; required.
	Type Type
	// Step is the saga step; empty for mission events.
	Step string
	// Service is the service that wrote the event.
	Service string
	// Attempt is the 1-based attempt of the step or compensation; 0 for
	// mission events.
	Attempt int
	// Progress is the fraction done, in [0, 1].
	Progress float64
	// Message is human-readable detail.
	Message string
	// ErrorCode is the gRPC code name of a failure ("FAILED_PRECONDITION").
	ErrorCode string
	// ErrorReason is the google.rpc.ErrorInfo reason of a failure.
	ErrorReason string
	// TraceID is the W3C trace id of the mission's trace (32 hex digits).
	TraceID string
	// SpanID is the span that wrote the event (16 hex digits).
	SpanID string
	// Time is when the event happened; the publisher stamps the current time
	// when it is zero.
	Time time.Time
}

// Stream field names, in the order they are written.
const (
	fieldV           = "v"
	fieldMissionID   = "mission_id"
	fieldSagaID      = "saga_id"
	fieldType        = "type"
	fieldStep        = "step"
	fieldService     = "service"
	fieldAttempt     = "attempt"
	fieldProgress    = "progress"
	fieldMessage     = "message"
	fieldErrorCode   = "error_code"
	fieldErrorReason = "error_reason"
	fieldTraceID     = "trace_id"
	fieldSpanID      = "span_id"
	fieldTS          = "ts"
)

// numFields is the number of fields of an entry.
const numFields = 14

// fieldKeys are the field names, boxed once: copying a boxed string costs
// nothing, boxing one (convTstring) an allocation.
var fieldKeys = [numFields]any{
	fieldV, fieldMissionID, fieldSagaID, fieldType, fieldStep, fieldService, fieldAttempt,
	fieldProgress, fieldMessage, fieldErrorCode, fieldErrorReason, fieldTraceID, fieldSpanID, fieldTS,
}

// encoded is one event's entry in a single allocation: its values, and the
// field-value pairs handed to go-redis, whose values point at them (go-redis
// writes a *string argument as the string).
type encoded struct {
	vals  [numFields]string
	pairs [2 * numFields]any
}

// values returns e as XADD field/value pairs, each value a *string. A []any
// is what go-redis appends to the command without a map or reflection, and
// the same slice serves both streams the event goes to. Boxing each value as
// a string cost 13 allocations per event, 7 % of the mesh's allocations on
// overhead missions (docs/performance.md). Redis gets the strings; only
// go-redis's debug form of a command (Cmder.String, which nothing here
// logs) shows the values as pointers.
func (e *Event) values() []any {
	enc := &encoded{vals: [numFields]string{
		schemaVersionString,
		e.MissionID,
		e.SagaID,
		string(e.Type),
		e.Step,
		e.Service,
		strconv.Itoa(e.Attempt),
		strconv.FormatFloat(e.Progress, 'f', -1, 64),
		e.Message,
		e.ErrorCode,
		e.ErrorReason,
		e.TraceID,
		e.SpanID,
		e.Time.UTC().Format(time.RFC3339Nano),
	}}
	for i := range enc.vals {
		enc.pairs[2*i] = fieldKeys[i]
		enc.pairs[2*i+1] = &enc.vals[i]
	}
	return enc.pairs[:]
}

// ErrUnsupportedVersion is wrapped by Parse's error for an entry whose schema
// version this code does not know (or that has none): the entry was written
// by a newer slammesh, or not by slammesh at all.
var ErrUnsupportedVersion = errors.New("unsupported progress schema version")

// Parse decodes a stream entry. Optional fields may be missing (they decode
// to zero values); v, mission_id and a known type are required, and numbers
// and the timestamp must be well formed when present.
func Parse(msg redis.XMessage) (Event, error) {
	field := func(name string) string {
		s, _ := msg.Values[name].(string)
		return s
	}
	if v := field(fieldV); v != schemaVersionString {
		return Event{}, fmt.Errorf("progress: entry %s: v=%q: %w", msg.ID, v, ErrUnsupportedVersion)
	}
	e := Event{
		ID:          msg.ID,
		MissionID:   field(fieldMissionID),
		SagaID:      field(fieldSagaID),
		Type:        Type(field(fieldType)),
		Step:        field(fieldStep),
		Service:     field(fieldService),
		Message:     field(fieldMessage),
		ErrorCode:   field(fieldErrorCode),
		ErrorReason: field(fieldErrorReason),
		TraceID:     field(fieldTraceID),
		SpanID:      field(fieldSpanID),
	}
	if e.MissionID == "" {
		return Event{}, fmt.Errorf("progress: entry %s: missing %s", msg.ID, fieldMissionID)
	}
	if !e.Type.known() {
		return Event{}, fmt.Errorf("progress: entry %s: unknown type %q", msg.ID, e.Type)
	}
	if s := field(fieldAttempt); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return Event{}, fmt.Errorf("progress: entry %s: %s: %w", msg.ID, fieldAttempt, err)
		}
		e.Attempt = n
	}
	if s := field(fieldProgress); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Event{}, fmt.Errorf("progress: entry %s: %s: %w", msg.ID, fieldProgress, err)
		}
		e.Progress = f
	}
	if s := field(fieldTS); s != "" {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Event{}, fmt.Errorf("progress: entry %s: %s: %w", msg.ID, fieldTS, err)
		}
		e.Time = ts
	}
	return e, nil
}

// FillTrace sets e's TraceID and SpanID from the span context in ctx, unless
// e already carries a trace id (a resumed saga writes the trace id it stored,
// so the mission stays one trace) or ctx holds no valid span context.
func FillTrace(ctx context.Context, e *Event) {
	if e.TraceID != "" {
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	e.TraceID = sc.TraceID().String()
	e.SpanID = sc.SpanID().String()
}
