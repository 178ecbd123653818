package testproc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServingAddrs pins how the harnesses find a child's addresses in its
// log: the first complete "serving" line naming both.
func TestServingAddrs(t *testing.T) {
	for _, tt := range []struct {
		name, log string
		want      Addrs
		ok        bool
	}{
		{"serving line", "==== mapping: slammesh mapping --grpc-addr 127.0.0.1:0\n" +
			`{"time":"2026-11-27T01:00:00Z","level":"INFO","msg":"serving","service":"mapping","grpc_addr":"127.0.0.1:40123","http_addr":"127.0.0.1:40124"}` + "\n",
			Addrs{GRPC: "127.0.0.1:40123", HTTP: "127.0.0.1:40124"}, true},
		{"first of two", `{"msg":"serving","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}` + "\n" +
			`{"msg":"serving","grpc_addr":"127.0.0.1:3","http_addr":"127.0.0.1:4"}` + "\n", Addrs{GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2"}, true},
		{"line not complete yet", `{"msg":"serving","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, Addrs{}, false},
		{"no http address", `{"msg":"serving","grpc_addr":"127.0.0.1:1"}` + "\n", Addrs{}, false},
		{"serving without address", `{"msg":"serving"}` + "\n", Addrs{}, false},
		{"other message", `{"msg":"dialing","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}` + "\n", Addrs{}, false},
		{"not JSON", "listen tcp 127.0.0.1:40123: bind: address already in use\n", Addrs{}, false},
		{"empty", "", Addrs{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ServingAddrs([]byte(tt.log))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ServingAddrs = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestProcLifecycle runs a real child (the shell) through the paths the
// harnesses use: a serving line found past an earlier run's output, exit
// with EADDRINUSE reported as ErrAddrInUse, Stop and Kill by PID.
func TestProcLifecycle(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "child.log")
	// An earlier incarnation's serving line must not be taken for this one's.
	old := `{"msg":"serving","grpc_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}` + "\n"
	if err := os.WriteFile(log, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := Start("child", log, "/bin/sh", nil, "-c",
		`echo '{"msg":"serving","grpc_addr":"127.0.0.1:7","http_addr":"127.0.0.1:8"}'; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.AwaitServing(ctx, 30*time.Second)
	if err != nil || a != (Addrs{GRPC: "127.0.0.1:7", HTTP: "127.0.0.1:8"}) {
		t.Fatalf("AwaitServing = %+v, %v", a, err)
	}
	if !p.Alive() {
		t.Fatal("child not alive while sleeping")
	}
	if p.Stop(10*time.Second) != true || p.Alive() {
		t.Fatal("Stop: a sleeping shell exits on SIGTERM by itself")
	}

	q, err := Start("taken", log, "/bin/sh", nil, "-c", "echo 'listen tcp 127.0.0.1:9: bind: address already in use'; exit 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.AwaitServing(ctx, 30*time.Second); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("AwaitServing after EADDRINUSE = %v, want ErrAddrInUse", err)
	}
	if q.Err() == nil {
		t.Fatal("Err of a child that exited 1 is nil")
	}

	k, err := Start("killed", log, "/bin/sh", nil, "-c", "trap '' TERM; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Kill(); err != nil || k.Alive() {
		t.Fatalf("Kill = %v, alive %v", err, k.Alive())
	}
	tail := TailLogs(dir, 3, "address already")
	if strings.Contains(tail, "address already") || !strings.Contains(tail, "==== killed") {
		t.Fatalf("TailLogs:\n%s", tail)
	}
}
