package meshtls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pki struct {
	ca, other               *meshtlstest.CA
	server, client, foreign meshtlstest.Cert
	serverOnly              meshtlstest.Cert
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "mesh")
	must(t, err)
	otherDir := t.TempDir()
	other, err := meshtlstest.NewCA(otherDir, "other")
	must(t, err)
	p := pki{ca: ca, other: other}
	p.server, err = ca.Issue("mapping", meshtlstest.Server, "127.0.0.1", "localhost")
	must(t, err)
	p.client, err = ca.Issue("orchestrator", meshtlstest.Server|meshtlstest.Client, "127.0.0.1")
	must(t, err)
	p.serverOnly, err = ca.Issue("merge", meshtlstest.Server, "127.0.0.1")
	must(t, err)
	p.foreign, err = other.Issue("orchestrator", meshtlstest.Client)
	must(t, err)
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func source(t *testing.T, f meshtls.Files) *meshtls.Source {
	t.Helper()
	s, err := meshtls.NewSource(f, meshtls.Options{CheckInterval: time.Nanosecond})
	must(t, err)
	return s
}

// serveGRPC runs a gRPC server with only the health service over creds.
func serveGRPC(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

func check(t *testing.T, addr string, opt grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	must(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	noUsage, err := p.ca.Issue("no-usage", 0)
	must(t, err)
	anyUsage, err := p.ca.Issue("any-usage", meshtlstest.Any)
	must(t, err)
	serverCreds, err := meshtls.ServerCredentials(
		source(t, meshtls.Files{Cert: p.server.CertFile, Key: p.server.KeyFile, CA: p.ca.CertFile}),
		meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthRequire})
	must(t, err)
	addr := serveGRPC(t, grpc.Creds(serverCreds))

	cases := []struct {
		name  string
		files meshtls.Files
		ok    bool
	}{
		{"the orchestrator's certificate", meshtls.Files{Cert: p.client.CertFile, Key: p.client.KeyFile, CA: p.ca.CertFile}, true},
		{"no client certificate", meshtls.Files{CA: p.ca.CertFile}, false},
		{"a certificate from another CA", meshtls.Files{Cert: p.foreign.CertFile, Key: p.foreign.KeyFile, CA: p.ca.CertFile}, false},
		{"a server-only certificate of the mesh CA", meshtls.Files{Cert: p.serverOnly.CertFile, Key: p.serverOnly.KeyFile, CA: p.ca.CertFile}, false},
		// crypto/x509 takes both for any purpose; the mesh wants clientAuth.
		{"a certificate of the mesh CA without extended key usage", meshtls.Files{Cert: noUsage.CertFile, Key: noUsage.KeyFile, CA: p.ca.CertFile}, false},
		{"a certificate of the mesh CA for any extended key usage", meshtls.Files{Cert: anyUsage.CertFile, Key: anyUsage.KeyFile, CA: p.ca.CertFile}, false},
		{"a client that does not trust the server's CA", meshtls.Files{Cert: p.client.CertFile, Key: p.client.KeyFile, CA: p.other.CertFile}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, tc.files))))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want UNAVAILABLE (handshake refused)", err)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		if err := check(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials())); status.Code(err) != codes.Unavailable {
			t.Fatalf("plaintext to a TLS port: got %v, want UNAVAILABLE", err)
		}
	})
}

// TestRefusedHandshakesAreReported: OnRefused hears of a client turned
// away, with its address, and not of one let in.
func TestRefusedHandshakesAreReported(t *testing.T) {
	p := newPKI(t)
	type refusal struct {
		peer net.Addr
		err  error
	}
	refused := make(chan refusal, 16)
	serverCreds, err := meshtls.ServerCredentials(
		source(t, meshtls.Files{Cert: p.server.CertFile, Key: p.server.KeyFile, CA: p.ca.CertFile}),
		meshtls.ServerOptions{OnRefused: func(peer net.Addr, err error) { refused <- refusal{peer, err} }})
	must(t, err)
	addr := serveGRPC(t, grpc.Creds(serverCreds))
	ok := meshtls.Files{Cert: p.client.CertFile, Key: p.client.KeyFile, CA: p.ca.CertFile}
	if err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, ok)))); err != nil {
		t.Fatalf("the orchestrator's certificate refused: %v", err)
	}
	select {
	case r := <-refused:
		t.Fatalf("an accepted handshake reported as refused: %v", r.err)
	default:
	}
	if err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, meshtls.Files{CA: p.ca.CertFile})))); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
	select {
	case r := <-refused:
		if tcp, isTCP := r.peer.(*net.TCPAddr); !isTCP || !tcp.IP.IsLoopback() || !strings.Contains(r.err.Error(), "certificate") {
			t.Errorf("refusal reported as %v from %v; want the loopback peer and a certificate error", r.err, r.peer)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client without a certificate was refused unreported")
	}
}

func TestAllowedClients(t *testing.T) {
	p := newPKI(t)
	other, err := p.ca.Issue("slamctl", meshtlstest.Client)
	must(t, err)
	serverCreds, err := meshtls.ServerCredentials(
		source(t, meshtls.Files{Cert: p.server.CertFile, Key: p.server.KeyFile, CA: p.ca.CertFile}),
		meshtls.ServerOptions{AllowedClients: []string{"orchestrator"}})
	must(t, err)
	addr := serveGRPC(t, grpc.Creds(serverCreds))
	ok := meshtls.Files{Cert: p.client.CertFile, Key: p.client.KeyFile, CA: p.ca.CertFile}
	if err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, ok)))); err != nil {
		t.Fatalf("allowed client refused: %v", err)
	}
	no := meshtls.Files{Cert: other.CertFile, Key: other.KeyFile, CA: p.ca.CertFile}
	if err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, no)))); status.Code(err) != codes.Unavailable {
		t.Fatalf("client not in the allow list: got %v, want UNAVAILABLE", err)
	}
}

func TestOptionalClientAuth(t *testing.T) {
	p := newPKI(t)
	serverCreds, err := meshtls.ServerCredentials(
		source(t, meshtls.Files{Cert: p.server.CertFile, Key: p.server.KeyFile, CA: p.ca.CertFile}),
		meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthOptional})
	must(t, err)
	addr := serveGRPC(t, grpc.Creds(serverCreds))
	if err := check(t, addr, grpc.WithTransportCredentials(meshtls.ClientCredentials(source(t, meshtls.Files{CA: p.ca.CertFile})))); err != nil {
		t.Fatalf("client without a certificate refused: %v", err)
	}
}

// peerCert returns the certificate the server at addr presents.
func peerCert(t *testing.T, addr, caFile string) ([]byte, error) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw, nil
}

func TestServerReloadsRotatedFiles(t *testing.T) {
	p := newPKI(t)
	var reloadErrs []error
	src, err := meshtls.NewSource(meshtls.Files{Cert: p.server.CertFile, Key: p.server.KeyFile, CA: p.ca.CertFile},
		meshtls.Options{CheckInterval: time.Nanosecond, OnError: func(err error) { reloadErrs = append(reloadErrs, err) }})
	must(t, err)
	cfg, err := meshtls.ServerConfig(src, meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthOptional})
	must(t, err)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	must(t, err)
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	addr := lis.Addr().String()

	got, err := peerCert(t, addr, p.ca.CertFile)
	must(t, err)
	if !bytes.Equal(got, p.server.DER) {
		t.Fatal("server does not present its certificate")
	}
	rotated, err := p.ca.Issue("mapping", meshtlstest.Server, "127.0.0.1")
	must(t, err)
	got, err = peerCert(t, addr, p.ca.CertFile)
	must(t, err)
	if !bytes.Equal(got, rotated.DER) {
		t.Fatal("after rotation the server still presents the old certificate")
	}

	// A half-done rotation (a key that does not match) keeps the last good pair.
	must(t, os.WriteFile(p.server.KeyFile, []byte("not a key"), 0o600))
	got, err = peerCert(t, addr, p.ca.CertFile)
	must(t, err)
	if !bytes.Equal(got, rotated.DER) {
		t.Fatal("a broken key file replaced the served certificate")
	}
	if len(reloadErrs) == 0 || !strings.Contains(reloadErrs[len(reloadErrs)-1].Error(), "key") {
		t.Fatalf("the failed reload was not reported: %v", errors.Join(reloadErrs...))
	}

	// A rotation to an expired pair is refused the same way.
	_, err = p.ca.IssueValid("mapping", meshtlstest.Server, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "127.0.0.1")
	must(t, err)
	got, err = peerCert(t, addr, p.ca.CertFile)
	must(t, err)
	if !bytes.Equal(got, rotated.DER) {
		t.Fatal("an expired certificate replaced the served one")
	}
	if !strings.Contains(reloadErrs[len(reloadErrs)-1].Error(), "expired") {
		t.Fatalf("the expired rotation was not reported: %v", reloadErrs[len(reloadErrs)-1])
	}
}

func TestNewSourceRejectsBadFiles(t *testing.T) {
	p := newPKI(t)
	expiredCA, err := meshtlstest.NewCA(t.TempDir(), "expired")
	must(t, err)
	expired, err := expiredCA.IssueValid("mapping", meshtlstest.Server, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	must(t, err)
	for name, f := range map[string]meshtls.Files{
		"cert without key":   {Cert: p.server.CertFile},
		"missing CA":         {CA: p.ca.Dir + "/nope.pem"},
		"CA is not PEM":      {CA: p.server.KeyFile},
		"mismatched key":     {Cert: p.server.CertFile, Key: p.client.KeyFile},
		"missing cert files": {Cert: "/nonexistent/c.pem", Key: "/nonexistent/k.pem"},
		"expired cert":       {Cert: expired.CertFile, Key: expired.KeyFile},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := meshtls.NewSource(f, meshtls.Options{}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
