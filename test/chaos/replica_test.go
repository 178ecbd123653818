//go:build chaos

package chaos

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/test/testproc"
)

// TestReplicaRestart checks the harness's restarts of an orchestrator: on
// the port it had, and, when another process took that port while it was
// down, on a new one that the test's client then follows.
func TestReplicaRestart(t *testing.T) {
	ctx, cancel := runContext(t)
	defer cancel()
	dir := t.TempDir()
	bin, err := binary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	redisDir := filepath.Join(dir, "redis")
	if err := os.Mkdir(redisDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rp, err := redisproc.Start(redisDir)
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Stop()
	// No step service is needed: the orchestrator dials them lazily.
	r := &replica{
		name: "orchestrator", bin: bin, logDir: dir,
		args:   []string{"orchestrator", "--redis-url", rp.URL(), "--grace", "1s"},
		owners: make(map[int]string), pids: make(map[int]int),
	}
	defer r.close()

	kill := func(t *testing.T) {
		t.Helper()
		p, _ := r.current()
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	// start starts the next incarnation and checks that the test's client
	// reaches it.
	start := func(t *testing.T) *move {
		t.Helper()
		mv, err := r.start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.waitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.rpc().ListMissions(ctx, &orchestratorv1.ListMissionsRequest{}); err != nil {
			t.Fatalf("ListMissions on %s: %v", r.addr(), err)
		}
		return mv
	}

	if mv := start(t); mv != nil {
		t.Fatalf("first start moved: %+v", mv)
	}
	first := r.addr()
	t.Run("same port", func(t *testing.T) {
		kill(t)
		if mv := start(t); mv != nil || r.addr() != first {
			t.Fatalf("restart on a free port: move %+v, address %s, want none and %s", mv, r.addr(), first)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		kill(t)
		// Take the port the way an unrelated process would.
		l, err := net.Listen("tcp", first)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		mv := start(t)
		if mv == nil || mv.from != first || mv.to != r.addr() || r.addr() == first || !errors.Is(mv.why, testproc.ErrAddrInUse) {
			t.Fatalf("restart on a taken port: move %+v, address %s, want a move from %s to the new address for testproc.ErrAddrInUse", mv, r.addr(), first)
		}
	})
}
