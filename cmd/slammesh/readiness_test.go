package main

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/redisproc"
)

// TestReadinessNeedsRedisLivenessDoesNot runs a step service on a real
// redis-server and kills the server: /readyz goes 503 (the replica leaves
// its load balancer) while /healthz stays 200 (nothing restarts it), and
// /readyz is 200 again once Redis is back on its port.
func TestReadinessNeedsRedisLivenessDoesNot(t *testing.T) {
	dir := t.TempDir()
	rp, err := redisproc.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rp.Stop() })
	_, portStr, err := net.SplitHostPort(rp.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	runServiceT(t, "merge", "--grpc-addr", addrs[0], "--http-addr", addrs[1], "--redis-url", rp.URL())
	base := "http://" + addrs[1]
	waitHealthy(t, base+"/readyz")

	get := func(path string) int {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		res, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	rp.Stop()
	deadline := time.Now().Add(time.Minute)
	for get("/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 a minute after Redis died")
		}
		if code := get("/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz = %d while Redis is down: liveness must not follow it", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d while unready", code)
	}

	rp, err = redisproc.StartOn(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, base+"/readyz")
}
