package progressgrpc

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
)

// sagaRequest is implemented by every step request: its SagaContext names the
// mission, saga, step and attempt, and the stream to report to.
type sagaRequest interface {
	GetSaga() *typesv1.SagaContext
}

// UnaryServerInterceptor emits a step service's events for the action RPCs
// named in actions (full method names, e.g.
// mappingv1.MappingService_AllocateMap_FullMethodName): step.started before
// the handler, step.completed or step.failed after it, and, through the
// progress.Reporter it installs in the handler's context, step.progress.
// service is the service name the events carry ("mapping").
//
// A call is reported only when its request carries a SagaContext with a
// mission_id and a progress_stream that is empty or the mission's own
// (progress.MissionStream(mission_id), what the orchestrator sets); events go
// to that stream and to the global stream, with the trace and span of the
// call. Any other progress_stream is not written to, since it would let a
// caller append to an arbitrary key: the handler rejects such a request
// (rpcerr.CheckSaga, INVALID_ARGUMENT on saga.progress_stream).
// Compensations and reads are not actions and emit nothing here.
//
// Events are advisory: the saga's outcome is the RPC's result, which the
// orchestrator records. So a failure to publish an event is logged to the
// publisher's logger and dropped, and the handler's response and error are
// returned unchanged; a Redis hiccup must not fail (and so retry or
// compensate) a step that did its work. Events are published on a context
// that the caller's cancellation does not cancel, so that a step cut short
// by its deadline still gets its step.failed event.
func UnaryServerInterceptor(pub *progress.Publisher, service string, actions ...string) grpc.UnaryServerInterceptor {
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
			// Nothing to attribute events to; the handler's own validation
			// rejects the request if a SagaContext is required.
			return handler(ctx, req)
		}
		if ps := sc.GetProgressStream(); ps != "" && ps != progress.MissionStream(sc.GetMissionId()) {
			return handler(ctx, req)
		}
		s := newStepReporter(pub, service, sc)
		s.publish(ctx, s.base, progress.StepStarted)
		resp, err := handler(progress.WithReporter(ctx, s), req)
		if err != nil {
			s.publish(ctx, failure(s.base, err), progress.StepFailed)
		} else {
			done := s.base
			done.Progress = 1
			s.publish(ctx, done, progress.StepCompleted)
		}
		return resp, err
	}
}

// stepReporter publishes the events of one step attempt; it is the
// progress.Reporter a handler finds in its context.
type stepReporter struct {
	pub    *progress.Publisher
	stream string
	// base holds the fields every event of the attempt shares.
	base progress.Event
}

func newStepReporter(pub *progress.Publisher, service string, sc *typesv1.SagaContext) *stepReporter {
	return &stepReporter{
		pub:    pub,
		stream: progress.MissionStream(sc.GetMissionId()),
		base: progress.Event{
			MissionID: sc.GetMissionId(),
			SagaID:    sc.GetSagaId(),
			Step:      sc.GetStep(),
			Service:   service,
			Attempt:   int(sc.GetAttempt()),
		},
	}
}

// Progress publishes a step.progress event. fraction is clamped to [0, 1]
// (NaN counts as 0) so readers can trust the range. A publishing failure is
// logged and dropped: progress is advisory, and the handler has no better
// use for the error than to ignore it.
func (s *stepReporter) Progress(ctx context.Context, fraction float64, message string) {
	e := s.base
	switch {
	case fraction > 1:
		e.Progress = 1
	case fraction >= 0:
		e.Progress = fraction
	}
	e.Message = message
	s.publish(ctx, e, progress.StepProgress)
}

// publish writes e with type typ, taking the trace and span of ctx, and logs
// (and drops) a failure; see UnaryServerInterceptor for why.
func (s *stepReporter) publish(ctx context.Context, e progress.Event, typ progress.Type) {
	e.Type = typ
	progress.FillTrace(ctx, &e)
	if err := s.pub.PublishTo(context.WithoutCancel(ctx), s.stream, e); err != nil {
		s.pub.Logger().WarnContext(ctx, "progress event not published; the step's result is unaffected",
			"mission_id", e.MissionID, "saga_id", e.SagaID, "trace_id", e.TraceID, "step", e.Step,
			"attempt", e.Attempt, "event", string(e.Type), "error", err)
	}
}

// failure fills e's error fields from a handler error the way the gRPC
// server turns it into the client's status (a wrapped status is seen through;
// a bare context error becomes CANCELED or DEADLINE_EXCEEDED; anything else
// UNKNOWN): the code's canonical name ("FAILED_PRECONDITION", as in
// google.rpc.Code), the reason of the first google.rpc.ErrorInfo in the
// details, and the status message.
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
