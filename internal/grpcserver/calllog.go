package grpcserver

import (
	"context"
	"log/slog"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/telemetry"
)

// lazyCallLog runs the unary call log (go-grpc-middleware's logging
// interceptor: one "finished call" line per call) only for the calls it may
// write a line for. That interceptor builds its fields before the call, even
// when the logger then drops the line: at --log-level warn it made 7 % of
// the mesh's allocations at 32 concurrent missions (docs/performance.md).
//
// Where logger takes Info lines (the level of an OK call) every call goes
// through log. Otherwise the call runs bare; a failure whose level
// (logging.DefaultServerCodeToLevel, the interceptor's own default) logger
// takes then goes through replay — the same interceptor with the
// replayedDuration option — which replays the call's result and logs the
// line log would have, with the duration measured here. Health checks stay
// out: both hold the selector.
func lazyCallLog(logger *slog.Logger, log, replay grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if logger.Enabled(ctx, slog.LevelInfo) {
			return log(ctx, req, info, handler)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err == nil || !logger.Enabled(ctx, slog.Level(logging.DefaultServerCodeToLevel(status.Code(err)))) {
			return resp, err
		}
		ctx = context.WithValue(ctx, replayKey{}, time.Since(start))
		return replay(ctx, req, info, func(context.Context, any) (any, error) { return resp, err })
	}
}

// replayKey holds the duration of a call lazyCallLog replays.
type replayKey struct{}

// replayedDuration is the replaying call log's fields-from-context option: a
// replayed call's measured duration, which takes the place of the replay's
// own.
func replayedDuration(ctx context.Context, _ interceptors.CallMeta) logging.Fields {
	if d, ok := ctx.Value(replayKey{}).(time.Duration); ok {
		return durationField(d)
	}
	return nil
}

// callScopeUnary gives the call a telemetry call scope (Deps.CallScope).
func callScopeUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(telemetry.WithCallScope(ctx), req)
}

// callScopeStream is callScopeUnary for streams.
func callScopeStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = telemetry.WithCallScope(ss.Context())
	return handler(srv, w)
}
