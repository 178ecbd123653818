package stepserver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

// Option configures Interceptors.
type Option func(*options)

type options struct {
	firehose      *progress.Firehose
	progressDelay time.Duration
}

// WithFirehose lets a step's success events ride in its barrier commit: the
// mission stream's copies are written by the barrier's script (no round
// trip of their own), and their firehose copies are added to fh once the
// script succeeded. Without it the interceptor publishes them itself, in one
// round trip after the handler. The caller closes fh after the server
// stopped.
func WithFirehose(fh *progress.Firehose) Option {
	return func(o *options) { o.firehose = fh }
}

// WithProgressDelay sets how long a step.progress event waits for company
// (default ProgressDelay; d ≤ 0 keeps it). A test that counts a call's
// round trips sets an hour, so that a handler slowed by a loaded machine
// does not send its progress in a round trip of its own.
func WithProgressDelay(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.progressDelay = d
		}
	}
}

// sagaRequest is implemented by every step request.
type sagaRequest interface {
	GetSaga() *typesv1.SagaContext
}

// eventsInterceptor emits a step service's events for the action RPCs named
// in actions: step.started, step.progress (through the progress.Reporter it
// installs), then step.completed or step.failed. It reports exactly the
// calls progressgrpc.UnaryServerInterceptor reports (a SagaContext with a
// mission id, and a progress stream that is empty or the mission's own),
// with the same events, but in fewer round trips:
//
//   - step.started is not written before the handler, and step.progress
//     events wait up to ProgressDelay: they go out together, with the
//     call's end when it comes first, so a short step spends no round trip
//     on them;
//   - on success, when the handler committed through Commit (and fh is
//     set, and the call carries no injected fault, which may still fail it
//     after the commit), step.started and step.completed were written by
//     the barrier's script to the mission stream, and their firehose copies
//     handed to fh: nothing is left to send;
//   - otherwise what is not yet written and step.completed or step.failed
//     go out together in one pipelined round trip.
//
// Events are advisory, as in progressgrpc: a failure to publish is logged
// and dropped, and published on a context the caller's cancellation does
// not cancel. Each call's events land once on the mission stream even when
// a Redis stall makes go-redis send them again: the barrier's call token
// guards those of the commit, progress.Publisher's script the others. A
// handler that fails after its commit gets a step.failed after the
// step.completed its commit wrote.
func eventsInterceptor(pub *progress.Publisher, o options, service string, actions []string) grpc.UnaryServerInterceptor {
	isAction := make(map[string]bool, len(actions))
	for _, a := range actions {
		isAction[a] = true
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !isAction[info.FullMethod] {
			return handler(ctx, req)
		}
		r, ok := req.(sagaRequest)
		if !ok {
			return handler(ctx, req)
		}
		sc := r.GetSaga()
		if sc.GetMissionId() == "" {
			return handler(ctx, req)
		}
		if ps := sc.GetProgressStream(); ps != "" && ps != progress.MissionStream(sc.GetMissionId()) {
			return handler(ctx, req)
		}
		c := &stepCall{
			pub:      pub,
			firehose: o.firehose,
			// An injected fault may fail the call after its commit (a
			// dropped reply): its events wait for the call's end, so that
			// it reports step.failed alone, as without the fault.
			inCommit: o.firehose != nil && len(sc.GetFaults().GetFaults()) == 0,
			delay:    o.progressDelay,
			stream:   progress.MissionStream(sc.GetMissionId()),
			base: progress.Event{
				MissionID: sc.GetMissionId(),
				SagaID:    sc.GetSagaId(),
				Step:      sc.GetStep(),
				Service:   service,
				Attempt:   int(sc.GetAttempt()),
			},
		}
		c.started = c.event(ctx, c.base, progress.StepStarted)
		resp, err := handler(context.WithValue(progress.WithReporter(ctx, c), callKey{}, c), req)
		switch {
		case err != nil:
			failed := failure(c.base, err)
			if ctx.Err() != nil && failed.ErrorReason == "" && (failed.ErrorCode == code.Code_CANCELLED.String() || failed.ErrorCode == code.Code_DEADLINE_EXCEEDED.String()) {
				// A bare "context canceled" reads as the step's own failure;
				// it is the caller's leaving (found by a review: a kill -9 of
				// the orchestrator), or the attempt's deadline, which gRPC
				// delivers as a cancel.
				why := "the caller cancelled the call or went away"
				if rpcerr.DeadlinePassed(ctx) {
					why = "the attempt's deadline passed"
				}
				failed.Message = why + " before the step ended (" + failed.Message + "); the orchestrator retries the step or compensates it"
			}
			c.publish(ctx, c.event(ctx, failed, progress.StepFailed))
		case c.isCommitted():
			c.publish(ctx) // progress reported after the commit, if any
		default:
			c.publish(ctx, c.completed(ctx))
		}
		return resp, err
	}
}

type callKey struct{}

// stepCall is the events of one action call; it is the progress.Reporter
// its handler finds in its context.
type stepCall struct {
	pub      *progress.Publisher
	firehose *progress.Firehose
	// inCommit: the success events may ride in the barrier commit.
	inCommit bool
	// delay is how long a step.progress event waits for company.
	delay  time.Duration
	stream string
	// base holds the fields every event of the call shares.
	base    progress.Event
	started progress.Event

	mu sync.Mutex
	// startedOut: step.started is written (or committed with the action).
	startedOut bool
	// pending are step.progress events not written yet; flush, due
	// delay after the first of them, writes them unless the commit
	// or the call's end took them first.
	pending []progress.Event
	flush   *time.Timer
	// committed: the handler's barrier commit wrote step.completed.
	committed bool
}

// ProgressDelay is how long a step.progress event waits for company by
// default (WithProgressDelay): the events of a step that ends sooner ride
// with its end (in the barrier's script, or the interceptor's last round
// trip), and a long step's progress still reaches watchers within this
// delay.
const ProgressDelay = 20 * time.Millisecond

// event returns e with type typ, its time and the trace and span of ctx.
func (c *stepCall) event(ctx context.Context, e progress.Event, typ progress.Type) progress.Event {
	e.Type = typ
	e.Time = time.Now()
	progress.FillTrace(ctx, &e)
	return e
}

func (c *stepCall) completed(ctx context.Context) progress.Event {
	done := c.base
	done.Progress = 1
	return c.event(ctx, done, progress.StepCompleted)
}

func (c *stepCall) isCommitted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed
}

// Progress queues a step.progress event, written within c.delay (with
// step.started when it is not out yet). fraction is clamped to [0, 1] (NaN
// counts as 0), as progressgrpc does.
func (c *stepCall) Progress(ctx context.Context, fraction float64, message string) {
	e := c.base
	switch {
	case fraction > 1:
		e.Progress = 1
	case fraction >= 0:
		e.Progress = fraction
	}
	e.Message = message
	e = c.event(ctx, e, progress.StepProgress)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, e)
	if c.flush == nil {
		c.flush = time.AfterFunc(c.delay, func() { c.publish(context.WithoutCancel(ctx)) })
	}
}

// outbox returns the events not written yet, in order, followed by last
// ones: step.started unless out, the pending step.progress events, last.
// The caller holds mu, and calls sent once they are written.
func (c *stepCall) outbox(last ...progress.Event) []progress.Event {
	out := make([]progress.Event, 0, 1+len(c.pending)+len(last))
	if !c.startedOut {
		out = append(out, c.started)
	}
	out = append(out, c.pending...)
	return append(out, last...)
}

// sent records that outbox's events are written.
func (c *stepCall) sent() {
	c.startedOut, c.pending = true, nil
	if c.flush != nil {
		c.flush.Stop()
		c.flush = nil
	}
}

// publish writes the events not written yet, and last, to the mission
// stream and the firehose in one round trip; a failure is logged and
// dropped (see eventsInterceptor), as are the events.
func (c *stepCall) publish(ctx context.Context, last ...progress.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	events := c.outbox(last...)
	c.sent()
	if len(events) == 0 {
		return
	}
	if err := c.pub.PublishTo(context.WithoutCancel(ctx), c.stream, events...); err != nil {
		e := events[len(events)-1]
		c.pub.Logger().WarnContext(ctx, "progress events not published; the step's result is unaffected",
			"mission_id", e.MissionID, "saga_id", e.SagaID, "trace_id", e.TraceID, "step", e.Step,
			"attempt", e.Attempt, "event", string(e.Type), "events", len(events), "error", err)
	}
}

// Commit is barrier.Commit for a step handler: when ctx comes from the
// step interceptor with a firehose (WithFirehose), the call's success
// events — step.started unless already out, the pending step.progress, and
// step.completed — are announced in tx, so the barrier's script writes them
// to the mission stream with the commit (applied, or answered as a
// duplicate), and their firehose copies are added to the firehose once it
// succeeded; the firehose copies still waiting from earlier calls ride in
// the same pipeline as the script. One round trip for the whole step. Otherwise it is barrier.Commit, and the interceptor publishes
// the events after the handler.
//
// A commit that goes stale (barrier.ErrStale) drops the step.progress
// events not written yet: they report work whose plan nothing committed,
// which the handler redoes on what it reads next (and reports again), so
// that the step's progress does not run twice to 100 % within one call.
func Commit(ctx context.Context, b *barrier.Barrier, id barrier.ID, tx *barrier.Tx, result []byte) ([]byte, barrier.Outcome, error) {
	c, _ := ctx.Value(callKey{}).(*stepCall)
	if c == nil || !c.inCommit {
		res, outcome, err := b.Commit(ctx, id, tx, result)
		if c != nil && errors.Is(err, barrier.ErrStale) {
			c.mu.Lock()
			c.dropProgress()
			c.mu.Unlock()
		}
		return res, outcome, err
	}
	c.mu.Lock()
	defer c.mu.Unlock() // no step.progress may slip between the commit's events
	events := c.outbox(c.completed(ctx))
	entries := make([]progress.Entry, len(events)) // one encoding for both streams
	for i, e := range events {
		entries[i] = progress.Encode(e)
	}
	tx.Announce(func(p redis.Pipeliner) {
		for _, e := range entries {
			c.pub.AppendMission(p, c.stream, e)
		}
	})
	// Earlier calls' firehose copies ride in the same round trip.
	tx.Carry(c.firehose.Take)
	res, outcome, err := b.Commit(ctx, id, tx, result)
	switch {
	case err == nil:
		c.sent()
		c.committed = true
		c.firehose.Add(entries...)
	case errors.Is(err, barrier.ErrStale):
		c.dropProgress()
	}
	return res, outcome, err
}

// dropProgress forgets the step.progress events not written yet (and
// their flush); step.started stays due. The caller holds mu.
func (c *stepCall) dropProgress() {
	c.pending = nil
	if c.flush != nil {
		c.flush.Stop()
		c.flush = nil
	}
}

// failure fills e's error fields from a handler error the way the gRPC
// server turns it into the client's status, as progressgrpc does: the
// code's canonical name, the reason of the first google.rpc.ErrorInfo, and
// the status message.
func failure(e progress.Event, err error) progress.Event {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	e.ErrorCode = code.Code(st.Code()).String()
	e.Message = st.Message()
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.ErrorReason = info.GetReason()
			break
		}
	}
	return e
}
