//go:build scale

package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/test/testproc"
)

// stepServices are started before the orchestrators, which dial them.
var stepServices = []string{"mapping", "localization", "merge"}

// healthTimeout bounds a child's start, generous for a loaded machine.
const healthTimeout = 60 * time.Second

// anyPort has a child listen on a port the kernel picks; it names the port
// in its "serving" log line.
const anyPort = "127.0.0.1:0"

// mesh is the Redis and the step services the phases share.
type mesh struct {
	bin, logDir string
	cluster     *redisproc.Cluster
	single      *redisproc.Process
	rdb         redis.UniversalClient
	// env reaches the Redis: REDIS_CLUSTER_URL or REDIS_URL.
	env []string
	// steps holds the replicas of each step service, addrs their gRPC
	// addresses.
	steps map[string][]*testproc.Proc
	addrs map[string][]string
}

// startMesh starts the Redis (a 6-node cluster unless single) and
// replicas processes of each step service, and waits until all are healthy.
func startMesh(ctx context.Context, bin, logDir string, single bool, replicas int) (m *mesh, err error) {
	m = &mesh{bin: bin, logDir: logDir, steps: map[string][]*testproc.Proc{}, addrs: map[string][]string{}}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	redisDir := filepath.Join(logDir, "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		return m, err
	}
	if single {
		if m.single, err = redisproc.Start(redisDir); err != nil {
			return m, err
		}
		m.rdb = redis.NewClient(&redis.Options{Addr: m.single.Addr, PoolSize: 32})
		m.env = []string{"REDIS_URL=" + m.single.URL()}
	} else {
		if m.cluster, err = redisproc.StartCluster(ctx, redisDir, 3, 1); err != nil {
			return m, err
		}
		opt, err := redis.ParseClusterURL(m.cluster.URL())
		if err != nil {
			return m, err
		}
		opt.PoolSize = 32
		m.rdb = redis.NewClusterClient(opt)
		m.env = []string{"REDIS_CLUSTER_URL=" + m.cluster.URL()}
	}
	m.env = append(m.env, "OTEL_TRACES_EXPORTER=none")
	for _, s := range stepServices {
		for i := range replicas {
			args := []string{s, "--grpc-addr", anyPort, "--http-addr", anyPort, "--grace", "2s"}
			if s == "mapping" {
				args = append(args, "--capacity-cells", "100000000")
			}
			name := s + "-" + strconv.Itoa(i)
			p, err := testproc.Start(name, filepath.Join(logDir, name+".log"), bin, m.env, args...)
			if err != nil {
				return m, err
			}
			m.steps[s] = append(m.steps[s], p)
		}
	}
	for _, s := range stepServices {
		for _, p := range m.steps[s] {
			a, err := p.AwaitServing(ctx, healthTimeout)
			if err != nil {
				return m, err
			}
			if err := testproc.WaitHealthy(ctx, a.GRPC, p, healthTimeout); err != nil {
				return m, err
			}
			m.addrs[s] = append(m.addrs[s], a.GRPC)
		}
	}
	return m, nil
}

// orchestrators are the orchestrator processes of one phase and the test's
// connections to them.
type orchestrators struct {
	procs   []*testproc.Proc
	conns   []*grpc.ClientConn
	clients []orchestratorv1.OrchestratorServiceClient
}

// startOrchestrators starts n orchestrators named after phase, each dialling
// every replica of each step service (a comma-separated list), and waits
// until they are healthy.
func (m *mesh) startOrchestrators(ctx context.Context, phase string, n int) (o *orchestrators, err error) {
	o = &orchestrators{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	for i := range n {
		name := fmt.Sprintf("orchestrator-%s-%d", phase, i)
		p, err := testproc.Start(name, filepath.Join(m.logDir, name+".log"), m.bin, m.env, "orchestrator",
			"--grpc-addr", anyPort, "--http-addr", anyPort, "--grace", "2s",
			"--mapping-addr", strings.Join(m.addrs["mapping"], ","),
			"--localization-addr", strings.Join(m.addrs["localization"], ","),
			"--merge-addr", strings.Join(m.addrs["merge"], ","))
		if err != nil {
			return o, err
		}
		o.procs = append(o.procs, p)
	}
	for _, p := range o.procs {
		a, err := p.AwaitServing(ctx, healthTimeout)
		if err != nil {
			return o, err
		}
		if err := testproc.WaitHealthy(ctx, a.GRPC, p, healthTimeout); err != nil {
			return o, err
		}
		conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return o, err
		}
		o.conns = append(o.conns, conn)
		o.clients = append(o.clients, orchestratorv1.NewOrchestratorServiceClient(conn))
	}
	return o, nil
}

func (o *orchestrators) close() {
	for _, c := range o.conns {
		c.Close()
	}
	for _, p := range o.procs {
		p.Stop(10 * time.Second)
	}
}

// close stops the step services, then the Redis.
func (m *mesh) close() {
	for _, ps := range m.steps {
		for _, p := range ps {
			p.Stop(10 * time.Second)
		}
	}
	if m.rdb != nil {
		m.rdb.Close()
	}
	if m.single != nil {
		m.single.Stop()
	}
	if m.cluster != nil {
		m.cluster.Stop()
	}
}
