package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	logw, logName, closeLog, err := devLog(cfg, stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeLog()) }()
	redisURL, redisNote, embedded, stopRedis, err := devRedis(cfg, stderr)
	if err != nil {
		return err
	}
	defer stopRedis()
	// miniredis is no real Redis: its INFO lacks what the checks read, and
	// the banner devRedis printed already says what it cannot promise.
	cfg.base.skipRedisCheck = embedded
	clusterURL := ""
	if redisNote == "REDIS_CLUSTER_URL" {
		clusterURL = redisURL
	}
	opts, err := newRedisConn(redisURL, clusterURL, cfg.base.sec)
	if err != nil {
		return err
	}

	addr := func(port int) string {
		if cfg.freePorts {
			port = 0
		}
		return net.JoinHostPort(cfg.host, strconv.Itoa(port))
	}
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
		n, err := newNode(ctx, specFor(serviceCfg(name), opts), logw)
		if err != nil {
			return devStartError(err, redisNote)
		}
		steps = append(steps, n)
	}
	orchCfg := serviceCfg("orchestrator")
	orchCfg.mappingAddr = steps[0].srv.Addr().String()
	orchCfg.localizationAddr = steps[1].srv.Addr().String()
	orchCfg.mergeAddr = steps[2].srv.Addr().String()
	orch, err := newNode(ctx, specFor(orchCfg, opts), logw)
	if err != nil {
		return devStartError(err, redisNote)
	}

	stepCtx, stopSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSteps()
	g := new(errgroup.Group)
	for _, n := range steps {
		g.Go(func() error { return n.serve(stepCtx) })
	}
	orchDone := make(chan error, 1)
	go func() { orchDone <- orch.serve(ctx) }()

	console := httpURL(orch.srv.HTTPAddr())
	fmt.Fprintf(stdout, "slammesh dev: the mesh is up\n")
	fmt.Fprintf(stdout, "  orchestrator  %-21s console %s\n", orch.srv.Addr(), console)
	for _, n := range steps {
		fmt.Fprintf(stdout, "  %-13s %-21s metrics %smetrics\n", n.name, n.srv.Addr(), httpURL(n.srv.HTTPAddr()))
	}
	fmt.Fprintf(stdout, "  redis         %s (%s)\n", opts.addr(), redisNote)
	fmt.Fprintf(stdout, "  logs          %s\n", logName)
	fmt.Fprintf(stdout, `
!!! slammesh dev is a DEMO MODE: gRPC is PLAINTEXT and takes NO TOKENS, so anyone
!!! who reaches %s can start, cancel and resume missions. Fine on one machine;
!!! never expose it. Production: docs/security.md (TLS, mTLS, tokens with roles).
`, cfg.host)
	if cfg.demo {
		if err := runDemo(ctx, orch.srv.Addr().String(), console, stdout); err != nil {
			fmt.Fprintln(stdout, "slammesh dev: demo mission:", err)
		}
	}
	fmt.Fprintf(stdout, "\nOpen the console: %s\nThen try:\n", console)
	fmt.Fprintf(stdout, "  go run ./cmd/slamctl --addr %s start --seed 7 --agents 3 --watch\n", orch.srv.Addr())
	fmt.Fprintf(stdout, "  go tool -modfile=tools/go.mod grpcurl -plaintext %s list\n", orch.srv.Addr())
	fmt.Fprintf(stdout, "  %s XRANGE slammesh:events - + COUNT 5\n", redisCLI(redisURL, clusterURL != ""))
	fmt.Fprintf(stdout, "Ctrl-C stops the mesh.\n")

	orchErr := <-orchDone
	stopSteps()
	steps = nil // served nodes close themselves
	err = errors.Join(orchErr, g.Wait())
	if err == nil {
		fmt.Fprintln(stdout, "slammesh dev: stopped")
	}
	return err
}

// redisCLI returns the redis-cli command line that reaches the Redis at
// rawURL, for the screen: the URL single-quoted (a cluster URL's "&" would
// send a pasted line to the background), and on a Cluster with -c, so that
// redis-cli follows the MOVED replies of keys on other nodes.
func redisCLI(rawURL string, cluster bool) string {
	c := ""
	if cluster {
		c = "-c "
	}
	return "redis-cli " + c + "-u '" + strings.ReplaceAll(rawURL, "'", `'\''`) + "'"
}

// devLog picks where a dev mesh logs: the JSON log lines of four services
// would drown the demo's progress, so they go to a file unless --log-file
// is "-" (stderr). It returns the writer, a name for people and a close func.
func devLog(cfg devConfig, stderr io.Writer) (io.Writer, string, func() error, error) {
	switch cfg.logFile {
	case "-":
		return stderr, "stderr (JSON)", func() error { return nil }, nil
	case "":
		f, err := os.CreateTemp("", "slammesh-dev-*.log")
		if err != nil {
			return nil, "", nil, fmt.Errorf("dev log file: %w", err)
		}
		return f, f.Name() + " (JSON; --log-file - for stderr)", f.Close, nil
	default:
		f, err := os.OpenFile(cfg.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w: --log-file: %w", errUsage, err)
		}
		return f, f.Name() + " (JSON)", f.Close, nil
	}
}

// otherRedisPort says how to give the private Redis another port, with the
// variable for make run, which passes no flags (found by a review).
const otherRedisPort = "pick another with --redis-port (make run: SLAMMESH_DEV_REDIS_PORT=6390 make run) or set REDIS_URL"

// devRedis picks the Redis of a dev mesh: REDIS_URL, else a private
// redis-server, else an embedded one. It returns the URL, a note for people
// saying which, whether it is the embedded one, and a stop func.
func devRedis(cfg devConfig, stderr io.Writer) (string, string, bool, func(), error) {
	if cfg.base.redisClusterURL != "" {
		return cfg.base.redisClusterURL, "REDIS_CLUSTER_URL", false, func() {}, nil
	}
	if cfg.redisURL != "" {
		return cfg.redisURL, "REDIS_URL", false, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "slammesh-dev-redis-")
	if err != nil {
		return "", "", false, nil, err
	}
	start := func() (*redisproc.Process, error) { return redisproc.StartOn(dir, cfg.redisPort) }
	miniPort := cfg.redisPort
	if cfg.freePorts && !cfg.redisPortGiven {
		// Every port a free one, Redis's too (found by a review: the
		// port-in-use hint's --free-ports then failed on the Redis port).
		start, miniPort = func() (*redisproc.Process, error) { return redisproc.Start(dir) }, 0
	}
	p, err := start()
	if err == nil {
		return p.URL(), "a private redis-server; its data is scratch", false, func() { p.Stop(); _ = os.RemoveAll(dir) }, nil
	}
	_ = os.RemoveAll(dir)
	var inUse *redisproc.PortInUseError
	switch {
	case errors.As(err, &inUse):
		// Another Redis there would answer us too: using it would mix our
		// scratch data into someone else's.
		return "", "", false, nil, fmt.Errorf("%w: %s", err, otherRedisPort)
	case !errors.Is(err, redisproc.ErrNotInstalled):
		return "", "", false, nil, fmt.Errorf("private redis-server on port %d: %w (%s)", cfg.redisPort, err, otherRedisPort)
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(net.JoinHostPort("127.0.0.1", strconv.Itoa(miniPort))); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return "", "", false, nil, fmt.Errorf("%w: %s", &redisproc.PortInUseError{Port: cfg.redisPort}, otherRedisPort)
		}
		return "", "", false, nil, fmt.Errorf("embedded redis on port %d: %w", cfg.redisPort, err)
	}
	fmt.Fprintf(stderr, `
!!! slammesh dev: redis-server is not installed, so Redis is EMBEDDED (miniredis)
!!! at %s: in memory only, not a real Redis, fine for a demo and nothing else.
!!! Install redis-server (apt-get install -y redis-server) or set REDIS_URL.

`, m.Addr())
	return "redis://" + m.Addr() + "/0", "EMBEDDED miniredis, in memory, demo only", true, m.Close, nil
}

// devStartError adds to a service's start error what a dev mesh's user can
// do about it: a port taken (another dev mesh, most often), or a Redis they
// named that does not answer.
func devStartError(err error, redisNote string) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w (another process, perhaps another slammesh dev, listens there: stop it, or run this one with --free-ports, or on another address with --host)", err)
	case errors.Is(err, errStoppedWaiting):
		return err
	case redisNote == "REDIS_URL" || redisNote == "REDIS_CLUSTER_URL":
		var nerr net.Error
		if errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (the Redis %s names: start it, or unset %s for a private redis-server)", err, redisNote, redisNote)
		}
	}
	return err
}

// runDemo starts one scenario mission on the orchestrator, prints its
// events until it ends, then one line of outcome and its console page.
func runDemo(ctx context.Context, target, console string, stdout io.Writer) (err error) {
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
	fmt.Fprintf(stdout, "\ndemo mission %s, trace %s:\n", m.GetMissionId(), m.GetTraceId())
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
	g := got.GetMission()
	fmt.Fprintf(stdout, "demo mission %s", missionfmt.State(g.GetState()))
	if g.GetEndedAt() != nil {
		fmt.Fprintf(stdout, " in %s", g.GetEndedAt().AsTime().Sub(g.GetCreatedAt().AsTime()).Round(time.Millisecond))
	}
	if g.GetMapId() != "" {
		fmt.Fprintf(stdout, ": map version %d, consistency %.3f", g.GetMapVersion(), g.GetConsistency())
	}
	if e := g.GetError(); e != nil {
		fmt.Fprintf(stdout, ": %s %s", e.GetCode(), e.GetReason())
	}
	fmt.Fprintf(stdout, "\n  its page: %smissions/%s\n", console, g.GetMissionId())
	return nil
}
