// Package progress is slammesh's progress event schema and its Redis Streams
// transport: the publisher the orchestrator and the step services write with,
// the readers WatchMission and `slamctl watch` follow a mission with, and the
// consumer-group reader other services build on. Dashboards depend on the
// layout below, so it is API.
//
// # Streams
//
// Every event is appended to two streams: by a Publisher in one pipelined
// round trip, each mission stream's batch in one Lua script that appends it
// once even when go-redis sends the pipeline again after a Redis stall (see
// ResendWindow); by the saga store and a step's barrier commit in their own
// script, the firehose copy following once it succeeded (see Firehose):
//
//   - slammesh:{<mission_id>}:events — the mission's own stream. The hash tag
//     keeps it in the Redis Cluster slot of the mission's other keys. Trimmed
//     with XADD MAXLEN ~ (default 10000); it expires (default 24h) once a
//     terminal event (mission.completed, mission.compensated, mission.failed)
//     has been written, so finished missions do not accumulate.
//   - slammesh:events — the global firehose of every mission, trimmed with
//     XADD MAXLEN ~ (default 100000) and by age (TrimGlobal, which every
//     orchestrator's janitor runs with the missions' retention); never
//     expired as a whole.
//
// # Entries
//
// An entry is flat string fields, readable with `redis-cli XRANGE`, always
// written in this order and always all of them (empty when not applicable),
// because Redis stores entries whose field names match the stream's first
// entry without repeating the names:
//
//	v             schema version, "1"
//	mission_id    the mission
//	saga_id       the saga driving the mission
//	type          mission.started, step.started, step.progress, step.completed,
//	              step.failed, step.retrying, compensation.started,
//	              compensation.completed, compensation.failed,
//	              mission.completed, mission.compensated, mission.failed
//	step          allocate_map, localize_agents, merge_maps; empty for mission events
//	service       orchestrator, mapping, localization, merge
//	attempt       1-based attempt of the step or compensation; 0 for mission events
//	progress      fraction done, 0..1
//	message       human-readable detail
//	error_code    gRPC code name of a failure ("FAILED_PRECONDITION")
//	error_reason  google.rpc.ErrorInfo reason of a failure ("INSUFFICIENT_OVERLAP")
//	trace_id      W3C trace id of the mission's trace (32 hex digits)
//	span_id       the span that wrote the event (16 hex digits)
//	ts            RFC 3339 time with nanoseconds, UTC
//
// A reader must reject an entry whose v it does not know ([Parse] does) and
// must tolerate a missing optional field (only v, mission_id and type are
// required).
//
// # Reading
//
// Two ways, both standard Redis:
//
//   - Plain XREAD (see [Read] and [Follow]): a watcher of one mission reads
//     slammesh:{<id>}:events from "0" (or from the last entry id it saw, to
//     resume) until the mission's end: a terminal event with no new chapter
//     after it (a teardown or a resume; see [Ended]). Nothing is stored
//     on the server about the reader, so any number of dashboards can watch.
//   - A consumer group (see [Consumer]): services that must process every
//     event once across replicas read slammesh:events with XREADGROUP, ack
//     after handling, and reclaim entries a crashed replica left pending with
//     XAUTOCLAIM. Delivery is at least once; handlers must be idempotent.
//
// Readers skip entries they cannot decode (a newer schema version, a missing
// required field) instead of failing: one bad entry must not make a
// mission's stream unreadable. Each skip is counted (Skips: the metric
// slammesh.progress.entries.skipped) and the first of each stream logged.
// A consumer group moves an entry it has handed out MaxDeliveries times, or
// one that cannot parse, to the dead-letter stream <stream>:dlq (for a
// mission stream slammesh:{<id>}:events:dlq, in the mission's slot),
// trimmed and expiring; and it creates its group again when Redis lost it
// (NOGROUP after a restart on an empty data set).
//
// Blocking reads always use a finite BLOCK, because go-redis does not
// interrupt a blocked command when its context is cancelled: a finite block is
// how a reader notices shutdown.
package progress
