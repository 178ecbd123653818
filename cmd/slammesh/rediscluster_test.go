package main

import (
	"io"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
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
