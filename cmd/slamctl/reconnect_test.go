package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

// A server certificate that the client's CA does not sign, or a server
// that does not speak TLS, is a misconfiguration, which waiting does not
// mend: slamctl says so at once instead of retrying it for --reconnect as
// an outage. A handshake cut short is an outage.
func TestServerCertificateOfAnotherCAIsNoOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mesh, err := meshtlstest.NewCA(dir, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	other, err := meshtlstest.NewCA(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, mesh, "orchestrator", meshtls.ClientAuthOptional, func(srv *grpc.Server) {
		orchestratorv1.RegisterOrchestratorServiceServer(srv, &replayOrchestrator{events: missionEvents()})
	})

	var stdout, stderr bytes.Buffer
	began := time.Now()
	args := []string{"--addr", l.Addr().String(), "--cacert", other.CertFile, "watch", "--reconnect", "1m", "m"}
	err = run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "authentication handshake failed") || !strings.Contains(err.Error(), "--cacert") {
		t.Fatalf("err %v; want the failed handshake, pointing at --cacert", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("gave up after %v: retried as an outage", d)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr %q: announced a retry", stderr.String())
	}
	// A handshake cut short (a proxy that accepts, then drops, while its
	// orchestrator restarts) is an outage, retried.
	cut, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })
	go func() {
		for {
			c, err := cut.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	stderr.Reset()
	cutArgs := []string{"--addr", cut.Addr().String(), "--cacert", mesh.CertFile, "watch", "--reconnect", "500ms", "m"}
	err = run(t.Context(), cutArgs, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "unreachable for 500ms") || strings.Contains(err.Error(), "--cacert") {
		t.Errorf("handshake cut short: %v; want an outage given up after --reconnect", err)
	}
	if !strings.Contains(stderr.String(), "resuming after") {
		t.Errorf("handshake cut short: stderr %q; want the retry announced", stderr.String())
	}
	// A plaintext orchestrator asked for TLS: no outage either.
	_, plain := serveOn(t, "127.0.0.1:0", &replayOrchestrator{events: missionEvents()})
	began = time.Now()
	err = run(t.Context(), []string{"--addr", plain, "--cacert", mesh.CertFile, "watch", "--reconnect", "1m", "m"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "does not look like a TLS handshake") || !strings.Contains(err.Error(), "leave out --cacert") || time.Since(began) > 20*time.Second {
		t.Errorf("TLS to a plaintext orchestrator: %v after %v; want the refusal at once", err, time.Since(began))
	}
	// A TLS orchestrator asked in plaintext closes the connection before
	// gRPC begins, which a restarting proxy does too (the handshake cut
	// short above): slamctl probes the address for TLS, and a server that
	// speaks it is no outage (found by reviews: it said only "error
	// reading server preface: EOF", then retried for the whole
	// --reconnect), for start as for watch, and for the commands that make
	// one call (found by a review: list guessed between TLS and a restart).
	for _, cmd := range [][]string{{"watch", "--reconnect", "1m", "m"}, {"start", "--reconnect", "1m", "--seed", "1"}, {"list"}, {"get", "m"}, {"cancel", "m"}, {"bench", "-n", "1"}} {
		stderr.Reset()
		began = time.Now()
		// A target in gRPC's syntax is probed at its address (found by
		// a review: dns:/// was not).
		target := "dns:///" + l.Addr().String()
		err = run(t.Context(), append([]string{"--addr", target}, cmd...), func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "the orchestrator at "+target+" speaks TLS: pass --cacert") || time.Since(began) > 20*time.Second {
			t.Errorf("plaintext %s to a TLS orchestrator: %v after %v; want it named, at once", cmd[0], err, time.Since(began))
		}
		if stderr.Len() != 0 {
			t.Errorf("plaintext %s to a TLS orchestrator: stderr %q: announced a retry", cmd[0], stderr.String())
		}
	}
	// The plaintext handshake cut short is still an outage.
	stderr.Reset()
	err = run(t.Context(), []string{"--addr", cut.Addr().String(), "watch", "--reconnect", "500ms", "m"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "unreachable for 500ms") {
		t.Errorf("plaintext, handshake cut short: %v; want an outage given up after --reconnect", err)
	}
	// An HTTP port is no outage: it answers HTTP/1.1, and always will.
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(httpSrv.Close)
	began = time.Now()
	err = run(t.Context(), []string{"--addr", httpSrv.Listener.Addr().String(), "watch", "--reconnect", "1m", "m"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "it is an HTTP port") || time.Since(began) > 20*time.Second {
		t.Errorf("an HTTP port: %v after %v; want it named, at once", err, time.Since(began))
	}
	// The same orchestrator, trusted: the watch goes through.
	stderr.Reset()
	stdout.Reset()
	args[3] = mesh.CertFile
	if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("watch with the orchestrator's CA: %v", err)
	}
}

// drainedGets answers GetMission UNAVAILABLE the first time, as an
// orchestrator that began to drain between the watch's end and the read of
// the mission's state does, then as replayOrchestrator.
type drainedGets struct {
	*replayOrchestrator
	gets atomic.Int32
}

func (d *drainedGets) GetMission(ctx context.Context, req *orchestratorv1.GetMissionRequest) (*orchestratorv1.GetMissionResponse, error) {
	if d.gets.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "orchestrator is shutting down; retry on another replica")
	}
	return d.replayOrchestrator.GetMission(ctx, req)
}

// The read of the mission's state after a watch that ended without its
// terminal event rides out an outage as the watch does.
func TestGetMissionAfterTheWatchIsRetried(t *testing.T) {
	t.Parallel()
	d := &drainedGets{replayOrchestrator: &replayOrchestrator{events: missionEvents()}}
	_, addr := serveOn(t, "127.0.0.1:0", d)
	out, stderr, err := watchCmd(t, addr, "--from", "8-0", "m")
	if err != nil || strings.TrimSpace(out) != "(no events after 8-0: the mission ended COMPLETED)" {
		t.Errorf("watch --from the last event, its GetMission drained once: %q, %v", out, err)
	}
	if d.gets.Load() != 2 || !strings.Contains(stderr, "get mission: Unavailable") {
		t.Errorf("%d GetMission calls, stderr %q; want one retry, said once", d.gets.Load(), stderr)
	}
}

// tlsRefused tells the TLS failures that waiting does not mend from a
// handshake cut short, on the messages grpc-go gives them.
func TestTLSRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg     string
		refused bool
	}{
		{`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, true},
		{`connection error: desc = "transport: authentication handshake failed: x509: certificate has expired or is not yet valid"`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: bad certificate"`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: certificate required"`, true},
		{`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, true},
		{`connection error: desc = "transport: authentication handshake failed: EOF"`, false},
		{`connection error: desc = "transport: authentication handshake failed: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"`, false},
		{`connection error: desc = "error reading server preface: EOF"`, false},
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`, false},
	} {
		if got := tlsRefused(status.Error(codes.Unavailable, tc.msg)); got != tc.refused {
			t.Errorf("tlsRefused(%q) = %v, want %v", tc.msg, got, tc.refused)
		}
	}
}

func TestTCPAddrOfATarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target, addr string
		ok           bool
	}{
		{"127.0.0.1:50051", "127.0.0.1:50051", true},
		{"dns:///orchestrator.internal:50051", "orchestrator.internal:50051", true},
		{"passthrough:///[::1]:50051", "[::1]:50051", true},
		{"orchestrator.internal", "orchestrator.internal:443", true},
		{"unix:///run/slammesh.sock", "", false},
	} {
		if addr, ok := tcpAddr(tc.target); addr != tc.addr || ok != tc.ok {
			t.Errorf("tcpAddr(%q) = %q, %v; want %q, %v", tc.target, addr, ok, tc.addr, tc.ok)
		}
	}
}
