//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/test/testproc"
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
	// cluster runs a 6-node Redis Cluster instead of one redis-server.
	cluster bool
}

// mesh is the processes under test and the test's own clients of them.
type mesh struct {
	cfg meshConfig
	// redis is the one redis-server, or cluster the Redis Cluster
	// (-chaos.redis=cluster); the other is nil.
	redis   *redisproc.Process
	cluster *redisproc.Cluster
	// watch follows every node of the cluster for scripts and
	// transactions that touch two slots (nil on one redis-server).
	watch *redistest.SlotWatch
	rdb   redis.UniversalClient
	// env is the children's environment beside this process's.
	env []string
	// faults is held by an orchestrator kill until its recovery and by a
	// Redis master failover until the mesh settled, so they do not overlap.
	faults sync.Mutex
	steps  []*testproc.Proc
	// replicas are the two orchestrators; replicas[victim] is the one the
	// test kills.
	replicas [2]*replica
}

// replica is one orchestrator: successive incarnations (processes) on one
// gRPC address, and the test's connection to it, which reconnects to each
// new incarnation by itself.
//
// The first incarnation listens on port 0; a restart listens on the port
// the replica had, since a restarted orchestrator comes back where its
// clients know it. Only when that port was taken in the meantime (by any
// process on the machine: an outgoing connection can get it as its local
// port, the kernel's ephemeral range being where port 0 binds too) does the
// restart move to a new port 0, and the test dial it anew: what the kills
// exercise is the takeover of sagas through Redis, which no client address
// takes part in, and a port lost to another process is the harness's bad
// luck, not a finding. The summary names such moves.
type replica struct {
	name   string
	bin    string
	logDir string
	// args are the flags of every incarnation but the listen addresses,
	// the command first; env is their environment beside the test's.
	args []string
	env  []string

	mu          sync.Mutex
	proc        *testproc.Proc
	incarnation int
	grpcAddr    string
	client      orchestratorv1.OrchestratorServiceClient
	// conns are every connection the test made to the replica, the current
	// one last; a replaced one stays open until close, since calls may be in
	// flight on it.
	conns []*grpc.ClientConn
	// owners are the saga owner names of the incarnations, learned from the
	// records of missions they created.
	owners map[int]string
	pids   map[int]int
}

// anyPort has a child listen on a port the kernel picks; the child names it
// in its "serving" log line.
const anyPort = "127.0.0.1:0"

// startMesh starts redis-server, the step services and two orchestrators,
// each with fault injection allowed and listening on port 0, and waits until
// all are healthy. On error the processes started so far are stopped.
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
	common := []string{"--allow-fault-injection", "--grace", "2s"}
	m.env = childEnv
	if cfg.cluster {
		if m.cluster, err = redisproc.StartCluster(ctx, redisDir, 3, 1); err != nil {
			return m, err
		}
		redis.SetLogger(quietRedis{})
		if m.watch, err = redistest.WatchNodes(ctx, m.cluster.Addrs()); err != nil {
			return m, err
		}
		opt, err := redis.ParseClusterURL(m.cluster.URL())
		if err != nil {
			return m, err
		}
		opt.PoolSize = 32
		m.rdb = redis.NewClusterClient(opt)
		// The binaries take a cluster from REDIS_CLUSTER_URL (SCALE.md).
		m.env = append(slices.Clone(childEnv), "REDIS_CLUSTER_URL="+m.cluster.URL())
	} else {
		if m.redis, err = redisproc.Start(redisDir); err != nil {
			return m, err
		}
		m.rdb = redis.NewClient(&redis.Options{Addr: m.redis.Addr, PoolSize: 32})
		common = append(common, "--redis-url", m.redis.URL())
	}
	for _, s := range stepServices {
		args := append([]string{s, "--grpc-addr", anyPort, "--http-addr", anyPort}, common...)
		if s == "mapping" {
			args = append(args, "--capacity-cells", strconv.FormatUint(cfg.capacityCells, 10))
		}
		p, err := testproc.Start(s, filepath.Join(cfg.logDir, s+".log"), cfg.bin, m.env, args...)
		if err != nil {
			return m, err
		}
		m.steps = append(m.steps, p)
	}
	stepAddr := make(map[string]string, len(stepServices))
	for i, s := range stepServices {
		a, err := m.steps[i].AwaitServing(ctx, healthTimeout)
		if err != nil {
			return m, err
		}
		if err := testproc.WaitHealthy(ctx, a.GRPC, m.steps[i], healthTimeout); err != nil {
			return m, err
		}
		stepAddr[s] = a.GRPC
	}
	args := append([]string{"orchestrator",
		"--mapping-addr", stepAddr["mapping"],
		"--localization-addr", stepAddr["localization"],
		"--merge-addr", stepAddr["merge"],
		// Stall faults hold an attempt to its deadline: the chaos worlds are
		// small, so the SLAM steps keep the 10 s of the other steps rather
		// than the production default for real-size data.
		"--step-timeout", "localize_agents=10s,merge_maps=10s"}, common...)
	for i, name := range []string{"orchestrator-a", "orchestrator-b"} {
		m.replicas[i] = &replica{
			name: name, bin: cfg.bin, logDir: cfg.logDir, args: args, env: m.env,
			owners: make(map[int]string), pids: make(map[int]int),
		}
		if _, err := m.replicas[i].start(ctx); err != nil {
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
		p.Stop(5 * time.Second)
	}
	if m.rdb != nil {
		m.rdb.Close()
	}
	if m.redis != nil {
		m.redis.Stop()
	}
	if m.watch != nil {
		m.watch.Stop()
	}
	if m.cluster != nil {
		m.cluster.Stop()
	}
}

// move is a restart that could not rebind the replica's port.
type move struct {
	from, to string
	// why is the failed incarnation's error.
	why error
}

// start launches the next incarnation of the replica and waits for its
// serving line: on port 0 the first time, afterwards on the replica's port,
// or, when that is taken, on port 0 again, which it returns as a move.
func (r *replica) start(ctx context.Context) (*move, error) {
	r.mu.Lock()
	first := r.proc == nil
	if !first && r.proc.Alive() {
		r.mu.Unlock()
		return nil, fmt.Errorf("%s: incarnation %d still running", r.name, r.incarnation)
	}
	prev := r.grpcAddr
	r.mu.Unlock()

	want := anyPort
	if !first {
		want = prev
	}
	addr, err := r.launch(ctx, want)
	var mv *move
	if !first && errors.Is(err, testproc.ErrAddrInUse) {
		mv = &move{from: prev, why: err}
		addr, err = r.launch(ctx, anyPort)
		mv.to = addr
	}
	if err != nil || addr == prev {
		return mv, err
	}
	// Reconnect quickly after a restart; the default back-off grows to two
	// minutes, which would keep traffic off a healthy replica.
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return mv, fmt.Errorf("dial %s: %w", r.name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grpcAddr, r.client = addr, orchestratorv1.NewOrchestratorServiceClient(conn)
	r.conns = append(r.conns, conn)
	return mv, nil
}

// launch starts the next incarnation with its gRPC listener on grpcAddr
// (HTTP always on port 0: the test does not use it) and returns the address
// it serves on.
func (r *replica) launch(ctx context.Context, grpcAddr string) (string, error) {
	r.mu.Lock()
	next := r.incarnation + 1
	if r.proc == nil {
		next = 0
	}
	args := append([]string{r.args[0], "--grpc-addr", grpcAddr, "--http-addr", anyPort}, r.args[1:]...)
	p, err := testproc.Start(r.name, filepath.Join(r.logDir, fmt.Sprintf("%s.%d.log", r.name, next)), r.bin, r.env, args...)
	if err != nil {
		r.mu.Unlock()
		return "", err
	}
	r.proc, r.incarnation = p, next
	r.pids[next] = p.PID()
	r.mu.Unlock()
	a, err := p.AwaitServing(ctx, healthTimeout)
	return a.GRPC, err
}

// current returns the running incarnation's process and number.
func (r *replica) current() (*testproc.Proc, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc, r.incarnation
}

// rpc returns the client of the replica's current address.
func (r *replica) rpc() orchestratorv1.OrchestratorServiceClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.client
}

// addr returns the replica's current gRPC address.
func (r *replica) addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grpcAddr
}

func (r *replica) waitHealthy(ctx context.Context) error {
	p, _ := r.current()
	return testproc.WaitHealthy(ctx, r.addr(), p, healthTimeout)
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
		p.Stop(5 * time.Second)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}
