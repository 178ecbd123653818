package main

import (
	"io"
	"net"
	"strings"
	"testing"
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
			url, _, stop, err := devRedis(devConfig{redisPort: port}, io.Discard)
			if err == nil {
				stop()
				t.Fatalf("devRedis on busy port %d = %s, want an error", port, url)
			}
			for _, want := range []string{"is in use", "--redis-port", "REDIS_URL"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
