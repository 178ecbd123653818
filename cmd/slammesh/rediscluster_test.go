package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/internal/redistest"
)

func TestRedisClusterURLWinsOverRedisURL(t *testing.T) {
	env := map[string]string{
		"REDIS_URL":         "redis://single:6379/0",
		"REDIS_CLUSTER_URL": "redis://a:7000?addr=b:7001&addr=c:7002",
	}
	cfg, err := parseServiceConfig("mapping", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := newRedisConn(cfg.redisURL, cfg.redisClusterURL, cfg.sec)
	if err != nil {
		t.Fatal(err)
	}
	if conn.cluster == nil || !slices.Equal(conn.cluster.Addrs, []string{"a:7000", "b:7001", "c:7002"}) {
		t.Fatalf("cluster options = %+v, want the three addresses", conn.cluster)
	}
	c := conn.client(3)
	defer c.Close()
	if cc, ok := c.(*redis.ClusterClient); !ok || cc.Options().PoolSize != 3 {
		t.Errorf("client = %T, want a *redis.ClusterClient with pool 3", c)
	}

	// The flag form, and without it the single server.
	cfg, err = parseServiceConfig("orchestrator", []string{"--redis-cluster-url", "redis://x:1?addr=y:2"}, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.redisClusterURL != "redis://x:1?addr=y:2" {
		t.Fatalf("--redis-cluster-url = %q, %v", cfg.redisClusterURL, err)
	}
	conn, err = newRedisConn("redis://single:6379/0", "", securityConfig{})
	if err != nil || conn.cluster != nil || conn.single.Addr != "single:6379" {
		t.Errorf("without a cluster URL: %+v, %v", conn, err)
	}
	if _, err := newRedisConn("", "http://a:1?addr=b:2", securityConfig{}); err == nil {
		t.Error("a cluster URL of another scheme was accepted")
	}
}

// TestClusterClientFindsPromotedMasterAfterKill: after a master is
// SIGKILLed and its replica promoted, a service's client must reach the
// new master within seconds. A dead node answers no MOVED, so a client
// that only sends pipelines (the saga store, the recovery scan) learns the
// new topology only at its next periodic state reload: go-redis's default
// of 60 s left a third of the slots unreachable for a minute (StartMission
// UNAVAILABLE, recovery scan failing) once the killed node stayed down.
func TestClusterClientFindsPromotedMasterAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := redistest.StartCluster(t).Cluster
	conn, err := newRedisConn("", c.URL(), securityConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rdb := conn.client(0)
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %v, %v", masters, err)
	}
	victim := masters[0]
	key := ""
	for i := 0; key == "" && i < 1000; i++ {
		k := fmt.Sprintf("slammesh:{m-%d}:saga", i)
		n, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == victim {
			key = k
		}
	}
	if key == "" {
		t.Fatalf("no key served by %s", victim)
	}
	write := func() error {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "state", "running")
			return nil
		})
		return err
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KillMaster(ctx, victim); err != nil {
		t.Fatal(err)
	}
	// Generous for a loaded machine, far below the 60 s default.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := write()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipelined write to a key of the killed master still fails 20 s after the promotion: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The ACL docs/security.md gives the slammesh user runs a service on a
// Redis Cluster too: go-redis's Cluster client reads the slots (CLUSTER
// SLOTS) and the start asks whether every slot is served (CLUSTER INFO),
// which the list lacked (found by a review: every command failed NOPERM
// on cluster|slots).
func TestDocumentedACLOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := redistest.StartCluster(t).Cluster
	const password = "cluster-acl-test-password"
	for _, addr := range c.Addrs() {
		n := redis.NewClient(&redis.Options{Addr: addr})
		args := []any{"ACL", "SETUSER", "slammesh", "on", ">" + password}
		for _, r := range redisproc.SlammeshACL {
			args = append(args, r)
		}
		err := n.Do(ctx, args...).Err()
		n.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	addrs := c.Addrs()
	url := "redis://slammesh:" + password + "@" + addrs[0] + "/0?addr=" + addrs[1] + "&addr=" + addrs[2]
	startBackground(ctx, "mapping", "--redis-cluster-url", url, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").
		serveThenStop(t, ctx, "on the Cluster as the documented user")
}
