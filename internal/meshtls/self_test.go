package meshtls_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

// TestSelfCredentialsPinTheOwnCertificate: a process dialing its own port
// over loopback accepts its own certificate although it names another host,
// and refuses another certificate of the same CA (someone else's server on
// that port).
func TestSelfCredentialsPinTheOwnCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "self")
	if err != nil {
		t.Fatal(err)
	}
	own, err := ca.Issue("orchestrator.internal", meshtlstest.Server|meshtlstest.Client)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ca.Issue("stranger.internal", meshtlstest.Server)
	if err != nil {
		t.Fatal(err)
	}
	src := func(c meshtlstest.Cert) *meshtls.Source {
		s, err := meshtls.NewSource(meshtls.Files{Cert: c.CertFile, Key: c.KeyFile, CA: ca.CertFile}, meshtls.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ownSrc := src(own)
	for name, tc := range map[string]struct {
		server meshtlstest.Cert
		ok     bool
	}{"own certificate": {own, true}, "another certificate of the CA": {stranger, false}} {
		t.Run(name, func(t *testing.T) {
			cfg, err := meshtls.ServerConfig(src(tc.server), meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthOptional})
			if err != nil {
				t.Fatal(err)
			}
			lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			go func() {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
			raw, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, _, err := meshtls.SelfCredentials(ownSrc).ClientHandshake(ctx, lis.Addr().String(), raw)
			if tc.ok && err != nil {
				t.Fatalf("handshake with the own certificate: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("handshake with another certificate succeeded")
			}
			if conn != nil {
				_ = conn.Close()
			}
		})
	}
}
