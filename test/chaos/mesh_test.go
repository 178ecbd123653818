//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/grpcserver/healthcheck"
	"github.com/slammesh/slammesh/internal/redisproc"
)

// stepServices are started before the orchestrators, which dial them.
var stepServices = []string{"mapping", "localization", "merge"}

// healthTimeout bounds how long a process may take to report SERVING.
const healthTimeout = 30 * time.Second

// meshConfig is what differs between runs of the mesh.
type meshConfig struct {
	bin    string
	logDir string
	// capacityCells is the mapping budget: large enough for every mission
	// of the run at once, so RESOURCE_EXHAUSTED is never an outcome.
	capacityCells uint64
}

// mesh is the processes under test and the test's own clients of them.
type mesh struct {
	cfg   meshConfig
	redis *redisproc.Process
	rdb   *redis.Client
	steps []*proc
	// replicas are the two orchestrators; replicas[victim] is the one the
	// test kills.
	replicas [2]*replica
}

// replica is one orchestrator: a fixed pair of ports served by successive
// incarnations (processes), and the test's connection to it, which
// reconnects to each new incarnation by itself.
type replica struct {
	name     string
	grpcAddr string
	bin      string
	logDir   string
	args     []string
	conn     *grpc.ClientConn
	client   orchestratorv1.OrchestratorServiceClient

	mu          sync.Mutex
	proc        *proc
	incarnation int
	// owners are the saga owner names of the incarnations, learned from the
	// records of missions they created.
	owners map[int]string
	pids   map[int]int
}

// startMesh starts redis-server, the step services and two orchestrators,
// each with fault injection allowed, and waits until all are healthy. On
// error the processes started so far are stopped.
func startMesh(ctx context.Context, cfg meshConfig) (m *mesh, err error) {
	m = &mesh{cfg: cfg}
	defer func() {
		if err != nil {
			m.close()
			m = nil
		}
	}()
	redisDir := filepath.Join(cfg.logDir, "redis")
	if err := os.Mkdir(redisDir, 0o755); err != nil {
		return m, fmt.Errorf("redis dir: %w", err)
	}
	if m.redis, err = redisproc.Start(redisDir); err != nil {
		return m, err
	}
	m.rdb = redis.NewClient(&redis.Options{Addr: m.redis.Addr, PoolSize: 32})

	ports, err := freePorts(2*len(stepServices) + 4)
	if err != nil {
		return m, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	common := func(service string, grpcAddr, httpAddr string) []string {
		return []string{service, "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
			"--redis-url", m.redis.URL(), "--allow-fault-injection", "--grace", "2s"}
	}
	stepAddr := make(map[string]string, len(stepServices))
	for i, s := range stepServices {
		args := common(s, addr(2*i), addr(2*i+1))
		if s == "mapping" {
			args = append(args, "--capacity-cells", strconv.FormatUint(cfg.capacityCells, 10))
		}
		p, err := startProc(s, filepath.Join(cfg.logDir, s+".log"), cfg.bin, childEnv, args...)
		if err != nil {
			return m, err
		}
		m.steps = append(m.steps, p)
		stepAddr[s] = addr(2 * i)
	}
	for i, s := range stepServices {
		if err := waitHealthy(ctx, stepAddr[s], m.steps[i]); err != nil {
			return m, err
		}
	}
	for i, name := range []string{"orchestrator-a", "orchestrator-b"} {
		g, h := addr(2*len(stepServices)+2*i), addr(2*len(stepServices)+2*i+1)
		args := append(common("orchestrator", g, h),
			"--mapping-addr", stepAddr["mapping"],
			"--localization-addr", stepAddr["localization"],
			"--merge-addr", stepAddr["merge"])
		r, err := newReplica(name, g, cfg.bin, cfg.logDir, args)
		if err != nil {
			return m, err
		}
		m.replicas[i] = r
		if err := r.start(); err != nil {
			return m, err
		}
	}
	for _, r := range m.replicas {
		if err := r.waitHealthy(ctx); err != nil {
			return m, err
		}
	}
	return m, nil
}

// childEnv keeps the children from trying to export traces.
var childEnv = []string{"OTEL_TRACES_EXPORTER=none"}

// close stops every process (orchestrators first, so that nothing calls a
// stopped step service on purpose) and closes the test's clients.
func (m *mesh) close() {
	for _, r := range m.replicas {
		if r != nil {
			r.close()
		}
	}
	for _, p := range m.steps {
		p.stop(5 * time.Second)
	}
	if m.rdb != nil {
		m.rdb.Close()
	}
	if m.redis != nil {
		m.redis.Stop()
	}
}

func newReplica(name, grpcAddr, bin, logDir string, args []string) (*replica, error) {
	// Reconnect quickly after a restart; the default back-off grows to two
	// minutes, which would keep traffic off a healthy replica.
	conn, err := grpc.NewClient(grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", name, err)
	}
	return &replica{
		name: name, grpcAddr: grpcAddr, bin: bin, logDir: logDir, args: args,
		conn: conn, client: orchestratorv1.NewOrchestratorServiceClient(conn),
		owners: make(map[int]string), pids: make(map[int]int),
	}, nil
}

// start launches the next incarnation of the replica on its fixed ports.
func (r *replica) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && r.proc.alive() {
		return fmt.Errorf("%s: incarnation %d still running", r.name, r.incarnation)
	}
	next := r.incarnation + 1
	if r.proc == nil {
		next = 0
	}
	p, err := startProc(r.name, filepath.Join(r.logDir, fmt.Sprintf("%s.%d.log", r.name, next)), r.bin, childEnv, r.args...)
	if err != nil {
		return err
	}
	r.proc, r.incarnation = p, next
	r.pids[next] = p.pid()
	return nil
}

// current returns the running incarnation's process and number.
func (r *replica) current() (*proc, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc, r.incarnation
}

func (r *replica) waitHealthy(ctx context.Context) error {
	p, _ := r.current()
	return waitHealthy(ctx, r.grpcAddr, p)
}

// learnOwner records the saga owner name of incarnation inc, as read from
// the record of a mission it created, the first time one is known.
func (r *replica) learnOwner(inc int, owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.owners[inc]; !ok && owner != "" {
		r.owners[inc] = owner
	}
}

// owner returns the saga owner name of incarnation inc: the learned one, or
// the engine's default (hostname:pid) when it created no mission yet.
func (r *replica) owner(inc int) (name string, learned bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.owners[inc]; ok {
		return o, true
	}
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(r.pids[inc]), false
}

func (r *replica) close() {
	if p, _ := r.current(); p != nil {
		p.stop(5 * time.Second)
	}
	r.conn.Close()
}

// waitHealthy polls grpc.health.v1 at addr until it reports SERVING, p
// exits, or healthTimeout passes.
func waitHealthy(ctx context.Context, addr string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := healthcheck.Check(cctx, addr, "")
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s (pid %d) exited before it was healthy: %v", p.name, p.pid(), p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) at %s not healthy: %w", p.name, p.pid(), addr, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}
