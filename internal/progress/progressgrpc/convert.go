// Package progressgrpc connects the progress events to gRPC: the conversion
// between progress.Event and the slammesh.events.v1.MissionEvent that
// WatchMission streams, and the unary server interceptor through which every
// step service emits its step.started, step.progress, step.completed and
// step.failed events without a line of event code in its handlers.
//
// It is a separate package so that internal/progress stays free of gRPC and
// protobuf, which the saga engine must not import.
package progressgrpc

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	"github.com/slammesh/slammesh/internal/progress"
)

// typeTable pairs every stream type with its proto enum value. The two
// spellings are both API (stream readers and WatchMission clients), so the
// mapping is one explicit table rather than derived from names.
var typeTable = [...]struct {
	typ   progress.Type
	proto eventsv1.EventType
}{
	{progress.MissionStarted, eventsv1.EventType_EVENT_TYPE_MISSION_STARTED},
	{progress.StepStarted, eventsv1.EventType_EVENT_TYPE_STEP_STARTED},
	{progress.StepProgress, eventsv1.EventType_EVENT_TYPE_STEP_PROGRESS},
	{progress.StepCompleted, eventsv1.EventType_EVENT_TYPE_STEP_COMPLETED},
	{progress.StepFailed, eventsv1.EventType_EVENT_TYPE_STEP_FAILED},
	{progress.StepRetrying, eventsv1.EventType_EVENT_TYPE_STEP_RETRYING},
	{progress.CompensationStarted, eventsv1.EventType_EVENT_TYPE_COMPENSATION_STARTED},
	{progress.CompensationCompleted, eventsv1.EventType_EVENT_TYPE_COMPENSATION_COMPLETED},
	{progress.CompensationFailed, eventsv1.EventType_EVENT_TYPE_COMPENSATION_FAILED},
	{progress.MissionCompleted, eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED},
	{progress.MissionCompensated, eventsv1.EventType_EVENT_TYPE_MISSION_COMPENSATED},
	{progress.MissionFailed, eventsv1.EventType_EVENT_TYPE_MISSION_FAILED},
}

// The table indexed both ways.
var toProtoType, fromProtoType = indexTypeTable()

func indexTypeTable() (map[progress.Type]eventsv1.EventType, map[eventsv1.EventType]progress.Type) {
	to := make(map[progress.Type]eventsv1.EventType, len(typeTable))
	from := make(map[eventsv1.EventType]progress.Type, len(typeTable))
	for _, row := range typeTable {
		to[row.typ] = row.proto
		from[row.proto] = row.typ
	}
	return to, from
}

// ProtoType returns the proto enum value of t, EVENT_TYPE_UNSPECIFIED for a
// type the schema does not define.
func ProtoType(t progress.Type) eventsv1.EventType {
	return toProtoType[t]
}

// TypeOf returns the stream type of an enum value, "" for
// EVENT_TYPE_UNSPECIFIED or a value this code does not know.
func TypeOf(t eventsv1.EventType) progress.Type {
	return fromProtoType[t]
}

// ToProto converts an event read from a stream into the message WatchMission
// sends; the stream entry id becomes stream_id, from which a client resumes.
func ToProto(e progress.Event) *eventsv1.MissionEvent {
	m := &eventsv1.MissionEvent{
		StreamId:    e.ID,
		V:           progress.SchemaVersion,
		MissionId:   e.MissionID,
		SagaId:      e.SagaID,
		Type:        ProtoType(e.Type),
		Step:        e.Step,
		Service:     e.Service,
		Attempt:     uint32(max(e.Attempt, 0)),
		Progress:    e.Progress,
		Message:     e.Message,
		ErrorCode:   e.ErrorCode,
		ErrorReason: e.ErrorReason,
		TraceId:     e.TraceID,
		SpanId:      e.SpanID,
	}
	if !e.Time.IsZero() {
		m.Ts = timestamppb.New(e.Time)
	}
	return m
}

// FromProto converts a MissionEvent received from WatchMission back into an
// event, so a client such as slamctl shares the stream readers' handling.
func FromProto(m *eventsv1.MissionEvent) progress.Event {
	e := progress.Event{
		ID:          m.GetStreamId(),
		MissionID:   m.GetMissionId(),
		SagaID:      m.GetSagaId(),
		Type:        TypeOf(m.GetType()),
		Step:        m.GetStep(),
		Service:     m.GetService(),
		Attempt:     int(m.GetAttempt()),
		Progress:    m.GetProgress(),
		Message:     m.GetMessage(),
		ErrorCode:   m.GetErrorCode(),
		ErrorReason: m.GetErrorReason(),
		TraceID:     m.GetTraceId(),
		SpanID:      m.GetSpanId(),
	}
	if m.GetTs() != nil {
		e.Time = m.GetTs().AsTime()
	}
	return e
}
