package telemetry

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// WithCallScope returns a copy of ctx holding an empty call scope: a place
// for attributes learnt inside a call (its authenticated caller) that the
// lines logged around the call must carry too. The gRPC access line is
// written by an interceptor outside authentication, with the context the
// call began with, so the caller found later reaches that line only through
// a scope installed before both (grpcserver.Deps.CallScope). The scope costs
// one allocation.
func WithCallScope(ctx context.Context) context.Context {
	return &scopeCtx{Context: ctx}
}

// WithCallAttrs attaches attrs to every line logged with ctx or a context
// derived from it, as WithLogAttrs does, and, when ctx holds a call scope,
// to every line logged with any context of that scope: the access line
// written around the call among them. An attribute replaces an earlier one
// with the same key. Safe for concurrent use; set before the handler runs,
// the attributes are on every line the call logs.
func WithCallAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	s, ok := ctx.Value(callScopeKey{}).(*scopeCtx)
	if !ok {
		return WithLogAttrs(ctx, attrs...)
	}
	for {
		old := s.attrs.Load()
		var prev []slog.Attr
		if old != nil {
			prev = *old
		}
		merged := mergeAttrs(prev, attrs)
		if s.attrs.CompareAndSwap(old, &merged) {
			return ctx
		}
	}
}

// scopeCtx is a context carrying a call scope. It is its own value, so the
// scope costs one allocation rather than context.WithValue's two.
type scopeCtx struct {
	context.Context
	attrs atomic.Pointer[[]slog.Attr]
}

type callScopeKey struct{}

// Value returns the scope for callScopeKey and defers to the parent for
// every other key.
func (c *scopeCtx) Value(key any) any {
	if key == (callScopeKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// scopeAttrs returns the attributes set in ctx's call scope; the slice is
// shared, callers must not modify it.
func scopeAttrs(ctx context.Context) []slog.Attr {
	s, ok := ctx.Value(callScopeKey{}).(*scopeCtx)
	if !ok {
		return nil
	}
	if a := s.attrs.Load(); a != nil {
		return *a
	}
	return nil
}
