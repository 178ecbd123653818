package main

import (
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

// TestHealthcheckSaysWhichTLSFlagIsMissing: a probe of a server that
// requires mutual TLS (a step service) says what it lacks: --tls-ca when
// it spoke plaintext, --tls-cert and --tls-key when it had no client
// certificate; with both it reports SERVING.
func TestHealthcheckSaysWhichTLSFlagIsMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue("mapping", meshtlstest.Server, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue("probe", meshtlstest.Client)
	if err != nil {
		t.Fatal(err)
	}
	src, err := meshtls.NewSource(meshtls.Files{CA: ca.CertFile, Cert: server.CertFile, Key: server.KeyFile}, meshtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := meshtls.ServerCredentials(src, meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthRequire})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	addr := l.Addr().String()
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "pass --tls-ca"},
		{[]string{"--tls-ca", ca.CertFile}, "pass --tls-cert and --tls-key"},
		{[]string{"--tls-ca", ca.CertFile, "--tls-cert", client.CertFile, "--tls-key", client.KeyFile}, ""},
	} {
		var out strings.Builder
		err := run(t.Context(), append([]string{"healthcheck", "--addr", addr}, tc.args...), env, &out, io.Discard)
		switch {
		case tc.want == "" && (err != nil || !strings.Contains(out.String(), "SERVING")):
			t.Errorf("healthcheck %v: %v, %q; want SERVING", tc.args, err, out.String())
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("healthcheck %v: %v; want it to say %q", tc.args, err, tc.want)
		}
	}
}
