package progressgrpc_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
)

func TestTypeTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
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
		{"step.exploded", eventsv1.EventType_EVENT_TYPE_UNSPECIFIED},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			if got := progressgrpc.ProtoType(tt.typ); got != tt.proto {
				t.Fatalf("ProtoType(%q) = %v, want %v", tt.typ, got, tt.proto)
			}
			if tt.proto == eventsv1.EventType_EVENT_TYPE_UNSPECIFIED {
				return
			}
			if got := progressgrpc.TypeOf(tt.proto); got != tt.typ {
				t.Fatalf("TypeOf(%v) = %q, want %q", tt.proto, got, tt.typ)
			}
		})
	}
	// Every value the proto defines is covered: a new enum value without a
	// stream spelling fails here.
	for n, name := range eventsv1.EventType_name {
		v := eventsv1.EventType(n)
		if v != eventsv1.EventType_EVENT_TYPE_UNSPECIFIED && progressgrpc.TypeOf(v) == "" {
			t.Errorf("%s has no stream type", name)
		}
	}
	if got := progressgrpc.TypeOf(eventsv1.EventType_EVENT_TYPE_UNSPECIFIED); got != "" {
		t.Errorf("TypeOf(UNSPECIFIED) = %q, want empty", got)
	}
}

func TestToProtoAndBack(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 27, 10, 11, 12, 123456789, time.UTC)
	tests := []struct {
		name string
		e    progress.Event
		want *eventsv1.MissionEvent
	}{
		{
			name: "failed step",
			e: progress.Event{
				ID: "1700000000000-3", MissionID: "m1", SagaID: "s1", Type: progress.StepFailed,
				Step: "localize_agents", Service: "localization", Attempt: 2, Progress: 0.5,
				Message: "agent 2 shares no cells", ErrorCode: "FAILED_PRECONDITION", ErrorReason: "INSUFFICIENT_OVERLAP",
				TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", Time: ts,
			},
			want: &eventsv1.MissionEvent{
				StreamId: "1700000000000-3", V: 1, MissionId: "m1", SagaId: "s1",
				Type: eventsv1.EventType_EVENT_TYPE_STEP_FAILED, Step: "localize_agents", Service: "localization",
				Attempt: 2, Progress: 0.5, Message: "agent 2 shares no cells", ErrorCode: "FAILED_PRECONDITION",
				ErrorReason: "INSUFFICIENT_OVERLAP", TraceId: "0af7651916cd43dd8448eb211c80319c",
				SpanId: "b7ad6b7169203331", Ts: timestamppb.New(ts),
			},
		},
		{
			name: "mission event without time",
			e:    progress.Event{ID: "1-0", MissionID: "m2", Type: progress.MissionStarted, Service: "orchestrator"},
			want: &eventsv1.MissionEvent{
				StreamId: "1-0", V: 1, MissionId: "m2", Type: eventsv1.EventType_EVENT_TYPE_MISSION_STARTED,
				Service: "orchestrator",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := progressgrpc.ToProto(tt.e)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("ToProto =\n%v\nwant\n%v", got, tt.want)
			}
			back := progressgrpc.FromProto(got)
			if !back.Time.Equal(tt.e.Time) {
				t.Fatalf("FromProto Time = %v, want %v", back.Time, tt.e.Time)
			}
			back.Time, tt.e.Time = time.Time{}, time.Time{}
			if back != tt.e {
				t.Fatalf("FromProto(ToProto(e)) =\n%+v\nwant\n%+v", back, tt.e)
			}
		})
	}
}
