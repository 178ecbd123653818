package saga

import (
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// EventType names a saga-level progress event. The values are the `type`
// strings of the progress stream schema, so an adapter to the progress
// publisher copies them unchanged.
type EventType string

// The events the engine emits. Step services emit step.started, step.progress,
// step.completed and step.failed themselves.
const (
	EventMissionStarted        EventType = "mission.started"
	EventStepRetrying          EventType = "step.retrying"
	EventCompensationStarted   EventType = "compensation.started"
	EventCompensationCompleted EventType = "compensation.completed"
	EventCompensationFailed    EventType = "compensation.failed"
	EventMissionCompleted      EventType = "mission.completed"
	EventMissionCompensated    EventType = "mission.compensated"
	EventMissionFailed         EventType = "mission.failed"
)

// Messages of EventMissionStarted: how the engine came to drive the saga.
// They are API: the chaos tests and operators tell a resumption from a start
// by them (docs/architecture.md, "Event flow").
const (
	// messageStarted: the first run after Start, on the engine that started it.
	messageStarted = "started"
	// messageTeardown: a completed saga torn down by Cancel.
	messageTeardown = "teardown"
	// MessageResumedPrefix starts the message of a run that took a saga over
	// from another owner: "resumed by <owner>, epoch <N>", followed, when
	// Recover claimed it, by ", lease of <previous owner> expired <duration>
	// ago".
	MessageResumedPrefix = "resumed by "
	// MessageCompensationResumedPrefix starts the message of the run that
	// continues a Failed saga's compensation after Resume:
	// "compensation resumed by <owner>, epoch <N>".
	MessageCompensationResumedPrefix = "compensation resumed by "
)

// resumedBy is the message of a run by owner that took a saga over at epoch.
func resumedBy(owner string, epoch int64) string {
	return MessageResumedPrefix + owner + ", epoch " + strconv.FormatInt(epoch, 10)
}

// Event describes one saga transition for the progress streams. It carries
// exactly what the engine knows; the sink adds the service name and schema
// version.
type Event struct {
	Type      EventType
	MissionID string
	SagaID    string
	Step      string // empty for mission-level events
	Attempt   int    // the attempt the event is about; 0 for mission-level events
	// Progress is the fraction of steps that have succeeded (and not been
	// compensated) when the event is written.
	Progress    float64
	Message     string
	ErrorCode   string
	ErrorReason string
	TraceID     string
	SpanID      string
	Time        time.Time
}

// EventSink turns events into Redis commands on the mission's own keys (one
// Redis Cluster slot: its stream, never a global key). The Store hands it a pipeline
// that is never executed as such: the Store takes the queued commands and runs
// them inside the Lua script that checks the fencing epoch and writes the
// record, so events and record change commit together, and a fenced-out owner
// writes neither. Implementations must therefore only queue plain write
// commands (XADD, EXPIRE, …) and never call Exec.
type EventSink interface {
	// Append queues the commands that publish e.
	Append(pipe redis.Pipeliner, e Event)
	// ExpireMission queues the commands that give the mission's events their
	// retention once the saga reached a terminal state, when the store's
	// Retention leaves expiries alone (no TTL); otherwise the retention
	// governs every key of the mission, so its Keys must name the events'
	// stream.
	ExpireMission(pipe redis.Pipeliner, missionID string)
}

// Committer is an EventSink that also copies events where no per-mission
// script may write them — the firehose, in another Redis Cluster slot than
// every mission. The store calls Committed once the script that appended
// events to the mission's stream succeeded, never for a fenced or failed
// write; it must not block (queue the copy, e.g. progress.Firehose.Add).
type Committer interface {
	Committed(events []Event)
}
