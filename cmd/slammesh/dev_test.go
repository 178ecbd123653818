package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/slammesh/slammesh/internal/redistest"
)

// TestDevRedisRefusesABusyPort: a developer's own Redis on the dev port must
// not silently become the mesh's store, whichever Redis dev would start.
// Not parallel: a case empties PATH (t.Setenv).
func TestDevRedisRefusesABusyPort(t *testing.T) {
	tests := []struct {
		name string
		// path replaces PATH when set: without redis-server on it, dev falls
		// back to an embedded Redis.
		path string
	}{
		{name: "private redis-server"},
		{name: "embedded Redis", path: t.TempDir()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := l.Addr().(*net.TCPAddr).Port
			url, _, _, stop, err := devRedis(devConfig{redisPort: port}, io.Discard)
			if err == nil {
				stop()
				t.Fatalf("devRedis on busy port %d = %s, want an error", port, url)
			}
			for _, want := range []string{"is in use", "--redis-port", "SLAMMESH_DEV_REDIS_PORT=6390 make run", "REDIS_URL"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestDevDemoFirstScreen: `make run` (slammesh dev --demo) shows the mesh,
// the demo mission's progress, the console URL and the next commands, in
// one 40-line screen without a JSON log line; the logs go to a file.
func TestDevDemoFirstScreen(t *testing.T) {
	rs := redistest.Start(t)
	out := startDev(t, "--demo", "--free-ports", "--redis-url", rs.URL)
	screen := out.waitFor(t, "Ctrl-C stops the mesh.")
	lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
	if len(lines) > 40 {
		t.Errorf("first screen has %d lines, want at most 40:\n%s", len(lines), screen)
	}
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "{") {
			t.Errorf("line %d is a JSON log line: %s", i+1, l)
		}
	}
	for _, want := range []string{"the mesh is up", "orchestrator", "mapping", "localization", "merge",
		"demo mission", "mission.completed", "Open the console: http://localhost:", "slamctl", "Ctrl-C"} {
		if !strings.Contains(screen, want) {
			t.Errorf("first screen does not show %q:\n%s", want, screen)
		}
	}
	if out.consoleURL(t) == "" {
		t.Fatalf("no console URL in:\n%s", screen)
	}
	// dev's console takes no tokens: it answers the user's own tabs, not a
	// page of another site rebound to loopback (DNS rebinding).
	for host, want := range map[string]int{"": http.StatusOK, "rebind.attacker.example": http.StatusForbidden} {
		req, err := http.NewRequest(http.MethodGet, out.consoleURL(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("console with Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestDevRedisCLIHint: the redis-cli line of the first screen works when
// pasted into a shell, also for a Cluster URL ("&" in its query; MOVED
// replies from the other nodes).
func TestDevRedisCLIHint(t *testing.T) {
	got := redisCLI("redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", true)
	if want := "redis-cli -c -u 'redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002'"; got != want {
		t.Errorf("cluster hint = %s, want %s", got, want)
	}
	if got, want := redisCLI("redis://127.0.0.1:6380/0", false), "redis-cli -u 'redis://127.0.0.1:6380/0'"; got != want {
		t.Errorf("single-server hint = %s, want %s", got, want)
	}
}

// TestStartErrorsSayWhatToDo: a port another process holds, or a Redis the
// user named that does not answer, stops a start with the way out: for dev
// --free-ports or --host, or unsetting REDIS_URL; for a service, its
// address flags. go-redis's own lines reach dev's terminal as text, at most
// one per redisLogEvery.
func TestStartErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	env := func(string) string { return "" }
	err = run(t.Context(), []string{"mapping", "--redis-url", rs.URL, "--grpc-addr", addr, "--http-addr", "127.0.0.1:0"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--grpc-addr and --http-addr") {
		t.Errorf("mapping on a taken port: %v", err)
	}
	for _, tc := range []struct {
		err  error
		note string
		want string
	}{
		{fmt.Errorf("grpcserver: mapping gRPC listener: %w", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}), "a private redis-server; its data is scratch", "--free-ports"},
		{fmt.Errorf("mapping: redis at 127.0.0.1:6999: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "REDIS_URL", "unset REDIS_URL for a private redis-server"},
		{fmt.Errorf("mapping: redis at 127.0.0.1:6999: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "a private redis-server; its data is scratch", ""},
	} {
		got := devStartError(tc.err, tc.note).Error()
		if tc.want == "" && got != tc.err.Error() || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("devStartError(%v, %q) = %q, want it to say %q", tc.err, tc.note, got, tc.want)
		}
	}

	var out strings.Builder
	l := redisLoggerFor("dev", nil, env, &out)
	for range 3 {
		l.Printf(t.Context(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")
	}
	if got := out.String(); strings.Count(got, "\n") != 1 || strings.HasPrefix(got, "{") ||
		!strings.Contains(got, `msg="redis: connection pool: failed to dial after 5 attempts: connection refused"`) || !strings.Contains(got, "service=dev") {
		t.Errorf("dev's go-redis lines: %q, want one text line", got)
	}
}

// TestDevFreePortsPicksAFreeRedisPort: with --free-ports the private Redis
// takes a free port too, so the port-in-use hint's way out works with
// another dev mesh's Redis on 6380; a --redis-port given is kept.
func TestDevFreePortsPicksAFreeRedisPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	url, _, _, stop, err := devRedis(devConfig{redisPort: port, freePorts: true}, io.Discard)
	if err != nil {
		t.Fatalf("--free-ports with the Redis port taken: %v", err)
	}
	stop()
	if strings.Contains(url, fmt.Sprintf(":%d/", port)) {
		t.Errorf("--free-ports kept the taken port: %s", url)
	}
	if _, _, _, stop, err := devRedis(devConfig{redisPort: port, redisPortGiven: true, freePorts: true}, io.Discard); err == nil {
		stop()
		t.Errorf("--free-ports with --redis-port %d given and taken: no error", port)
	}
}

// The URLs dev prints reach the address bound: localhost names 127.0.0.1
// (and ::1), not another loopback address such as --host 127.0.0.2's,
// where a curl of localhost reached another mesh (found by a review).
func TestHTTPURLNamesTheAddressBound(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ip   net.IP
		want string
	}{
		{net.IPv4zero, "http://localhost:9091/"},
		{net.IPv6unspecified, "http://localhost:9091/"},
		{net.IPv4(127, 0, 0, 1), "http://localhost:9091/"},
		{net.IPv6loopback, "http://localhost:9091/"},
		{net.IPv4(127, 0, 0, 2), "http://127.0.0.2:9091/"},
		{net.IPv4(10, 1, 2, 3), "http://10.1.2.3:9091/"},
		{net.ParseIP("fd00::1"), "http://[fd00::1]:9091/"},
	} {
		if got := httpURL(&net.TCPAddr{IP: tt.ip, Port: 9091}); got != tt.want {
			t.Errorf("httpURL(%v) = %s, want %s", tt.ip, got, tt.want)
		}
	}
}
