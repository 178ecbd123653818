package orchestrator

import (
	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// ServiceName is the service name of the orchestrator's events and spans.
const ServiceName = "orchestrator"

// eventSink publishes the saga engine's events as progress events of the
// orchestrator: to the mission's stream in the engine's own write (see
// saga.EventSink), so that a mission's record and the events describing its
// changes commit together, and to the firehose once that write succeeded
// (saga.Committer: the firehose lives in another Redis Cluster slot).
type eventSink struct {
	pub      *progress.Publisher
	firehose *progress.Firehose
}

var (
	_ saga.EventSink = eventSink{}
	_ saga.Committer = eventSink{}
)

// Append queues e on the mission's stream. The engine already stamped the
// mission's trace and span ids and the time. A terminal event's write is the
// saga's ending write, where the store gives the stream its expiry (the
// retention of the mission's keys, or ExpireMission without one).
func (s eventSink) Append(pipe redis.Pipeliner, e saga.Event) {
	s.pub.AppendMission(pipe, progress.MissionStream(e.MissionID), progress.Encode(progressEvent(e)))
}

// ExpireMission queues the retention of an ended mission's stream.
func (s eventSink) ExpireMission(pipe redis.Pipeliner, missionID string) {
	s.pub.ExpireMission(pipe, missionID)
}

// Committed queues the firehose copies of events the store wrote.
func (s eventSink) Committed(events []saga.Event) {
	out := make([]progress.Entry, len(events))
	for i, e := range events {
		out[i] = progress.Encode(progressEvent(e))
	}
	s.firehose.Add(out...)
}

func progressEvent(e saga.Event) progress.Event {
	return progress.Event{
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
	}
}
