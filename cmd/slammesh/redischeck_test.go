package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redischeck"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// A service refuses to start on a Redis that evicts keys, naming the
// setting and the fix, before it serves anything.
func TestServiceRefusesEvictingRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	if err := rdb.ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	err := run(ctx, []string{"mapping", "--redis-url", srv.URL, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		func(string) string { return "" }, &stderr, &stderr)
	if err == nil {
		t.Fatal("mapping started on an allkeys-lru Redis")
	}
	for _, want := range []string{"maxmemory-policy is allkeys-lru", "maxmemory-policy noeviction"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// A service started while Redis loads its dataset (a restart reading its
// AOF) waits for it and starts, where it used to exit on LOADING (found by
// a review: every service of a mesh restarted beside its Redis died).
func TestServiceWaitsForRedisToLoad(t *testing.T) {
	t.Parallel()
	// Every key takes 5 ms to load and the server answers other clients
	// while it loads: 1,300 keys keep it LOADING for about 6.5 s, longer
	// than go-redis's own retries of a LOADING reply and the service's
	// 5 s start-up checks.
	p, err := redisproc.StartArgs(t.TempDir(), "--enable-debug-command", "yes", "--key-load-delay", "5000", "--loading-process-events-interval-bytes", "1024")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rdb.Do(ctx, "DEBUG", "POPULATE", 1300).Err(); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 1)
	go func() {
		c := redis.NewClient(&redis.Options{Addr: p.Addr, ReadTimeout: 20 * time.Second, MaxRetries: -1})
		defer c.Close()
		reloaded <- c.Do(ctx, "DEBUG", "RELOAD").Err()
	}()
	for err := rdb.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING"); err = rdb.Ping(ctx).Err() {
		if ctx.Err() != nil {
			t.Fatal("Redis never answered LOADING")
		}
		time.Sleep(5 * time.Millisecond)
	}
	svcCtx, stop := context.WithCancel(ctx)
	logs := &devOutput{more: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(svcCtx, []string{"mapping", "--redis-url", p.URL(), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			func(string) string { return "" }, logs, logs)
	}()
	// A service told to stop while it waits stops cleanly (a review's
	// SIGTERM during the wait exited 1 with "context canceled").
	stopCtx, stopNow := context.WithCancel(ctx)
	stopLogs := &devOutput{more: make(chan struct{}, 1)}
	stopped := make(chan error, 1)
	go func() {
		stopped <- run(stopCtx, []string{"merge", "--redis-url", p.URL(), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			func(string) string { return "" }, stopLogs, stopLogs)
	}()
	stopLogs.waitFor(t, "redis is loading its dataset; waiting for it")
	stopNow()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("merge stopped while it waited: %v, want a clean stop", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("merge did not stop within 5 s of being told to")
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("DEBUG RELOAD: %v", err)
	}
	for !strings.Contains(logs.String(), `"msg":"serving"`) {
		select {
		case err := <-done:
			t.Fatalf("mapping exited while Redis loaded: %v", err)
		case <-logs.more:
		case <-ctx.Done():
			t.Fatalf("mapping never served once Redis had loaded:\n%s", logs.String())
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("mapping: %v", err)
	}
	if !strings.Contains(logs.String(), "redis is loading its dataset; waiting for it") {
		t.Errorf("the wait was not logged:\n%s", logs.String())
	}
}

// TestRestartMessage: what a Redis restart is said to have kept follows
// the setting the new instance loads by, and a setting changed across the
// restart is an error (found by a review: AOF turned off at a SHUTDOWN came
// back empty, told as reloaded from the AOF).
func TestRestartMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r     redischeck.Restart
		level slog.Level
		says  string
	}{
		{redischeck.Restart{AOFBefore: true, AOFNow: true}, slog.LevelWarn, "reloaded its writes"},
		{redischeck.Restart{}, slog.LevelWarn, "came back from its last RDB save, or empty"},
		{redischeck.Restart{AOFBefore: true}, slog.LevelError, "appendonly changed (yes before, no now): it loaded its RDB save, or nothing"},
		{redischeck.Restart{AOFNow: true}, slog.LevelError, "appendonly changed (no before, yes now): it loaded its AOF, or nothing"},
		// Writes of the AOF refused at load (redis/redis#14541).
		{redischeck.Restart{AOFBefore: true, AOFNow: true, NOPERM: 975}, slog.LevelError, "refused 975 commands for want of ACL permission (NOPERM) since: if the server's log says"},
	} {
		level, msg := restartMessage(tc.r)
		if level != tc.level || !strings.Contains(msg, tc.says) {
			t.Errorf("restartMessage(%+v) = %v %q, want %v saying %q", tc.r, level, msg, tc.level, tc.says)
		}
		if tc.r.AOFBefore != tc.r.AOFNow && strings.Contains(msg, "reloaded") {
			t.Errorf("restartMessage(%+v) = %q claims a reload", tc.r, msg)
		}
	}
}

// A service started before its Redis waits for it and serves once it is
// up, where it used to exit at once and rely on a restart policy (found by
// a review); past --redis-wait it exits naming the wait, and with
// --redis-wait 0 at once. A Redis Cluster none of whose nodes answers is
// waited for the same way.
func TestServiceWaitsForAnUnreachableRedis(t *testing.T) {
	t.Parallel()
	port := unusedPort(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func(redisArgs ...string) *background {
		return startBackground(ctx, append([]string{"mapping", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, redisArgs...)...)
	}

	t.Run("gives up past the wait", func(t *testing.T) {
		for _, redisArgs := range [][]string{
			{"--redis-url", url},
			{"--redis-cluster-url", url + "?addr=" + fmt.Sprintf("127.0.0.1:%d", unusedPort(t))},
		} {
			began := time.Now()
			svc := start(append(redisArgs, "--redis-wait", "3s")...)
			err := <-svc.done
			if err == nil || !strings.Contains(err.Error(), "at most 3s") || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("%v: exited with %v, want the refused connection and the wait", redisArgs, err)
			}
			if took := time.Since(began); took < 3*time.Second {
				t.Errorf("%v: gave up after %v, within its 3s wait", redisArgs, took)
			}
			if !strings.Contains(svc.logs.String(), "redis is unreachable; waiting for it") {
				t.Errorf("%v: the wait was not logged:\n%s", redisArgs, svc.logs.String())
			}
		}
	})
	t.Run("no wait", func(t *testing.T) {
		began := time.Now()
		err := <-start("--redis-url", url, "--redis-wait", "0").done
		if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "waited") {
			t.Errorf("exited with %v, want the refused connection alone", err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("took %v to give up with --redis-wait 0", took)
		}
	})
	t.Run("serves once Redis is up", func(t *testing.T) {
		svc := start("--redis-url", url)
		svc.logs.waitFor(t, "redis is unreachable; waiting for it")
		p, err := redisproc.StartOn(t.TempDir(), port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		svc.serveThenStop(t, ctx, "once Redis was up")
	})
}

// unusedPort returns a loopback port nothing listens on.
func unusedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// go-redis's own lines reach a service's log as JSON records of the
// service, so that a JSON log pipeline reads them.
func TestRedisLogLinesAreJSON(t *testing.T) {
	var out bytes.Buffer
	l := &redisLogger{log: telemetry.NewLogger(&out, "mapping", slog.LevelWarn), every: time.Hour}
	// One line an hour at most: the second and third are left out.
	for range 3 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")
	}
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %v: %q", err, out.String())
	}
	for k, want := range map[string]any{"level": "WARN", "service": "mapping", "source": "go-redis",
		"msg": "redis: connection pool: failed to dial after 5 attempts: connection refused"} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v", k, rec[k], want)
		}
	}
}

// A service started before its Redis Cluster is created (nodes up, no
// slots assigned: a compose or Kubernetes init job creates it after) waits
// for the Cluster to serve every slot, where it used to fail its ACL probe
// on CLUSTERDOWN and blame the ACL (found by a review).
func TestServiceWaitsForTheClusterToServeItsSlots(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type node struct {
		p   *redisproc.Process
		bus int
	}
	var nodes []node
	for range 3 {
		bus := unusedPort(t)
		p, err := redisproc.StartArgs(t.TempDir(), "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "2000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		nodes = append(nodes, node{p, bus})
	}
	url := "redis://" + nodes[0].p.Addr + "/0?addr=" + nodes[1].p.Addr + "&addr=" + nodes[2].p.Addr
	svc := startBackground(ctx, "mapping", "--redis-cluster-url", url, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	svc.logs.waitFor(t, "redis does not serve all its hash slots yet; waiting for it")

	// Create the Cluster: a third of the slots each, and the nodes met.
	for i, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.p.Addr})
		defer c.Close()
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", i*16384/3, (i+1)*16384/3-1).Err(); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			host, port, _ := net.SplitHostPort(n.p.Addr)
			first := redis.NewClient(&redis.Options{Addr: nodes[0].p.Addr})
			defer first.Close()
			if err := first.Do(ctx, "CLUSTER", "MEET", host, port, n.bus).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	svc.serveThenStop(t, ctx, "once the Cluster served its slots")
}

// background is a service run in the background, as its process would.
type background struct {
	logs *devOutput
	done chan error
	stop context.CancelFunc
}

// startBackground runs `slammesh args…` until ctx ends or stop is called.
func startBackground(ctx context.Context, args ...string) *background {
	ctx, stop := context.WithCancel(ctx)
	b := &background{logs: &devOutput{more: make(chan struct{}, 1)}, done: make(chan error, 1), stop: stop}
	go func() { b.done <- run(ctx, args, func(string) string { return "" }, b.logs, b.logs) }()
	return b
}

// serveThenStop fails the test unless the service logs that it serves
// before it exits or ctx ends (while names what it waited for), then stops
// it and fails the test unless it stops cleanly.
func (b *background) serveThenStop(t *testing.T, ctx context.Context, while string) {
	t.Helper()
	defer b.stop()
	for !strings.Contains(b.logs.String(), `"msg":"serving"`) {
		select {
		case err := <-b.done:
			t.Fatalf("exited %s: %v\n%s", while, err, b.logs.String())
		case <-b.logs.more:
		case <-ctx.Done():
			t.Fatalf("never served %s:\n%s", while, b.logs.String())
		}
	}
	b.stop()
	if err := <-b.done; err != nil {
		t.Fatalf("stopping: %v", err)
	}
}
