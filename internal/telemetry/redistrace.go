package telemetry

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// RedisTracing returns a go-redis hook that records a client span for each
// command ("redis <command>") and each pipeline ("redis.pipeline <commands>",
// the distinct command names in order), as a child of the span in the
// call's context — and only there: a call made outside a sampled span (the
// firehose's group commits, lease renewals, recovery scans, janitors)
// records nothing, instead of opening a trace of its own per round trip.
//
// It replaces redisotel's tracing hook, whose cost per call was most of the
// price of tracing an orchestration-only mission: that hook formats every
// argument of every pipeline (map blobs included) to name its span, and
// walks the stack for the caller. Attributes follow the OpenTelemetry
// database conventions: db.system.name "redis", db.operation.name, and
// db.operation.batch.size for a pipeline; no statement (the arguments hold
// map cells and mission data). Errors other than redis.Nil mark the span.
func RedisTracing(tp trace.TracerProvider) redis.Hook {
	return redisTracing{tracer: tp.Tracer(instrumentationName + "/redis")}
}

type redisTracing struct{ tracer trace.Tracer }

var (
	redisSystem    = semconv.DBSystemNameRedis
	redisSpanStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// traced reports whether a call in ctx is part of a sampled trace.
func traced(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsSampled()
}

// DialHook records nothing: a dial is the pool's business, not a request's.
func (redisTracing) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook spans one command.
func (h redisTracing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmd)
		}
		name := cmd.Name()
		ctx, span := h.tracer.Start(ctx, "redis "+name, redisSpanStart...)
		span.SetAttributes(redisSystem, semconv.DBOperationName(name))
		err := next(ctx, cmd)
		end(span, err)
		return err
	}
}

// ProcessPipelineHook spans one pipeline.
func (h redisTracing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmds)
		}
		names := pipelineNames(cmds)
		ctx, span := h.tracer.Start(ctx, "redis.pipeline "+names, redisSpanStart...)
		span.SetAttributes(redisSystem, semconv.DBOperationName(names), semconv.DBOperationBatchSize(len(cmds)))
		err := next(ctx, cmds)
		end(span, err)
		return err
	}
}

// pipelineNames is the distinct command names of cmds, in order, joined by
// spaces ("evalsha xadd"); a transaction's MULTI and EXEC are kept.
func pipelineNames(cmds []redis.Cmder) string {
	var b strings.Builder
	seen := make([]string, 0, 4)
	for _, c := range cmds {
		n := c.Name()
		dup := false
		for _, s := range seen {
			if s == n {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		seen = append(seen, n)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n)
	}
	return b.String()
}

// end closes span, marked as failed by err unless err is nil or redis.Nil
// (a missing key is an answer, not a failure).
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
