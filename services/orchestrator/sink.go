package orchestrator

import (
	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// ServiceName is the service name of the orchestrator's events and spans.
const ServiceName = "orchestrator"

// eventSink publishes the saga engine's events as progress events of the
// orchestrator, in the engine's own write (see saga.EventSink), so that a
// mission's record and the events describing its changes commit together.
type eventSink struct {
	pub *progress.Publisher
}

var _ saga.EventSink = eventSink{}

// Append queues e on the mission and global streams. The engine already
// stamped the mission's trace and span ids and the time.
func (s eventSink) Append(pipe redis.Pipeliner, e saga.Event) {
	s.pub.Append(pipe, progress.Event{
		MissionID:   e.MissionID,
		SagaID:      e.SagaID,
		Type:        progress.Type(e.Type),
		Step:        e.Step,
		Service:     ServiceName,
		Attempt:     e.Attempt,
		Progress:    e.Progress,
		Message:     e.Message,
		ErrorCode:   e.ErrorCode,
		ErrorReason: e.ErrorReason,
		TraceID:     e.TraceID,
		SpanID:      e.SpanID,
		Time:        e.Time,
	})
}

// ExpireMission queues the retention of an ended mission's stream.
func (s eventSink) ExpireMission(pipe redis.Pipeliner, missionID string) {
	s.pub.ExpireMission(pipe, missionID)
}
