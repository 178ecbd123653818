package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/redischeck"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// node is one running service: its own telemetry (so Jaeger shows it as its
// own service even when four share a process), logger, Redis client and
// gRPC server. Its parts are released in reverse order of creation.
type node struct {
	name string
	tel  *telemetry.Telemetry
	log  *slog.Logger
	rdb  redis.UniversalClient
	// group batches the saga writes, barrier commits and capacity
	// reservations of concurrent missions on rdb (nil on a Redis Cluster,
	// see groupCommit).
	group *groupcommit.Group
	// redis is how rdb reaches Redis, for the node's other clients.
	redis redisConn
	srv   *grpcserver.Server
	// tls is the service's TLS material (nil: plaintext); the orchestrator
	// dials the step services with it.
	tls *meshtls.Source
	// drain runs after the gRPC server stopped accepting calls and before
	// Redis closes: the orchestrator finishes or hands off running sagas.
	drain   func(ctx context.Context) error
	closers []func() error
}

// groupCommit returns the group commit of the node's saga writes, barrier
// commits and capacity reservations on rdb, whose round trips hooks span per
// caller — on one Redis only. On a Cluster, a batch splits into one pipeline per master and
// returns when the slowest answers, so one slow or failing-over master
// would hold up the writes of every saga, on every master, behind it.
func groupCommit(rdb redis.UniversalClient, hooks []redis.Hook) *groupcommit.Group {
	if _, single := rdb.(*redis.Client); !single {
		return nil
	}
	return groupcommit.New(rdb, groupcommit.Options{Hooks: hooks})
}

// nodeSpec says how to build one node.
type nodeSpec struct {
	name     string
	grpcAddr string
	httpAddr string
	redis    redisConn
	// skipRedisCheck skips redischeck.Check: only for the embedded Redis of
	// `slammesh dev`, which is no real Redis.
	skipRedisCheck bool
	logLevel       slog.Level
	grace          time.Duration
	telOpts        telemetry.Options
	// svc carries the security settings (TLS, tokens, pprof).
	svc serviceConfig
	// interceptors are built once telemetry and Redis exist (the step services
	// publish progress through Redis).
	interceptors func(n *node) []grpc.UnaryServerInterceptor
	// register adds the service to the gRPC server.
	register func(ctx context.Context, n *node) error
}

func newNode(ctx context.Context, spec nodeSpec, logw io.Writer) (n *node, err error) {
	n = &node{name: spec.name}
	defer func() {
		if err != nil {
			if n.srv != nil {
				err = errors.Join(err, n.srv.Close())
			}
			err = errors.Join(err, n.close(context.WithoutCancel(ctx)))
		}
	}()
	n.tel, err = telemetry.Setup(ctx, spec.name, spec.telOpts)
	if err != nil {
		return n, fmt.Errorf("%s telemetry: %w", spec.name, err)
	}
	n.log = telemetry.NewLogger(logw, spec.name, spec.logLevel)
	for _, w := range loosePermissions(spec.svc.sec) {
		n.log.Warn(w)
	}

	n.redis = spec.redis
	n.rdb = spec.redis.client(0)
	n.closers = append(n.closers, n.rdb.Close)
	// Hooks run on every command: only those whose output goes somewhere.
	var traceHooks []redis.Hook
	if n.tel.TracesExported() {
		h := telemetry.RedisTracing(n.tel.TracerProvider())
		n.rdb.AddHook(h)
		traceHooks = append(traceHooks, h)
	}
	n.group = groupCommit(n.rdb, traceHooks)
	// Per-command metrics only when asked for: the hook runs on every
	// command and pipeline, a large share of an orchestration-only
	// mission's CPU.
	if spec.svc.redisCommandMetrics && n.tel.CommandMetrics() {
		if err := redisotel.InstrumentMetrics(n.rdb, redisotel.WithMeterProvider(n.tel.MeterProvider())); err != nil {
			return n, fmt.Errorf("%s redis metrics: %w", spec.name, err)
		}
	}
	if err := awaitRedis(ctx, n.rdb, spec.redis.single.TLSConfig != nil, n.log, spec.svc.redisWait); errors.Is(err, errStoppedWaiting) {
		return n, err
	} else if err != nil {
		return n, fmt.Errorf("%s: %w", spec.name, redisStartError(spec.redis.single, spec.redis.addr(), spec.svc.sec, err))
	}
	// awaitRedis's last PING answered: Redis is up.
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := checkRedisACL(pingCtx, n.rdb, spec.name+"-"+rand.Text()); err != nil {
		return n, fmt.Errorf("%s: %w", spec.name, err)
	}
	if !spec.skipRedisCheck {
		res, err := redischeck.Check(pingCtx, n.rdb)
		if err != nil {
			return n, fmt.Errorf("%s: redis at %s refused: %w", spec.name, spec.redis.addr(), err)
		}
		if !res.AOF {
			n.log.WarnContext(ctx, "redis runs without AOF (appendonly no): a Redis restart loses the writes since its last snapshot, running missions included; set appendonly yes",
				"redis_version", res.Version.String())
		}
		if res.NOPERM > 0 && res.AOF {
			n.log.WarnContext(ctx, fmt.Sprintf("redis has refused %d commands for want of ACL permission (NOPERM) since it started: %s", res.NOPERM, redischeck.AOFACLAdvice))
		}
		if spec.redis.cluster == nil {
			n.watchRedisRestarts(ctx)
		}
	}

	creds, src, err := serverCreds(spec.svc, n.log)
	if err != nil {
		return n, fmt.Errorf("%s TLS: %w", spec.name, err)
	}
	n.tls = src
	var interceptors []grpc.UnaryServerInterceptor
	var streamInterceptors []grpc.StreamServerInterceptor
	// Authentication first: nothing of a refused call runs.
	unaryAuth, streamAuth, err := authInterceptors(ctx, spec.svc, n.log)
	if err != nil {
		return n, fmt.Errorf("%s: %w", spec.name, err)
	}
	if unaryAuth != nil {
		interceptors = append(interceptors, unaryAuth)
		streamInterceptors = append(streamInterceptors, streamAuth)
	}
	if spec.interceptors != nil {
		interceptors = append(interceptors, spec.interceptors(n)...)
	}
	n.srv, err = grpcserver.New(grpcserver.Config{
		Service:         spec.name,
		GRPCAddr:        spec.grpcAddr,
		HTTPAddr:        spec.httpAddr,
		GracePeriod:     spec.grace,
		Creds:           creds,
		EnablePprof:     spec.svc.sec.enablePprof,
		MaxMessageBytes: slamproto.MaxRequestBytes,
		// Readiness (not liveness) needs Redis, and a TLS certificate
		// still valid (found by a review: one expired in place while the
		// service reported ready); the orchestrator's Kubernetes probe
		// asks for it (deploy/kubernetes/README.md says why the step
		// services' does not).
		Ready: func(ctx context.Context) error {
			if n.tls != nil {
				if err := n.tls.Valid(); err != nil {
					return err
				}
			}
			return n.rdb.Ping(ctx).Err()
		},
	}, grpcserver.Deps{
		Telemetry: n.tel, Logger: n.log, UnaryInterceptors: interceptors, StreamInterceptors: streamInterceptors,
		CallScope: unaryAuth != nil, // the access line names the caller too
	})
	if err != nil {
		return n, err
	}
	if err := spec.register(ctx, n); err != nil {
		return n, fmt.Errorf("%s: %w", spec.name, err)
	}
	return n, nil
}

// watchRedisRestarts logs each restart of the node's Redis until the node
// closes, with what the setting it ran with kept: the startup warning about
// AOF is read once, and a Redis that ran without it may roll back to its
// last snapshot, which no key shows afterwards (found by a review:
// cancelled missions ran again).
func (n *node) watchRedisRestarts(ctx context.Context) {
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		redischeck.WatchRestarts(ctx, n.rdb, redischeck.RestartPoll, func(r redischeck.Restart) {
			level, msg := restartMessage(r)
			n.log.Log(ctx, level, msg)
			if !r.AOFNow {
				n.log.WarnContext(ctx, "redis runs without AOF (appendonly no): a Redis restart loses the writes since its last snapshot, running missions included; set appendonly yes")
			}
		})
	}()
	n.closers = append(n.closers, func() error { stop(); <-done; return nil })
}

// restartMessage says what a Redis restart kept, and how loud (an error
// when the restarted server refused commands for want of permission, as
// when it dropped writes of its AOF at load): Redis loads
// what its new setting says, the AOF when it now runs with AOF, else its RDB
// save, so a setting changed across the restart loads a file the old
// instance did not keep up (found by a review: a SHUTDOWN with AOF turned
// off came back empty, told as reloaded). An unchanged no-AOF restart is a
// warning: a SHUTDOWN that saved keeps everything, and is the commonest
// planned restart.
func restartMessage(r redischeck.Restart) (slog.Level, string) {
	level, msg := restartKept(r)
	if r.NOPERM > 0 && r.AOFNow {
		level = slog.LevelError
		msg += fmt.Sprintf("; but it has refused %d commands for want of ACL permission (NOPERM) since: %s", r.NOPERM, redischeck.AOFACLAdvice)
	}
	return level, msg
}

// restartKept says what a Redis restart kept, by its AOF settings.
func restartKept(r redischeck.Restart) (slog.Level, string) {
	yesNo := map[bool]string{false: "no", true: "yes"}
	switch {
	case r.AOFBefore != r.AOFNow:
		from := "its RDB save, or nothing"
		if r.AOFNow {
			from = "its AOF, or nothing"
		}
		return slog.LevelError, fmt.Sprintf("redis restarted with appendonly changed (%s before, %s now): it loaded %s, which the old instance did not keep up; "+
			"writes since may be lost and older data back (a mission cancelled or deleted since may run again): check its missions", yesNo[r.AOFBefore], yesNo[r.AOFNow], from)
	case r.AOFNow:
		return slog.LevelWarn, "redis restarted (its run_id changed); it runs with AOF, as before, so it reloaded its writes from it, all but the last second's at appendfsync everysec"
	}
	return slog.LevelWarn, "redis restarted (its run_id changed) and runs without AOF, as before (appendonly no): it came back from its last RDB save, or empty; " +
		"after a crash or a kill the writes since that save are lost, and what they undid may be undone too (a mission cancelled or deleted since may run again)"
}

// serve runs the node until ctx ends, then drains and releases it in the
// order STYLE.md gives: health NOT_SERVING and GracefulStop (in Serve), the
// saga drain, Redis, and last the telemetry flush on a fresh context.
func (n *node) serve(ctx context.Context) (err error) {
	err = n.srv.Serve(ctx)
	return errors.Join(err, n.close(context.WithoutCancel(ctx)))
}

func (n *node) close(ctx context.Context) error {
	var errs []error
	if n.drain != nil {
		errs = append(errs, n.drain(ctx))
		n.drain = nil
	}
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	if n.tel != nil {
		flushCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		// A collector that is gone should not turn a clean stop into a
		// failure: the spans are lost either way, so say so and go on.
		if err := n.tel.Shutdown(flushCtx); err != nil {
			n.log.WarnContext(ctx, "flushing telemetry failed; spans may be lost", "error", err.Error())
		}
		n.tel = nil
	}
	return errors.Join(errs...)
}
