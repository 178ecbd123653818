// Package redistest starts a real redis-server for tests: one process per
// call, on a free loopback port, with its own data directory, stopped when the
// test ends. Tests never mock Redis and never skip for want of it: when
// redis-server is missing the test fails with the command that installs it.
//
// With SLAMMESH_TEST_REDIS=cluster in the environment, Start hands out a real
// 6-node Redis Cluster (3 masters, 3 replicas; internal/redisproc
// StartCluster) instead, so that the same tests prove the code on a cluster:
// every script and transaction one slot. Clusters are shared within a test
// binary (starting one takes seconds): each Start takes an idle one and
// empties it (FLUSHALL), a test running in parallel gets another, and they
// live until the binary exits. StartCluster gives a test a private cluster
// it may fail over and kill masters of. In cluster mode every test's
// scripts and transactions are checked to touch one slot each (SlotWatch):
// a test that breaks the rule fails.
package redistest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redisproc"
)

// EnvMode names the environment variable that selects what Start runs:
// "cluster" for a Redis Cluster, anything else (or unset) for one server.
const EnvMode = "SLAMMESH_TEST_REDIS"

// ClusterMode reports whether EnvMode asks for a Redis Cluster.
func ClusterMode() bool { return os.Getenv(EnvMode) == "cluster" }

// startTimeout bounds the start of a cluster, generous for a loaded machine.
const startTimeout = 2 * time.Minute

// Server is a running Redis owned by one test: one redis-server, or in
// cluster mode a cluster shared within the test binary but used by one test
// at a time.
type Server struct {
	// Addr is host:port on 127.0.0.1: the server, or a node of the cluster.
	Addr string
	// URL is the redis:// URL for code configured by REDIS_URL; in cluster
	// mode it is the cluster URL in go-redis ParseClusterURL form
	// (redis://host:port?addr=host2:port&addr=…), for REDIS_CLUSTER_URL.
	URL string
	// Cluster is the cluster in cluster mode, else nil.
	Cluster *redisproc.Cluster
}

// IsCluster reports whether s is a Redis Cluster.
func (s *Server) IsCluster() bool { return s.Cluster != nil }

// Env returns the environment a slammesh process needs to reach s:
// REDIS_URL=… for one server, REDIS_CLUSTER_URL=… for a cluster.
func (s *Server) Env() []string {
	if s.IsCluster() {
		return []string{"REDIS_CLUSTER_URL=" + s.URL}
	}
	return []string{"REDIS_URL=" + s.URL}
}

// Start gives t a Redis: a new redis-server stopped in t.Cleanup, or in
// cluster mode (EnvMode) an emptied cluster from the binary's pool, returned
// to it in t.Cleanup. It fails the test (never skips) when redis-server
// cannot be found or started.
func Start(t testing.TB) *Server {
	t.Helper()
	if ClusterMode() {
		return startShared(t)
	}
	return StartServer(t)
}

// StartServer gives t a new redis-server of its own, stopped in t.Cleanup,
// whatever the mode: for the tests whose subject is one server (shutting
// it down, counting its round trips), which a cluster run must not skip.
// It fails the test (never skips) when redis-server cannot be found or
// started.
func StartServer(t testing.TB) *Server {
	t.Helper()
	p, err := redisproc.Start(t.TempDir())
	if err != nil {
		t.Fatalf("redistest: %v (make test installs redis-server for you)", err)
	}
	t.Cleanup(p.Stop)
	return &Server{Addr: p.Addr, URL: p.URL()}
}

// Client returns a go-redis client for s, closed when the test ends. It is
// a one-node client, so in cluster mode it fails the test: a test that is
// to run on a cluster takes Universal.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	if s.IsCluster() {
		t.Fatalf("redistest: %s=cluster but the test asks for a one-node *redis.Client; use Universal", EnvMode)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Universal returns a go-redis client for s, closed when the test ends: a
// *redis.ClusterClient on a cluster, else a *redis.Client.
func (s *Server) Universal(t testing.TB) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if s.IsCluster() {
		opt, err := redis.ParseClusterURL(s.URL)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		c = redis.NewClusterClient(opt)
	} else {
		c = redis.NewClient(&redis.Options{Addr: s.Addr})
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pool holds the clusters of this test binary that no test is using.
var pool struct {
	mu   sync.Mutex
	idle []*redisproc.Cluster
}

func startShared(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	pool.mu.Lock()
	var c *redisproc.Cluster
	if n := len(pool.idle); n > 0 {
		c, pool.idle = pool.idle[n-1], pool.idle[:n-1]
	}
	pool.mu.Unlock()
	if c == nil {
		// The data lives past t (the cluster does), in a directory named
		// by this process's pid; directories of processes that are gone
		// are removed here.
		sweepStale()
		dir, err := os.MkdirTemp("", clusterDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if c, err = redisproc.StartCluster(ctx, dir, 3, 1); err != nil {
			t.Fatalf("redistest: %v (make test installs redis-server and redis-cli for you)", err)
		}
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	w, err := WatchNodes(ctx, masters)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		defer func() {
			pool.mu.Lock()
			pool.idle = append(pool.idle, c)
			pool.mu.Unlock()
		}()
		defer w.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.Sync(ctx); err != nil {
			t.Errorf("redistest: slot watch: %v", err)
		}
		for _, v := range w.Violations() {
			t.Errorf("redistest: one slot per script and transaction: %s", v)
		}
		if err := logScripts(w.Seen()); err != nil {
			t.Errorf("redistest: %v", err)
		}
	})
	return &Server{Addr: c.Addrs()[0], URL: c.URL(), Cluster: c}
}

// EnvScriptLog names the environment variable holding a file to which, in
// cluster mode, every test appends the SHA1 of each script it saw run on
// its cluster, one per line: test/cluster checks that every script the
// project declares ran on a cluster in some suite.
const EnvScriptLog = "SLAMMESH_TEST_SCRIPT_LOG"

var scriptLog sync.Mutex

func logScripts(seen map[string]int) error {
	path := os.Getenv(EnvScriptLog)
	if path == "" || len(seen) == 0 {
		return nil
	}
	scriptLog.Lock()
	defer scriptLog.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var b strings.Builder
	for sha := range seen {
		b.WriteString(sha + "\n")
	}
	_, err = f.WriteString(b.String())
	return errors.Join(err, f.Close())
}

// clusterDirPrefix starts the name of a shared cluster's data directory,
// followed by the owning process's pid.
const clusterDirPrefix = "slammesh-redistest-cluster-"

// sweepStale removes the data directories of shared clusters whose test
// process has exited (its nodes died with it: redisproc asks the kernel to
// kill them with their parent).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), clusterDirPrefix)
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
}

// StartCluster starts a private 6-node Redis Cluster (3 masters, 3
// replicas) for t, whatever EnvMode says, stopped in t.Cleanup: for a test
// that fails over or kills masters.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := redisproc.StartCluster(ctx, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatalf("redistest: %v (make test installs redis-server and redis-cli for you)", err)
	}
	t.Cleanup(c.Stop)
	return &Server{Addr: c.Addrs()[0], URL: c.URL(), Cluster: c}
}

// Keys returns every key matching pattern (a SCAN MATCH glob): of the one
// server, or of every master of a Redis Cluster, since a SCAN reads one
// node. It fails t on an error.
func Keys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	// Not t.Context(): callers may read the keys in a t.Cleanup, after it
	// was cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		t.Fatalf("redistest.Keys: unexpected client %T", rdb)
	}
	if err != nil {
		t.Fatalf("redistest.Keys %q: %v", pattern, err)
	}
	return keys
}
