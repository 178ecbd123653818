// Package redistest starts a real redis-server for tests: one process per
// call, on a free loopback port, with its own data directory, stopped when the
// test ends. Tests never mock Redis and never skip for want of it: when
// redis-server is missing the test fails with the command that installs it.
package redistest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redisproc"
)

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// URL is the redis:// URL of the server, for code configured by REDIS_URL.
	URL string
}

// Start launches redis-server for t and stops it in t.Cleanup. It fails the
// test (never skips) when redis-server cannot be found or started.
func Start(t testing.TB) *Server {
	t.Helper()
	p, err := redisproc.Start(t.TempDir())
	if err != nil {
		t.Fatalf("redistest: %v (make test installs redis-server for you)", err)
	}
	t.Cleanup(p.Stop)
	return &Server{Addr: p.Addr, URL: p.URL()}
}

// Client returns a go-redis client for s, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
