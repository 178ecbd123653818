package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/alicebob/miniredis/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
	"github.com/slammesh/slammesh/internal/redisproc"
)

// runDev runs the four services in one process, each on its production ports
// with its own tracer provider, so a mission still shows four services in
// Jaeger. The step services outlive the orchestrator so that sagas it drains
// on shutdown can still reach them.
func runDev(ctx context.Context, cfg devConfig, stdout, stderr io.Writer) (err error) {
	redisURL, stopRedis, err := devRedis(cfg, stderr)
	if err != nil {
		return err
	}
	defer stopRedis()
	opts, err := redisOptions(redisURL, cfg.base.sec)
	if err != nil {
		return err
	}

	addr := func(port int) string { return net.JoinHostPort(cfg.host, strconv.Itoa(port)) }
	serviceCfg := func(name string) serviceConfig {
		c := cfg.base
		c.service = name
		c.grpcAddr, c.httpAddr = addr(defaultPorts[name][0]), addr(defaultPorts[name][1])
		return c
	}

	var steps []*node
	defer func() {
		for _, n := range steps {
			err = errors.Join(err, n.close(context.WithoutCancel(ctx)))
		}
	}()
	for _, name := range []string{"mapping", "localization", "merge"} {
		n, err := newNode(ctx, specFor(serviceCfg(name), opts), stderr)
		if err != nil {
			return err
		}
		steps = append(steps, n)
	}
	orchCfg := serviceCfg("orchestrator")
	orchCfg.mappingAddr = steps[0].srv.Addr().String()
	orchCfg.localizationAddr = steps[1].srv.Addr().String()
	orchCfg.mergeAddr = steps[2].srv.Addr().String()
	orch, err := newNode(ctx, specFor(orchCfg, opts), stderr)
	if err != nil {
		return err
	}

	stepCtx, stopSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSteps()
	g := new(errgroup.Group)
	for _, n := range steps {
		g.Go(func() error { return n.serve(stepCtx) })
	}
	orchDone := make(chan error, 1)
	go func() { orchDone <- orch.serve(ctx) }()

	fmt.Fprintf(stdout, "slammesh dev: orchestrator %s, mapping %s, localization %s, merge %s, redis %s\n",
		orch.srv.Addr(), steps[0].srv.Addr(), steps[1].srv.Addr(), steps[2].srv.Addr(), opts.Addr)
	fmt.Fprintf(stdout, `
!!! slammesh dev is a DEMO MODE: gRPC is PLAINTEXT and takes NO TOKENS, so anyone
!!! who reaches %s can start, cancel and resume missions. Fine on one machine;
!!! never expose it. Production: docs/security.md (TLS, mTLS, tokens with roles).
`, cfg.host)
	if cfg.demo {
		if err := runDemo(ctx, orch.srv.Addr().String(), stdout); err != nil {
			fmt.Fprintln(stderr, "slammesh dev: demo mission:", err)
		}
	}
	fmt.Fprintf(stdout, "\nTry:\n  go tool -modfile=tools/go.mod grpcurl -plaintext -d '{\"scenario\":{\"seed\":7,\"agents\":3},\"wait\":true}' %s slammesh.orchestrator.v1.OrchestratorService/StartMission\n  redis-cli -u %s XRANGE slammesh:events - + COUNT 5\nCtrl-C stops the mesh.\n",
		orch.srv.Addr(), redisURL)

	orchErr := <-orchDone
	stopSteps()
	steps = nil // served nodes close themselves
	return errors.Join(orchErr, g.Wait())
}

// devRedis picks the Redis of a dev mesh: REDIS_URL, else a private
// redis-server, else an embedded one. It returns the URL and a stop func.
func devRedis(cfg devConfig, stderr io.Writer) (string, func(), error) {
	if cfg.redisURL != "" {
		return cfg.redisURL, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "slammesh-dev-redis-")
	if err != nil {
		return "", nil, err
	}
	p, err := redisproc.StartOn(dir, cfg.redisPort)
	if err == nil {
		fmt.Fprintf(stderr, "slammesh dev: started a private redis-server at %s (data is scratch)\n", p.Addr)
		return p.URL(), func() { p.Stop(); _ = os.RemoveAll(dir) }, nil
	}
	_ = os.RemoveAll(dir)
	var inUse *redisproc.PortInUseError
	switch {
	case errors.As(err, &inUse):
		// Another Redis there would answer us too: using it would mix our
		// scratch data into someone else's.
		return "", nil, fmt.Errorf("%w: pick another with --redis-port or set REDIS_URL", err)
	case !errors.Is(err, redisproc.ErrNotInstalled):
		return "", nil, fmt.Errorf("private redis-server on port %d: %w (pick another with --redis-port, or set REDIS_URL)", cfg.redisPort, err)
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.redisPort))); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return "", nil, fmt.Errorf("%w: pick another with --redis-port or set REDIS_URL", &redisproc.PortInUseError{Port: cfg.redisPort})
		}
		return "", nil, fmt.Errorf("embedded redis on port %d: %w", cfg.redisPort, err)
	}
	fmt.Fprintf(stderr, `
!!! slammesh dev: redis-server is not installed, so Redis is EMBEDDED (miniredis)
!!! at %s: in memory only, not a real Redis, fine for a demo and nothing else.
!!! Install redis-server (apt-get install -y redis-server) or set REDIS_URL.

`, m.Addr())
	return "redis://" + m.Addr() + "/0", m.Close, nil
}

// runDemo starts one scenario mission on the orchestrator and prints its
// events until it ends.
func runDemo(ctx context.Context, target string, stdout io.Writer) (err error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	client := orchestratorv1.NewOrchestratorServiceClient(conn)
	resp, err := client.StartMission(ctx, &orchestratorv1.StartMissionRequest{
		Scenario: &typesv1.Scenario{Seed: 7, Agents: 3},
	})
	if err != nil {
		return err
	}
	m := resp.GetMission()
	fmt.Fprintf(stdout, "\ndemo mission %s (trace %s), events from %s:\n", m.GetMissionId(), m.GetTraceId(), m.GetProgressStream())
	stream, err := client.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: m.GetMissionId()})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		missionfmt.Event(stdout, ev.GetEvent())
	}
	got, err := client.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: m.GetMissionId()})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	missionfmt.Mission(stdout, got.GetMission())
	return nil
}
