package redisproc

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterFailoverAndKill starts a 3-master, 3-replica cluster, writes a
// key to every master, then fails one master over (CLUSTER FAILOVER),
// SIGKILLs another and restarts it: the writes stay readable through a
// ClusterClient after each, and the roles move as documented.
func TestClusterFailoverAndKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %v, %v; want 3", masters, err)
	}
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatalf("ParseClusterURL(%s): %v", c.URL(), err)
	}
	if len(opt.Addrs) != 6 {
		t.Fatalf("URL names %d nodes, want 6", len(opt.Addrs))
	}
	rdb := redis.NewClusterClient(opt)
	defer rdb.Close()
	// Keys in 64 slots reach every master.
	for i := range 64 {
		if err := rdb.Set(ctx, fmt.Sprintf("k{%d}", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A client learns a new topology from MOVED replies or, for a dead
	// node, on its next state reload; a read is retried for a while as an
	// application's would be.
	readAll := func(when string) {
		t.Helper()
		rdb.ReloadState(ctx)
		for i := range 64 {
			var got int
			var err error
			for try := 0; try < 50; try++ {
				if got, err = rdb.Get(ctx, fmt.Sprintf("k{%d}", i)).Int(); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || got != i {
				t.Fatalf("%s: k{%d} = %d, %v", when, i, got, err)
			}
		}
	}
	readAll("after create")

	promoted, err := c.Failover(ctx, masters[0])
	if err != nil {
		t.Fatal(err)
	}
	now, _ := c.Masters(ctx)
	if slices.Contains(now, masters[0]) || !slices.Contains(now, promoted) {
		t.Fatalf("after failover of %s to %s, masters are %v", masters[0], promoted, now)
	}
	readAll("after failover")

	pid := c.PID(masters[1])
	elected, err := c.KillMaster(ctx, masters[1])
	if err != nil {
		t.Fatal(err)
	}
	if c.PID(masters[1]) != 0 || pid == 0 {
		t.Fatalf("killed master %s: pid before %d, after %d", masters[1], pid, c.PID(masters[1]))
	}
	now, _ = c.Masters(ctx)
	if slices.Contains(now, masters[1]) || !slices.Contains(now, elected) {
		t.Fatalf("after kill of %s, masters are %v, want %s among them", masters[1], now, elected)
	}
	readAll("after kill")

	if err := c.Restart(ctx, masters[1]); err != nil {
		t.Fatal(err)
	}
	if c.PID(masters[1]) == 0 {
		t.Fatal("restarted node has no pid")
	}
	now, _ = c.Masters(ctx)
	if len(now) != 3 || slices.Contains(now, masters[1]) {
		t.Fatalf("after restart, masters are %v", now)
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after FlushAll = %d, %v", n, err)
	}
}

func TestParseNodes(t *testing.T) {
	out := "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected\n" +
		"e7d1 127.0.0.1:30001@31001,host myself,master - 0 0 1 connected 0-5460 6000 [5461->-abc]\n" +
		"6ec2 127.0.0.1:30002@31002 master,fail? - 1426238316232 1426238315228 2 connected\n"
	nodes, err := parseNodes(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeInfo{
		{ID: "07c3", Addr: "127.0.0.1:30004", MasterID: "e7d1"},
		{ID: "e7d1", Addr: "127.0.0.1:30001", Master: true, Slots: 5462},
		{ID: "6ec2", Addr: "127.0.0.1:30002", Master: true, Failed: true},
	}
	if !slices.Equal(nodes, want) {
		t.Fatalf("parseNodes = %+v, want %+v", nodes, want)
	}
	if _, err := parseNodes("short line\n"); err == nil {
		t.Fatal("a short line parsed")
	}
}
