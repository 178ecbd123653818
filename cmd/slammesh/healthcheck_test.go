package main

import (
	"io"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
	"github.com/slammesh/slammesh/internal/redistest"
)

// TestHealthcheckSaysWhichTLSFlagIsMissing: a probe of a mapping service
// started with mutual TLS says what it lacks: --tls-ca when it spoke
// plaintext, --tls-cert and --tls-key when it had no client certificate;
// with both it reports SERVING.
func TestHealthcheckSaysWhichTLSFlagIsMissing(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ca, err := meshtlstest.NewCA(t.TempDir(), "mesh")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue("mapping", meshtlstest.Server|meshtlstest.Client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue("probe", meshtlstest.Client)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	logs := &devOutput{more: make(chan struct{}, 1)}
	runServiceLogT(t, logs, "mapping", "--grpc-addr", addrs[0], "--http-addr", addrs[1], "--redis-url", rs.URL,
		"--tls-cert", server.CertFile, "--tls-key", server.KeyFile, "--tls-ca", ca.CertFile)
	logs.waitFor(t, `"msg":"serving"`)
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
		err := run(t.Context(), append([]string{"healthcheck", "--addr", addrs[0]}, tc.args...), env, &out, io.Discard)
		switch {
		case tc.want == "" && (err != nil || !strings.Contains(out.String(), "SERVING")):
			t.Errorf("healthcheck %v: %v, %q; want SERVING", tc.args, err, out.String())
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("healthcheck %v: %v; want it to say %q", tc.args, err, tc.want)
		}
	}
}

// A probe of a service's HTTP port says that it is one, not that the
// service may serve TLS (found by a review).
func TestHealthcheckOfTheHTTPPortSaysSo(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	addrs := freeAddrs(t, 2)
	logs := &devOutput{more: make(chan struct{}, 1)}
	runServiceLogT(t, logs, "merge", "--grpc-addr", addrs[0], "--http-addr", addrs[1], "--redis-url", rs.URL)
	logs.waitFor(t, `"msg":"serving"`)
	err := run(t.Context(), []string{"healthcheck", "--addr", addrs[1]}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "it is a service's HTTP port") || strings.Contains(err.Error(), "TLS") {
		t.Errorf("healthcheck of the HTTP port: %v; want it to say it is the HTTP port, and nothing of TLS", err)
	}
}
