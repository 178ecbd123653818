package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrCLINotInstalled is returned when redis-cli, which joins the nodes of a
// cluster, is not on PATH.
var ErrCLINotInstalled = errors.New("redis-cli not found on PATH (install it with: apt-get install -y redis-tools)")

// nodeTimeout is the cluster-node-timeout of the nodes StartCluster runs: a
// master that does not answer for this long is failed over. Short so that a
// test's SIGKILLed master is replaced in seconds (Redis adds about a second
// of election delay); long enough that a busy 2-core machine does not fail
// over a healthy master.
const nodeTimeout = 3 * time.Second

// Cluster is a running Redis Cluster (redis.io/docs/management/scaling) of
// redis-server child processes on loopback ports, with persistence off:
// masters hold the 16384 hash slots between them, each with its replicas.
// Nodes are known by their address, which does not change when a node is
// failed over or restarted; only the roles move.
type Cluster struct {
	bin string
	mu  sync.Mutex
	// nodes are in start order; a killed node stays, with a stopped proc.
	nodes []*clusterNode
}

type clusterNode struct {
	port, busPort int
	dir           string
	proc          *Process
	alive         bool
}

func (n *clusterNode) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// StartCluster starts masters×(1+replicas) redis-server processes with
// cluster-enabled yes on free loopback ports (client and bus port each
// picked free), each with its data in a subdirectory of dir (which must
// exist), joins them with `redis-cli --cluster create … --cluster-replicas
// replicas --cluster-yes`, and returns once every node reports
// cluster_state:ok with all 16384 slots served and every replica's link to
// its master up. It needs redis-server and redis-cli 7.0 or later
// (cluster-port). On failure every process it started is stopped.
func StartCluster(ctx context.Context, dir string, masters, replicas int) (_ *Cluster, err error) {
	if masters < 3 {
		// redis-cli --cluster create refuses fewer than 3 masters.
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, ErrCLINotInstalled
	}
	c := &Cluster{bin: bin}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for i := range masters * (1 + replicas) {
		n := &clusterNode{dir: filepath.Join(dir, "node"+strconv.Itoa(i))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		if err := c.startNode(n, true); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.WaitOK(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// startNode starts n's redis-server; fresh picks its two ports first (a
// restart keeps them, as nodes.conf and the other nodes know them).
func (c *Cluster) startNode(n *clusterNode, fresh bool) error {
	var lastErr error
	for range 5 {
		if fresh {
			var err error
			if n.port, err = freePort(); err != nil {
				return fmt.Errorf("free port: %w", err)
			}
			if n.busPort, err = freePort(); err != nil {
				return fmt.Errorf("free port: %w", err)
			}
			if n.busPort == n.port {
				continue
			}
		}
		if err := probe(n.busPort); err != nil {
			lastErr = err
		} else if err := probe(n.port); err != nil {
			lastErr = err
		} else {
			p, err := spawn(c.bin, n.dir, n.port,
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(n.busPort),
				"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout/time.Millisecond)))
			if err == nil {
				n.proc, n.alive = p, true
				return nil
			}
			lastErr = err
		}
		var inUse *PortInUseError
		if !fresh || !errors.As(lastErr, &inUse) {
			return lastErr
		}
	}
	return lastErr
}

// Addrs returns the address (127.0.0.1:port) of every node, alive or not,
// in start order.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr()
	}
	return out
}

// URL is the cluster in the form go-redis ParseClusterURL reads, naming
// every node: redis://127.0.0.1:p0?addr=127.0.0.1:p1&addr=… .
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	var b strings.Builder
	b.WriteString("redis://" + addrs[0])
	for i, a := range addrs[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=" + a)
	}
	return b.String()
}

// PID returns the process id of the node at addr, or 0 when it is not
// running (or not ours).
func (c *Cluster) PID(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr() == addr && n.alive {
			return n.proc.cmd.Process.Pid
		}
	}
	return 0
}

// Stop kills every node (by its PID) and waits for it to exit.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.alive {
			n.proc.Stop()
			n.alive = false
		}
	}
}

// alive returns the running nodes.
func (c *Cluster) alive() []*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*clusterNode
	for _, n := range c.nodes {
		if n.alive {
			out = append(out, n)
		}
	}
	return out
}

// nodeClient is a single-node client for the cluster commands.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, PoolSize: 1, MaxRetries: -1})
}

// NodeInfo is one line of CLUSTER NODES as a node sees it.
type NodeInfo struct {
	// ID is the node's cluster id, Addr its host:port.
	ID, Addr string
	// Master is true for a master; MasterID names a replica's master.
	Master   bool
	MasterID string
	// Failed is true when the node is flagged fail or fail? (pfail).
	Failed bool
	// Slots is the number of hash slots a master serves.
	Slots int
}

// Nodes returns the cluster as the node at addr sees it (CLUSTER NODES).
func Nodes(ctx context.Context, addr string) ([]NodeInfo, error) {
	rc := nodeClient(addr)
	defer rc.Close()
	out, err := rc.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES at %s: %w", addr, err)
	}
	return parseNodes(out)
}

// parseNodes reads the CLUSTER NODES format
// (redis.io/commands/cluster-nodes): id addr@bus[,host] flags master
// ping pong epoch link slot….
func parseNodes(out string) ([]NodeInfo, error) {
	var nodes []NodeInfo
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: want at least 8 fields", strings.TrimSpace(line))
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := NodeInfo{ID: f[0], Addr: addr}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || b < a {
				return nil, fmt.Errorf("CLUSTER NODES slot range %q", s)
			}
			n.Slots += b - a + 1
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// WaitOK waits until the cluster is ok; see check.
func (c *Cluster) WaitOK(ctx context.Context) error {
	for {
		err := c.check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not ok: %w", errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// check returns nil when every running node reports cluster_state:ok with
// all 16384 slots assigned and ok, and every running replica's link to its
// master is up (so that a manual failover can complete and a write reaches
// a replica).
func (c *Cluster) check(ctx context.Context) error {
	for _, n := range c.alive() {
		rc := nodeClient(n.addr())
		info, err := rc.ClusterInfo(ctx).Result()
		var repl string
		if err == nil {
			repl, err = rc.Info(ctx, "replication").Result()
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.addr(), err)
		}
		if field(info, "cluster_state") != "ok" || field(info, "cluster_slots_ok") != "16384" {
			return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", n.addr(), field(info, "cluster_state"), field(info, "cluster_slots_ok"))
		}
		if field(repl, "role") == "slave" && field(repl, "master_link_status") != "up" {
			return fmt.Errorf("%s: replica link to its master is %s", n.addr(), field(repl, "master_link_status"))
		}
	}
	return nil
}

// field returns the value of name in an INFO-style "name:value" text.
func field(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// FlushAll empties every master (FLUSHALL); replicas follow.
func (c *Cluster) FlushAll(ctx context.Context) error {
	masters, err := c.Masters(ctx)
	if err != nil {
		return err
	}
	for _, m := range masters {
		rc := nodeClient(m)
		err := rc.FlushAll(ctx).Err()
		rc.Close()
		if err != nil {
			return fmt.Errorf("FLUSHALL at %s: %w", m, err)
		}
	}
	return nil
}
