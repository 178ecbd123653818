package progress

import "context"

// Reporter lets a step handler report how far it got without knowing where
// progress goes: the step services' interceptor (progressgrpc) installs one
// that publishes step.progress events of the current step.
//
// Progress is advisory. It returns nothing because a step must never fail for
// want of a progress event: step.completed, and the saga record, are what
// count.
type Reporter interface {
	// Progress reports that fraction (0..1) of the step is done, with a short
	// human-readable message.
	Progress(ctx context.Context, fraction float64, message string)
}

type reporterKey struct{}

// WithReporter returns a context carrying r, for ReporterFrom.
func WithReporter(ctx context.Context, r Reporter) context.Context {
	return context.WithValue(ctx, reporterKey{}, r)
}

// ReporterFrom returns the Reporter in ctx, or one that discards reports, so
// handlers (and their tests) call it unconditionally. It never returns nil.
func ReporterFrom(ctx context.Context) Reporter {
	if r, ok := ctx.Value(reporterKey{}).(Reporter); ok && r != nil {
		return r
	}
	return discard{}
}

// discard is the Reporter of a context without one.
type discard struct{}

func (discard) Progress(context.Context, float64, string) {}
