package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
	"github.com/slammesh/slammesh/internal/slamproto"
)

func TestCheckExposure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsArgs := []string{"--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem"), "--tls-ca", filepath.Join(dir, "ca.pem")}
	tests := []struct {
		name    string
		service string
		args    []string
		env     map[string]string
		refuse  string // substring of the refusal; empty: allowed
	}{
		{name: "default start refuses plaintext on all interfaces", service: "mapping", refuse: "refusing to serve plaintext gRPC on :50052"},
		{name: "loopback plaintext is allowed", service: "mapping", args: []string{"--grpc-addr", "127.0.0.1:0"}},
		{name: "--insecure allows plaintext", service: "merge", args: []string{"--insecure"}},
		{name: "SLAMMESH_INSECURE too", service: "merge", env: map[string]string{"SLAMMESH_INSECURE": "true"}},
		{name: "TLS step service", service: "localization", args: tlsArgs},
		{name: "step service with TLS needs a CA", service: "localization", args: tlsArgs[:4], refuse: "needs --tls-ca"},
		{name: "cert without key", service: "mapping", args: tlsArgs[:2], refuse: "go together"},
		{name: "orchestrator with TLS but no auth", service: "orchestrator", args: tlsArgs, refuse: "without authentication"},
		{name: "orchestrator with TLS and a token file", service: "orchestrator", args: append([]string{"--auth-tokens", "t"}, tlsArgs...)},
		{name: "orchestrator with TLS and JWKS", service: "orchestrator", args: append([]string{"--auth-jwks", "j", "--auth-audience", "slammesh"}, tlsArgs...)},
		{name: "JWKS needs an audience", service: "orchestrator", args: append([]string{"--auth-jwks", "j"}, tlsArgs...), refuse: "needs --auth-audience"},
		{name: "orchestrator on loopback without auth", service: "orchestrator", args: []string{"--grpc-addr", "localhost:0"}},
		{name: "orchestrator with tokens but plaintext off loopback", service: "orchestrator", env: map[string]string{"SLAMMESH_AUTH_TOKENS": "t"}, refuse: "plaintext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseServiceConfig(tt.service, tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.checkExposure()
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse) || !errors.Is(err, errUsage)):
				t.Fatalf("got %v, want a usage error containing %q", err, tt.refuse)
			}
		})
	}

	if _, err := parseDevConfig([]string{"--host", "0.0.0.0"}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Errorf("dev on 0.0.0.0 without --insecure: %v", err)
	}
	if _, err := parseDevConfig([]string{"--host", "0.0.0.0", "--insecure"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("dev on 0.0.0.0 with --insecure: %v", err)
	}
}

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	opts, err := redisOptions("rediss://slammesh@redis.example:6380/2?tls_ca="+ca.CertFile, securityConfig{redisPasswordFile: pw})
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.RootCAs == nil || opts.TLSConfig.ServerName != "redis.example" {
		t.Errorf("TLS config %+v: want the CA pool and the host as server name", opts.TLSConfig)
	}
	if opts.Username != "slammesh" || opts.Password != "s3cret" || opts.DB != 2 {
		t.Errorf("user %q password %q db %d", opts.Username, opts.Password, opts.DB)
	}
	opts, err = redisOptions("rediss://localhost:6380", securityConfig{redisCA: ca.CertFile})
	if err != nil || opts.TLSConfig.RootCAs == nil {
		t.Errorf("--redis-ca: %v", err)
	}

	for name, tc := range map[string]struct {
		url  string
		sec  securityConfig
		want string
	}{
		"CA with plaintext URL":   {"redis://localhost:6379", securityConfig{redisCA: ca.CertFile}, "needs a rediss:// URL"},
		"two CAs":                 {"rediss://localhost:6380?tls_ca=/a.pem", securityConfig{redisCA: ca.CertFile}, "given twice"},
		"CA file is not PEM":      {"rediss://localhost:6380", securityConfig{redisCA: pw}, "no PEM certificate"},
		"two passwords":           {"redis://u:p@localhost:6379", securityConfig{redisPasswordFile: pw}, "given twice"},
		"empty password file":     {"redis://localhost:6379", securityConfig{redisPasswordFile: empty}, "is empty"},
		"unknown option redacted": {"redis://u:hunter2@localhost:6379?bogus=1", securityConfig{}, "unexpected option"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := redisOptions(tc.url, tc.sec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestReceiveLimitMatchesTheAPI keeps the servers' and clients' message
// limit equal to the request size the protos document.
func TestReceiveLimitMatchesTheAPI(t *testing.T) {
	t.Parallel()
	if slamproto.MaxRequestBytes != grpcserver.DefaultMaxMessageBytes {
		t.Fatalf("slamproto.MaxRequestBytes %d != grpcserver.DefaultMaxMessageBytes %d (Dial's clients use the latter)",
			slamproto.MaxRequestBytes, grpcserver.DefaultMaxMessageBytes)
	}
}
