package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/stepserver"
	"github.com/slammesh/slammesh/services/localization"
	"github.com/slammesh/slammesh/services/mapping"
	"github.com/slammesh/slammesh/services/merge"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// runService runs one service in this process until ctx ends.
func runService(ctx context.Context, cfg serviceConfig, logw io.Writer) error {
	if err := cfg.checkExposure(); err != nil {
		return err
	}
	opts, err := newRedisConn(cfg.redisURL, cfg.redisClusterURL, cfg.sec)
	if err != nil {
		return err
	}
	warnExposure(logw, cfg)
	n, err := newNode(ctx, specFor(cfg, opts), logw)
	if errors.Is(err, errStoppedWaiting) {
		return nil // SIGTERM while Redis loaded: a clean stop
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another process, perhaps another slammesh, listens there: stop it, or give this one other addresses with --grpc-addr and --http-addr, or SLAMMESH_GRPC_ADDR and SLAMMESH_HTTP_ADDR)", err)
	}
	if err != nil {
		return err
	}
	return n.serve(ctx)
}

// stepFirehoseDelay is the group-commit window of a step service's
// firehose: longer than a mission takes at one mission at a time (a few
// milliseconds), short next to what a consumer group of the firehose
// tolerates (watchers read the mission streams, written at once).
const stepFirehoseDelay = 25 * time.Millisecond

// stepBarrier is the barrier of a step service: it refuses calls for a
// mission whose saga record is gone (expired or deleted), so that a late
// call writes no key that nothing would expire.
func stepBarrier(n *node) *barrier.Barrier {
	opts := []barrier.Option{barrier.WithOwner(saga.RecordKey)}
	if n.group != nil {
		opts = append(opts, barrier.WithGroupCommit(n.group))
	}
	return barrier.New(n.rdb, opts...)
}

// specFor says how to build the node of cfg.service.
func specFor(cfg serviceConfig, opts redisConn) nodeSpec {
	spec := nodeSpec{
		name:     cfg.service,
		grpcAddr: cfg.grpcAddr,
		httpAddr: cfg.httpAddr,
		redis:    opts,
		// Set for the embedded Redis of a dev mesh only.
		skipRedisCheck: cfg.skipRedisCheck,
		logLevel:       cfg.logLevel,
		grace:          cfg.grace,
		svc:            cfg,
	}
	// stepInterceptors publish step events (and inject faults when allowed).
	stepInterceptors := func(service string, actions, compensations []string) func(n *node) []grpc.UnaryServerInterceptor {
		return func(n *node) []grpc.UnaryServerInterceptor {
			// AppendOnly: a late call must not create a mission stream
			// that nothing would expire.
			pub := progress.NewPublisher(n.rdb, progress.Options{Logger: n.log, AppendOnly: true})
			// The firehose copies of the step events, written after the
			// barrier script that appended them to the mission stream
			// (another slot), batched; flushed when the node closes, after
			// its server stopped. A step service commits once per mission,
			// so at low load its commits are further apart than the default
			// group-commit window: the longer one lets the copies ride in
			// the next commit instead of costing a round trip of their own.
			fh := progress.NewFirehose(n.rdb, progress.FirehoseOptions{Logger: n.log, MaxDelay: stepFirehoseDelay})
			n.closers = append(n.closers, func() error { return fh.Close(context.Background()) })
			return stepserver.Interceptors(pub, service, actions, compensations, cfg.allowFaults, stepserver.WithFirehose(fh))
		}
	}
	switch cfg.service {
	case mapping.ServiceName:
		spec.interceptors = stepInterceptors(mapping.ServiceName, mapping.ActionMethods, mapping.CompensationMethods)
		spec.register = func(_ context.Context, n *node) error {
			s := mapping.NewServer(mapping.Config{CapacityCells: cfg.capacityCells, RetainedCells: cfg.retainedCells, KeepNoMaps: cfg.retainedCells == 0}, n.rdb, stepBarrier(n), n.log)
			if n.group != nil {
				s.WithGroupCommit(n.group)
			}
			if err := s.RegisterMetrics(n.tel.Meter()); err != nil {
				return err
			}
			s.Register(n.srv)
			// The janitor stops before Redis closes (closers run last in,
			// first out).
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.RunJanitor(ctx)
			}()
			n.closers = append(n.closers, func() error {
				stop()
				<-done
				return nil
			})
			return nil
		}
	case localization.ServiceName:
		spec.interceptors = stepInterceptors(localization.ServiceName, localization.ActionMethods, localization.CompensationMethods)
		spec.register = func(_ context.Context, n *node) error {
			s, err := localization.NewServer(localization.Config{Parallelism: cfg.parallelism}, n.rdb, stepBarrier(n), n.log)
			if err != nil {
				return err
			}
			s.Register(n.srv)
			return nil
		}
	case merge.ServiceName:
		spec.interceptors = stepInterceptors(merge.ServiceName, merge.ActionMethods, merge.CompensationMethods)
		spec.register = func(_ context.Context, n *node) error {
			s, err := merge.NewServer(merge.Config{}, n.rdb, stepBarrier(n), n.log)
			if err != nil {
				return err
			}
			s.Register(n.srv)
			return nil
		}
	case "orchestrator":
		spec.register = func(ctx context.Context, n *node) error { return registerOrchestrator(ctx, cfg, n) }
	}
	return spec
}

// registerOrchestrator dials the step services with the orchestrator's
// telemetry, so step calls are client spans of the mission's trace, and
// drains running sagas on shutdown before the connections close.
//
// The drain starts when ctx ends (SIGTERM), alongside the gRPC server's
// graceful stop, and both end within --grace: the missions still running
// then are handed off to the other orchestrators, whose recovery resumes
// them at its next scan.
func registerOrchestrator(ctx context.Context, cfg serviceConfig, n *node) error {
	var dialOpts []grpc.DialOption
	if n.tls != nil {
		// The orchestrator's certificate doubles as its client certificate:
		// the step services accept only clients their CA signed.
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(meshtls.ClientCredentials(n.tls)))
	}
	dial := func(target string) (*grpc.ClientConn, error) {
		c, err := grpcserver.Dial(target, n.tel, dialOpts...)
		if err == nil {
			n.closers = append(n.closers, c.Close)
		}
		return c, err
	}
	mc, err := dial(cfg.mappingAddr)
	if err != nil {
		return fmt.Errorf("mapping at %s: %w", cfg.mappingAddr, err)
	}
	lc, err := dial(cfg.localizationAddr)
	if err != nil {
		return fmt.Errorf("localization at %s: %w", cfg.localizationAddr, err)
	}
	gc, err := dial(cfg.mergeAddr)
	if err != nil {
		return fmt.Errorf("merge at %s: %w", cfg.mergeAddr, err)
	}
	if steps := cfg.ops.unretried(); len(steps) > 0 {
		n.log.Warn("the step retry budget is under twice these steps' attempt deadline: an attempt that hangs to its deadline is not retried, and its mission compensates; raise --retry-budget or lower --step-timeout",
			"retry_budget", cfg.ops.retryBudget.String(), "steps", strings.Join(steps, ", "))
	}
	s, err := orchestrator.NewServer(orchestrator.Config{
		AllowFaultInjection: cfg.allowFaults,
		LeaseTTL:            cfg.leaseTTL,
		RecoveryInterval:    cfg.recoveryInterval,
		Policy:              cfg.ops.policy(),
		MaxWatchers:         cfg.ops.maxWatchers,
		Retention:           cfg.retention,
	}, orchestrator.Deps{
		Redis:        n.rdb,
		GroupCommit:  n.group,
		StreamRedis:  streamClient(n),
		Mapping:      mappingv1.NewMappingServiceClient(mc),
		Localization: localizationv1.NewLocalizationServiceClient(lc),
		Merge:        mergev1.NewMergeServiceClient(gc),
		Logger:       n.log,
		Tracer:       n.tel.Tracer(),
		Meter:        n.tel.Meter(),
	})
	if err != nil {
		return err
	}
	orchestratorv1.RegisterOrchestratorServiceServer(n.srv, s)
	if err := mountConsole(cfg, n, mappingv1.NewMappingServiceClient(mc)); err != nil {
		return err
	}
	shutdown := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.grace)
		defer cancel()
		return s.Shutdown(ctx)
	}
	drained := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() { drained <- shutdown(context.WithoutCancel(ctx)) })
	n.drain = func(ctx context.Context) error {
		if stop() {
			// Stopping for another reason than ctx (a server failed): drain now.
			return shutdown(ctx)
		}
		return <-drained
	}
	return nil
}
