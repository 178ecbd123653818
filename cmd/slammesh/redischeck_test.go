package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/redistest"
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
