package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

func TestTokenIsNeverSentInPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	if _, err := dial(global{addr: "10.1.2.3:50051", token: "secret-token"}); !errors.Is(err, errUsage) {
		t.Fatalf("plaintext token to a remote address: got %v, want a usage error", err)
	}
	c, err := dial(global{addr: "localhost:50051", token: "secret-token"})
	if err != nil {
		t.Fatalf("token to loopback: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUndiallableAddressIsAUsageError: a port no dial can reach fails at
// once (exit 2) naming the flag, not as an outage retried for
// --reconnect; every target form gRPC dials is left to it, and
// --mapping-addr is checked only by the command that dials it.
func TestUndiallableAddressIsAUsageError(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"--addr", "127.0.0.1:500501", "list"},
		{"--addr", "127.0.0.1:0", "list"},
		{"--addr", "orchestrator:5005l", "list"},
	} {
		_, _, err := parseGlobal(args, env, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want a usage error naming %s", args, err, args[0])
		}
	}
	for _, addr := range []string{
		"localhost:50051", "[::1]:50051", "localhost", "localhost:https",
		"dns:///orchestrator.mesh:50051", "dns:localhost:50051", "passthrough:127.0.0.1:50051",
		"unix:///run/slammesh.sock", "unix-abstract:slammesh",
	} {
		if _, _, err := parseGlobal([]string{"--addr", addr, "list"}, env, io.Discard); err != nil {
			t.Errorf("--addr %s: %v", addr, err)
		}
	}
	bad := func(k string) string {
		switch k {
		case "SLAMCTL_ADDR":
			return "orchestrator:65536"
		case "SLAMCTL_MAPPING_ADDR":
			return "mapping:0"
		}
		return ""
	}
	if _, _, err := parseGlobal([]string{"list"}, bad, io.Discard); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "SLAMCTL_ADDR") {
		t.Errorf("SLAMCTL_ADDR with a bad port: %v, want a usage error naming it", err)
	}
	g, _, err := parseGlobal([]string{"--addr", "localhost:50051", "list"}, bad, io.Discard)
	if err != nil {
		t.Fatalf("a bad SLAMCTL_MAPPING_ADDR refused a command that does not dial it: %v", err)
	}
	c := &clients{mappingAddr: g.mappingAddr}
	if _, _, err := c.mapping(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "SLAMCTL_MAPPING_ADDR") {
		t.Errorf("dialling a bad mapping address: %v, want a usage error naming SLAMCTL_MAPPING_ADDR", err)
	}
}

// A step service over mutual TLS cuts off a client without a certificate;
// the error says to pass one (found by a review: `map` against such a
// mapping service said "broken pipe" alone). A real handshake, both ways
// it can end.
func TestMutualTLSRefusalSaysToPassACertificate(t *testing.T) {
	t.Parallel()
	ca, err := meshtlstest.NewCA(t.TempDir(), "mesh")
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, ca, "mapping", meshtls.ClientAuthRequire, func(srv *grpc.Server) {
		healthpb.RegisterHealthServer(srv, health.NewServer())
	})

	clientSrc, err := meshtls.NewSource(meshtls.Files{CA: ca.CertFile}, meshtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(meshtls.ClientCredentials(clientSrc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if got := rpcError("map", err).Error(); !strings.Contains(got, "pass --cert and --key") {
		t.Errorf("refused for want of a client certificate: %q, want it to say to pass one", got)
	}
}

// serveTLS serves register's services on loopback over TLS, with a server
// certificate named name from ca and clients checked as auth says, until
// the test ends; it returns the listener.
func serveTLS(t *testing.T, ca *meshtlstest.CA, name string, auth meshtls.ClientAuth, register func(*grpc.Server)) net.Listener {
	t.Helper()
	server, err := ca.Issue(name, meshtlstest.Server, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	src, err := meshtls.NewSource(meshtls.Files{CA: ca.CertFile, Cert: server.CertFile, Key: server.KeyFile}, meshtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := meshtls.ServerCredentials(src, meshtls.ServerOptions{ClientAuth: auth})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l
}
