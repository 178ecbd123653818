package main

import (
	"io"
	"testing"

	"github.com/slammesh/slammesh/internal/redistest"
)

// On a Redis Cluster the bench's counters are those of every master,
// summed, less one INFO of the probe's per master and snapshot.
func TestRedisProbeSumsTheMastersOfACluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	p := newRedisProbe(t.Context(), "", srv.URL, "", io.Discard)
	if p == nil {
		t.Fatalf("no probe of the cluster %s", srv.URL)
	}
	defer p.close()
	before := p.snapshot(t.Context())
	rdb := srv.Universal(t)
	// Three keys of three slots, very likely on three masters.
	for _, k := range []string{"a", "b", "c"} {
		if err := rdb.Set(t.Context(), k, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	after := p.snapshot(t.Context())
	if before == nil || after == nil {
		t.Fatal("snapshot of the cluster failed")
	}
	if after.servers != 3 {
		t.Errorf("counters summed over %d servers, want the 3 masters", after.servers)
	}
	if d := after.sub(*before); d.calls["set"] != 3 || d.calls["info"] != 0 {
		t.Errorf("delta calls = %v, want 3 SETs and none of the probe's INFOs", d.calls)
	}
}
