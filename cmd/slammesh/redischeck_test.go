package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redischeck"
	"github.com/slammesh/slammesh/internal/redisproc"
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
