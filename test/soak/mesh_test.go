//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/test/testproc"
)

// healthTimeout bounds a child's start, generous for a loaded machine.
const healthTimeout = 60 * time.Second

// stepServices are the step services, in the order they are restarted.
var stepServices = []string{"localization", "mapping", "merge"}

// Ports the test picks itself lie below the kernel's ephemeral range
// (32768+ on Linux), so that while a service is down for a restart no
// outgoing connection can be handed its port; the HTTP side ports, which
// nothing restarts onto, are port 0.
const (
	portLow  = 20000
	portHigh = 32000
)

// pickPort returns a loopback port in [portLow, portHigh) that could be
// bound a moment ago; the caller retries with another when a process takes
// it in between.
func pickPort(r *rand.Rand) (int, error) {
	for range 200 {
		port := portLow + r.IntN(portHigh-portLow)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port below the ephemeral range")
}

// mesh is the processes of one soak run and the test's clients of them.
type mesh struct {
	logDir string
	redis  *redisServer
	// rdb is the test's own Redis client: sampling, effects, SCAN.
	rdb      *redis.Client
	steps    map[string]*service
	replicas [2]*service
}

// childEnv is every child's environment on top of the test's: no trace
// export, and the short retention of finished missions (issue 7: `--retention`
// / SLAMMESH_RETENTION; the variable rather than the flag, since a binary
// without the setting ignores an unknown variable but refuses an unknown
// flag, and the soak must say what fails rather than not start).
func childEnv(retention time.Duration) []string {
	return []string{"OTEL_TRACES_EXPORTER=none", "SLAMMESH_RETENTION=" + retention.String()}
}

// meshConfig says how to start the mesh.
type meshConfig struct {
	bin, logDir string
	retention   time.Duration
	ports       *rand.Rand
}

// startMesh starts redis-server with AOF, the three step services and two
// orchestrators, and waits until all are healthy. On error the processes
// started so far are stopped.
func startMesh(ctx context.Context, cfg meshConfig) (m *mesh, err error) {
	m = &mesh{logDir: cfg.logDir, steps: make(map[string]*service)}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	m.redis, err = startRedis(ctx, filepath.Join(cfg.logDir, "redis"), cfg.ports)
	if err != nil {
		return m, err
	}
	m.rdb = redis.NewClient(&redis.Options{
		Addr: m.redis.addr, PoolSize: 8,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxRetries: -1,
	})
	env := childEnv(cfg.retention)
	common := []string{"--redis-url", "redis://" + m.redis.addr + "/0", "--grace", "2s"}
	for _, name := range stepServices {
		s := &service{name: name, bin: cfg.bin, logDir: cfg.logDir, env: env, args: append([]string{name}, common...)}
		m.steps[name] = s
		if err := s.startFirst(ctx, cfg.ports); err != nil {
			return m, err
		}
	}
	args := append([]string{"orchestrator",
		"--mapping-addr", m.steps["mapping"].grpcAddr(),
		"--localization-addr", m.steps["localization"].grpcAddr(),
		"--merge-addr", m.steps["merge"].grpcAddr()}, common...)
	for i, name := range []string{"orchestrator-a", "orchestrator-b"} {
		s := &service{name: name, bin: cfg.bin, logDir: cfg.logDir, env: env, args: args}
		m.replicas[i] = s
		if err := s.startFirst(ctx, cfg.ports); err != nil {
			return m, err
		}
		if err := s.dial(); err != nil {
			return m, err
		}
	}
	return m, nil
}

// close stops every process (orchestrators first, so that nothing calls a
// stopped step service on purpose) and closes the test's clients.
func (m *mesh) close() {
	for _, r := range m.replicas {
		if r != nil {
			r.close()
		}
	}
	for _, s := range m.steps {
		s.close()
	}
	if m.rdb != nil {
		m.rdb.Close()
	}
	if m.redis != nil {
		m.redis.close()
	}
}

// rpc returns replica i's client.
func (m *mesh) rpc(i int) orchestratorv1.OrchestratorServiceClient {
	return m.replicas[i%len(m.replicas)].rpc()
}

// service is one slammesh service process and its later incarnations,
// always on the same gRPC port.
type service struct {
	name, bin, logDir string
	env               []string
	// args are the subcommand and its flags, without the listen addresses.
	args []string

	mu          sync.Mutex
	proc        *testproc.Proc
	incarnation int
	addrs       testproc.Addrs
	conn        *grpc.ClientConn
	client      orchestratorv1.OrchestratorServiceClient
}

// startFirst starts the first incarnation on a port picked below the
// ephemeral range, trying other ports while the one picked turns out taken.
func (s *service) startFirst(ctx context.Context, ports *rand.Rand) error {
	var err error
	for range 5 {
		var port int
		if port, err = pickPort(ports); err != nil {
			return err
		}
		if err = s.start(ctx, "127.0.0.1:"+strconv.Itoa(port)); !errors.Is(err, testproc.ErrAddrInUse) {
			return err
		}
	}
	return err
}

// start launches the next incarnation with its gRPC listener on grpcAddr
// and its HTTP listener on port 0, and waits until it is healthy.
func (s *service) start(ctx context.Context, grpcAddr string) error {
	s.mu.Lock()
	if s.proc != nil && s.proc.Alive() {
		s.mu.Unlock()
		return fmt.Errorf("%s: incarnation %d still running", s.name, s.incarnation)
	}
	next := 0
	if s.proc != nil {
		next = s.incarnation + 1
	}
	args := append([]string{s.args[0], "--grpc-addr", grpcAddr, "--http-addr", "127.0.0.1:0"}, s.args[1:]...)
	p, err := testproc.Start(s.name, filepath.Join(s.logDir, fmt.Sprintf("%s.%d.log", s.name, next)), s.bin, s.env, args...)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.proc, s.incarnation = p, next
	s.mu.Unlock()
	a, err := p.AwaitServing(ctx, healthTimeout)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.addrs = a
	s.mu.Unlock()
	return testproc.WaitHealthy(ctx, a.GRPC, p, healthTimeout)
}

// dial opens the test's client of an orchestrator. It reconnects quickly
// after a restart: gRPC's default back-off grows to two minutes, which
// would keep the test's own traffic off a healthy replica.
func (s *service) dial() error {
	conn, err := grpc.NewClient(s.grpcAddr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn, s.client = conn, orchestratorv1.NewOrchestratorServiceClient(conn)
	return nil
}

func (s *service) rpc() orchestratorv1.OrchestratorServiceClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

func (s *service) grpcAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs.GRPC
}

// current returns the running incarnation's process, its number and its
// addresses.
func (s *service) current() (*testproc.Proc, int, testproc.Addrs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc, s.incarnation, s.addrs
}

// restart stops the service with SIGTERM (SIGKILL after 15 s), leaves it
// down for down, and starts it again on the same gRPC port. It reports
// whether the stop was clean.
func (s *service) restart(ctx context.Context, down time.Duration) (clean bool, err error) {
	p, _, a := s.current()
	clean = p.Stop(15 * time.Second)
	if err := sleep(ctx, down); err != nil {
		return clean, err
	}
	return clean, s.start(ctx, a.GRPC)
}

// crash SIGKILLs the service, leaves it down for down, and starts it again
// on the same gRPC port.
func (s *service) crash(ctx context.Context, down time.Duration) error {
	p, _, a := s.current()
	if err := p.Kill(); err != nil {
		return err
	}
	if err := sleep(ctx, down); err != nil {
		return err
	}
	return s.start(ctx, a.GRPC)
}

func (s *service) close() {
	if p, _, _ := s.current(); p != nil {
		p.Stop(5 * time.Second)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// redisServer is a redis-server child with AOF on, in its own directory on
// a fixed port, so that a restart finds its data and its clients find it.
// internal/redisproc runs scratch servers without persistence, so the soak
// launches its own.
type redisServer struct {
	dir, addr string
	port      int
	mu        sync.Mutex
	proc      *testproc.Proc
	starts    int
}

// startRedis starts redis-server with AOF in dir (created) on a port picked
// below the ephemeral range.
func startRedis(ctx context.Context, dir string, ports *rand.Rand) (*redisServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := pickPort(ports)
		if err != nil {
			return nil, err
		}
		r := &redisServer{dir: dir, port: port, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if lastErr = r.launch(ctx); lastErr == nil || !errors.Is(lastErr, testproc.ErrAddrInUse) {
			return r, lastErr
		}
	}
	return nil, lastErr
}

// launch starts redis-server on r's port and directory and waits until our
// process answers, its AOF loaded.
func (r *redisServer) launch(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not on PATH (make deps installs it): %w", err)
	}
	r.mu.Lock()
	n := r.starts
	r.starts++
	r.mu.Unlock()
	// appendfsync everysec is the AOF setting the README recommends; RDB
	// snapshots are off so that the restart proves the AOF alone.
	p, err := testproc.Start("redis", filepath.Join(filepath.Dir(r.dir), fmt.Sprintf("redis.%d.log", n)), bin, nil,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice")
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	return r.awaitReady(ctx, p)
}

// awaitReady polls the server until it answers with our process's pid (not
// another server that took the port) and has loaded its AOF.
func (r *redisServer) awaitReady(ctx context.Context, p *testproc.Proc) error {
	c := redis.NewClient(&redis.Options{Addr: r.addr, DialTimeout: 200 * time.Millisecond, PoolSize: 1, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	for {
		info, err := c.Info(ctx, "server", "persistence").Result()
		if err == nil {
			pid, loading := infoField(info, "process_id"), infoField(info, "loading")
			if pid != strconv.Itoa(p.PID()) {
				p.Kill()
				return fmt.Errorf("%w: port %d answered by redis-server pid %s", testproc.ErrAddrInUse, r.port, pid)
			}
			if loading == "0" {
				return nil
			}
		}
		select {
		case <-p.Exited():
			out, _ := p.Output()
			err := fmt.Errorf("redis-server on port %d exited: %v; log: %s", r.port, p.Err(), strings.TrimSpace(string(out)))
			if strings.Contains(string(out), "Address already in use") {
				err = fmt.Errorf("%w: %w", testproc.ErrAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("redis-server on port %d not ready: %w", r.port, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restart stops redis-server with SIGTERM, which makes it fsync the AOF and
// exit (as SHUTDOWN does), and starts it again on the same port and
// directory. down is how long it stays away.
func (r *redisServer) restart(ctx context.Context, down time.Duration) (clean bool, err error) {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	clean = p.Stop(30 * time.Second)
	if err := sleep(ctx, down); err != nil {
		return clean, err
	}
	return clean, r.launch(ctx)
}

func (r *redisServer) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc.PID()
}

func (r *redisServer) close() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		p.Stop(10 * time.Second)
	}
}

// infoField returns field's value in an INFO reply, or "".
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
