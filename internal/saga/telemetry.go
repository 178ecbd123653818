package saga

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// metrics are the saga instruments. Names follow OTel conventions; the
// Prometheus exporter turns them into slammesh_saga_started_total and so on.
type metrics struct {
	started, completed, compensated, failed metric.Int64Counter
	inFlight                                metric.Int64UpDownCounter
	stepDuration, compDuration              metric.Float64Histogram
	// recovered, recoveryDelay, handedOff and leasesLost measure ownership:
	// sagas resumed by Recover and how long their lease had been expired
	// (the recovery bound beyond the lease TTL), sagas handed off on
	// shutdown, and runs halted because another engine took their saga.
	recovered, handedOff, leasesLost metric.Int64Counter
	recoveryDelay                    metric.Float64Histogram
	// defAttr labels every measurement with the definition name.
	defAttr metric.MeasurementOption
}

// durationBuckets suit step calls: from a millisecond (a local no-op step) to
// the default attempt timeout.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newMetrics(m metric.Meter, definition string) (*metrics, error) {
	var errs [11]error
	out := &metrics{defAttr: metric.WithAttributes(attribute.String("saga.definition", definition))}
	out.started, errs[0] = m.Int64Counter("slammesh.saga.started",
		metric.WithDescription("Sagas created by Start."), metric.WithUnit("{saga}"))
	out.completed, errs[1] = m.Int64Counter("slammesh.saga.completed",
		metric.WithDescription("Sagas that completed every step."), metric.WithUnit("{saga}"))
	out.compensated, errs[2] = m.Int64Counter("slammesh.saga.compensated",
		metric.WithDescription("Sagas that were compensated (failed step, cancellation or teardown)."), metric.WithUnit("{saga}"))
	out.failed, errs[3] = m.Int64Counter("slammesh.saga.failed",
		metric.WithDescription("Sagas whose compensation could not be completed: operator action needed."), metric.WithUnit("{saga}"))
	out.inFlight, errs[4] = m.Int64UpDownCounter("slammesh.saga.in_flight",
		metric.WithDescription("Sagas being driven by this process."), metric.WithUnit("{saga}"))
	out.stepDuration, errs[5] = m.Float64Histogram("slammesh.saga.step.duration",
		metric.WithDescription("Duration of one attempt of a step's action."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	out.compDuration, errs[6] = m.Float64Histogram("slammesh.saga.compensation.duration",
		metric.WithDescription("Duration of one attempt of a step's compensation."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	out.recovered, errs[7] = m.Int64Counter("slammesh.saga.recovered",
		metric.WithDescription("Sagas whose lease expired (or was handed off) resumed by this process."), metric.WithUnit("{saga}"))
	out.recoveryDelay, errs[8] = m.Float64Histogram("slammesh.saga.recovery.delay",
		metric.WithDescription("Time from the expiry of a saga's lease to its resumption by recovery."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	out.handedOff, errs[9] = m.Int64Counter("slammesh.saga.handed_off",
		metric.WithDescription("Sagas this process stopped driving on shutdown and released for recovery elsewhere."), metric.WithUnit("{saga}"))
	out.leasesLost, errs[10] = m.Int64Counter("slammesh.saga.leases_lost",
		metric.WithDescription("Runs halted because another process took their saga over after its lease expired."), metric.WithUnit("{saga}"))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("saga metrics: %w", err)
		}
	}
	// Export every counter from the start, at 0: a series that appears only
	// at its first event hides that first increase from Prometheus' rate()
	// and increase(), so an alert on FAILED missions or lost leases would
	// miss the first one.
	for _, c := range []metric.Int64Counter{out.started, out.completed, out.compensated, out.failed, out.recovered, out.handedOff, out.leasesLost} {
		c.Add(context.Background(), 0, out.defAttr)
	}
	// Likewise the gauge of sagas in flight: absent reads as no data, not
	// as none driven (found by a review, on a restarted orchestrator).
	out.inFlight.Add(context.Background(), 0, out.defAttr)
	return out, nil
}

// traceParent encodes sc as a W3C traceparent, or "" when sc is invalid (no
// tracing configured).
func traceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return c.Get("traceparent")
}

// parseTraceParent decodes a W3C traceparent into a remote span context,
// invalid when tp is empty or malformed.
func parseTraceParent(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx)
}

func traceID(sc trace.SpanContext) string {
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

func spanID(sc trace.SpanContext) string {
	if !sc.HasSpanID() {
		return ""
	}
	return sc.SpanID().String()
}
