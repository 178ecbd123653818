package progress

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Skips counts the stream entries readers skip because they cannot decode
// them (a newer schema version, a missing required field, a bad number), and
// logs the first such entry of each stream. One bad entry must not make a
// mission's stream unreadable: a watcher gets every good event around it.
// The counter is slammesh.progress.entries.skipped (Prometheus
// slammesh_progress_entries_skipped_total), labelled reason=version or
// reason=malformed. A Skips is safe for concurrent use.
type Skips struct {
	counter metric.Int64Counter
	log     *slog.Logger

	mu sync.Mutex
	// logged holds the streams whose first skipped entry was logged; it is
	// reset when it reaches maxLoggedStreams, so it stays bounded however
	// many missions a process reads.
	logged map[string]struct{}
}

// maxLoggedStreams bounds Skips.logged.
const maxLoggedStreams = 10_000

// NewSkips returns a Skips counting on meter and logging to log; nil
// arguments use the global meter provider and slog.Default().
func NewSkips(meter metric.Meter, log *slog.Logger) *Skips {
	if meter == nil {
		meter = otel.Meter("github.com/slammesh/slammesh/internal/progress")
	}
	if log == nil {
		log = slog.Default()
	}
	// An instrument error leaves a no-op counter: counting skips must not
	// stop a reader.
	c, _ := meter.Int64Counter("slammesh.progress.entries.skipped",
		metric.WithDescription("Stream entries readers skipped because they could not decode them."),
		metric.WithUnit("{entry}"))
	return &Skips{counter: c, log: log, logged: make(map[string]struct{})}
}

// defaultSkips serves the package-level readers.
var defaultSkips = sync.OnceValue(func() *Skips { return NewSkips(nil, nil) })

// record counts entry id of stream, which failed to decode with err, and
// logs it if it is the stream's first.
func (s *Skips) record(ctx context.Context, stream, id string, err error) {
	reason := "malformed"
	if errors.Is(err, ErrUnsupportedVersion) {
		reason = "version"
	}
	if s.counter != nil {
		s.counter.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("reason", reason)))
	}
	s.mu.Lock()
	_, seen := s.logged[stream]
	if !seen {
		if len(s.logged) >= maxLoggedStreams {
			clear(s.logged)
		}
		s.logged[stream] = struct{}{}
	}
	s.mu.Unlock()
	if !seen {
		s.log.WarnContext(ctx, "progress: skipping stream entries that cannot be decoded (first one of this stream; later ones are only counted)",
			"stream", stream, "entry_id", id, "reason", reason, "error", err.Error())
	}
}

// decode parses msgs of stream, skipping (and recording in skips) those that
// do not parse. last is the id of the last entry of msgs, skipped or not, so
// a reader moves past a bad entry instead of reading it again.
func decode(ctx context.Context, skips *Skips, stream string, msgs []redis.XMessage) (events []Event, last string) {
	if len(msgs) == 0 {
		return nil, ""
	}
	events = make([]Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := Parse(m)
		if err != nil {
			skips.record(ctx, stream, m.ID, err)
			continue
		}
		events = append(events, e)
	}
	return events, msgs[len(msgs)-1].ID
}
