package telemetry

import (
	"context"
	"io"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the context handler.
const (
	LogKeyService = "service"
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// NewLogger returns a JSON logger for service writing to w at level and
// above. Every line carries `service`; every line logged with a context
// (the *Context methods, e.g. InfoContext) also carries the `trace_id` and
// `span_id` of the span in that context and the attributes attached to it
// with WithLogAttrs.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(NewContextHandler(h)).With(slog.String(LogKeyService, service))
}

// WithLogAttrs returns a copy of ctx carrying attrs, which the context handler
// adds to every record logged with the returned context (or one derived from
// it). An attribute replaces an earlier one with the same key, so setting
// `mission_id` twice does not log it twice.
func WithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	return context.WithValue(ctx, logAttrsKey{}, mergeAttrs(logAttrsFrom(ctx), attrs))
}

// mergeAttrs returns prev without the keys attrs sets, then attrs, in a new
// slice.
func mergeAttrs(prev, attrs []slog.Attr) []slog.Attr {
	merged := make([]slog.Attr, 0, len(prev)+len(attrs))
	for _, a := range prev {
		if !slices.ContainsFunc(attrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			merged = append(merged, a)
		}
	}
	return append(merged, attrs...)
}

type logAttrsKey struct{}

// logAttrsFrom returns the attributes attached to ctx by WithLogAttrs. The
// slice is shared: callers must not modify it.
func logAttrsFrom(ctx context.Context) []slog.Attr {
	attrs, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	return attrs
}

// NewContextHandler wraps inner so that every record handled with a context
// gets, at the top level of the record, the `trace_id` and `span_id` of the
// span in the context and the attributes attached with WithLogAttrs. Use it
// to get the same behaviour with a handler other than NewLogger's.
func NewContextHandler(inner slog.Handler) slog.Handler {
	return &contextHandler{base: inner, inner: inner}
}

// contextHandler implements NewContextHandler.
//
// Attributes added to a record land inside the groups opened with WithGroup,
// but trace ids must stay top-level for log/trace correlation to work. So the
// handler keeps the handler as it was before the first group (base) plus the
// WithGroup/WithAttrs calls made since (ops): without groups, context
// attributes go straight onto the record (the common, cheap path); with
// groups, they are added to base and the ops replayed.
type contextHandler struct {
	base  slog.Handler
	inner slog.Handler
	ops   []func(slog.Handler) slog.Handler
}

// Enabled reports whether the wrapped handler handles records at level.
func (h *contextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the context's trace ids and log attributes to r and passes it on.
func (h *contextHandler) Handle(ctx context.Context, r slog.Record) error {
	extra := withoutRecordKeys(contextAttrs(ctx), r)
	if len(extra) == 0 {
		return h.inner.Handle(ctx, r)
	}
	if len(h.ops) == 0 {
		r.AddAttrs(extra...)
		return h.inner.Handle(ctx, r)
	}
	inner := h.base.WithAttrs(extra)
	for _, op := range h.ops {
		inner = op(inner)
	}
	return inner.Handle(ctx, r)
}

// withoutRecordKeys drops from extra the keys the record sets itself: a
// line that names its mission_id, in a context that names it too, names it
// once (found by a review: "saga compensated" had it twice). extra is not
// modified.
func withoutRecordKeys(extra []slog.Attr, r slog.Record) []slog.Attr {
	if len(extra) == 0 || r.NumAttrs() == 0 {
		return extra
	}
	var out []slog.Attr
	for i, a := range extra {
		dup := false
		r.Attrs(func(b slog.Attr) bool {
			dup = b.Key == a.Key
			return !dup
		})
		switch {
		case dup && out == nil:
			out = append(make([]slog.Attr, 0, len(extra)), extra[:i]...)
		case !dup && out != nil:
			out = append(out, a)
		}
	}
	if out == nil {
		return extra
	}
	return out
}

// WithAttrs returns a handler whose records carry attrs.
func (h *contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.ops) == 0 {
		base := h.base.WithAttrs(attrs)
		return &contextHandler{base: base, inner: base}
	}
	return &contextHandler{
		base:  h.base,
		inner: h.inner.WithAttrs(attrs),
		ops:   append(slices.Clip(h.ops), func(in slog.Handler) slog.Handler { return in.WithAttrs(attrs) }),
	}
}

// WithGroup returns a handler that nests the record's attributes in group name.
func (h *contextHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &contextHandler{
		base:  h.base,
		inner: h.inner.WithGroup(name),
		ops:   append(slices.Clip(h.ops), func(in slog.Handler) slog.Handler { return in.WithGroup(name) }),
	}
}

// contextAttrs returns the attributes ctx contributes to a record: trace and
// span ids when ctx holds a valid span context, then the call scope's
// attributes (WithCallAttrs), then WithLogAttrs attributes.
func contextAttrs(ctx context.Context) []slog.Attr {
	if ctx == nil { // slog.Handler callers may pass nil; Logger never does.
		return nil
	}
	attrs := logAttrsFrom(ctx)
	if scoped := scopeAttrs(ctx); len(scoped) > 0 {
		attrs = mergeAttrs(scoped, attrs)
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return attrs
	}
	out := make([]slog.Attr, 0, 2+len(attrs))
	out = append(out, slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
	return append(out, attrs...)
}
