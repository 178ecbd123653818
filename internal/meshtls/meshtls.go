// Package meshtls builds the TLS configurations of slammesh's gRPC servers and
// clients from PEM files — a certificate, its key and a CA bundle — and
// reloads them when the files change, so that certificates are rotated by
// replacing files (cert-manager, a Vault agent, a cron job), without a
// restart.
//
// Reloading: every handshake asks the Source for its current material; the
// Source looks at the files' modification times and sizes at most once per
// CheckInterval and re-reads them when any changed. A rotation that leaves
// a half-written, mismatched or expired pair is ignored (the previous material stays
// in use, and the error is reported through OnError) until the files are
// consistent again, so a rotation never takes a service down.
//
// Mutual TLS: a server built by ServerConfig with ClientAuthRequire accepts
// only clients presenting a certificate the CA signed for client
// authentication (extended key usage clientAuth, RFC 5280 §4.2.1.12), and,
// when AllowedClients is set, whose certificate names one of them. The step
// services run so; the orchestrator presents its own certificate as a
// client (Credentials), so it needs both serverAuth and clientAuth.
package meshtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// DefaultCheckInterval is how often, at most, a Source looks at its files.
const DefaultCheckInterval = time.Second

// Files names the PEM files of one identity. CA is the bundle of
// certificates that sign the peers; Cert and Key are this side's
// certificate chain and private key. A client without an identity of its
// own (grpcurl-like tools talking to the orchestrator) leaves Cert and Key
// empty.
type Files struct {
	Cert string
	Key  string
	CA   string
}

// Enabled reports whether any file is named: an empty Files means
// plaintext.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// material is what the files held when last read.
type material struct {
	cert *tls.Certificate // nil without Cert/Key
	pool *x509.CertPool   // nil without CA
	// caNotAfter is when the last certificate of the CA file to expire
	// does (zero without CA): past it, no peer verifies. A bundle that
	// still holds an old CA beside its successor (a rotation's overlap) is
	// good until the successor's end (found by a review).
	caNotAfter time.Time
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
}

// Source serves the current material of some Files; it is safe for
// concurrent use.
type Source struct {
	files    Files
	interval time.Duration
	onError  func(error)
	now      func() time.Time

	onExpiring func(cert string, notAfter time.Time)
	// told records, per file, when onExpiring was last told of it (at most
	// hourly) and whether it had expired then (its expiry is told at once).
	told map[string]expiryTold

	mu        sync.Mutex
	cur       material
	stamps    [3]fileStamp
	lastCheck time.Time
}

type expiryTold struct {
	at      time.Time
	expired bool
}

// ExpiryWarning is how long before its certificate expires a Source starts
// telling OnExpiring (then once an hour, and on after it expired, when
// every peer refuses the handshakes).
const ExpiryWarning = 7 * 24 * time.Hour

// Options tune a Source; the zero value is fine.
type Options struct {
	// CheckInterval is how often, at most, the files are stat'ed;
	// 0 means DefaultCheckInterval.
	CheckInterval time.Duration
	// OnError is told when changed files could not be loaded (the previous
	// material stays in use); nil ignores such errors.
	OnError func(error)
	// OnExpiring is told, at most once an hour as the material is used,
	// that the certificate in use expires within ExpiryWarning or has
	// expired, and was not rotated (found by a review: one expired in place
	// while the service stayed ready and every handshake failed); nil
	// ignores it.
	OnExpiring func(cert string, notAfter time.Time)
}

// NewSource reads f once, failing when a file is missing or invalid (a
// Cert without a Key, a key that does not match, an expired certificate or
// one not valid yet, a CA file without certificates), and returns a Source that reloads them on change.
func NewSource(f Files, opts Options) (*Source, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("meshtls: a certificate needs its key and a key its certificate (--tls-cert and --tls-key)")
	}
	s := &Source{files: f, interval: opts.CheckInterval, onError: opts.OnError, onExpiring: opts.OnExpiring, now: time.Now}
	if s.interval <= 0 {
		s.interval = DefaultCheckInterval
	}
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	m, err := load(f, s.now())
	if err != nil {
		return nil, err
	}
	s.cur, s.stamps, s.lastCheck = m, stamps, s.now()
	s.checkExpiry(s.lastCheck)
	return s, nil
}

// stat returns the stamps of the named files (zero for unnamed ones).
func (s *Source) stat() ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("meshtls: %w", err)
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

func load(f Files, now time.Time) (material, error) {
	var m material
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return m, fmt.Errorf("meshtls: certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		// Every peer would refuse an expired certificate: say so here, by
		// name and date, rather than let each handshake fail.
		if c.Leaf != nil && now.After(c.Leaf.NotAfter) {
			return m, fmt.Errorf("meshtls: certificate %s expired at %s", f.Cert, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		// Likewise one not valid yet (a clock behind its issuer's, or a
		// certificate issued for later).
		if c.Leaf != nil && now.Before(c.Leaf.NotBefore) {
			return m, fmt.Errorf("meshtls: certificate %s is not valid until %s (is this machine's clock right?)", f.Cert, c.Leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		m.cert = &c
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return m, fmt.Errorf("meshtls: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return m, fmt.Errorf("meshtls: CA file %s holds no PEM certificate", f.CA)
		}
		m.caNotAfter = lastExpiry(pem)
	}
	return m, nil
}

// lastExpiry returns the latest NotAfter of the certificates in a PEM
// bundle (zero when none parses).
func lastExpiry(bundle []byte) time.Time {
	var last time.Time
	for {
		var b *pem.Block
		if b, bundle = pem.Decode(bundle); b == nil {
			return last
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if b.Type == "CERTIFICATE" && err == nil && c.NotAfter.After(last) {
			last = c.NotAfter
		}
	}
}

// current returns the material, reloading it first when the files changed
// since the last look (at most once per interval).
func (s *Source) current() material {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.lastCheck) < s.interval {
		return s.cur
	}
	s.lastCheck = now
	defer s.checkExpiry(now) // of the material in use once this look is done
	stamps, err := s.stat()
	if err != nil {
		s.report(err)
		return s.cur
	}
	if stamps == s.stamps {
		return s.cur
	}
	m, err := load(s.files, now)
	if err != nil {
		// Mid-rotation (the certificate replaced, its key not yet): keep
		// serving the old pair and look again next time.
		s.report(err)
		return s.cur
	}
	s.cur, s.stamps = m, stamps
	return s.cur
}

// checkExpiry tells onExpiring of the certificate in use, and of the CA
// file's last certificate to expire, when it expires within
// ExpiryWarning: at most once an hour, and at once when it has just
// expired. s.mu is held.
func (s *Source) checkExpiry(now time.Time) {
	if s.onExpiring == nil {
		return
	}
	if c := s.cur.cert; c != nil && c.Leaf != nil {
		s.tellExpiry(now, s.files.Cert, c.Leaf.NotAfter)
	}
	if !s.cur.caNotAfter.IsZero() {
		s.tellExpiry(now, s.files.CA, s.cur.caNotAfter)
	}
}

func (s *Source) tellExpiry(now time.Time, file string, notAfter time.Time) {
	if notAfter.Sub(now) > ExpiryWarning {
		return
	}
	expired := !now.Before(notAfter)
	last, ok := s.told[file]
	if ok && now.Sub(last.at) < time.Hour && expired == last.expired {
		return
	}
	if s.told == nil {
		s.told = map[string]expiryTold{}
	}
	s.told[file] = expiryTold{at: now, expired: expired}
	s.onExpiring(file, notAfter)
}

// Valid looks at the files as a handshake would (a rotation is picked up,
// an expiry told) and returns an error when the certificate in use, or
// every certificate of the CA file, has expired: every peer refuses this
// side's handshakes, or this side every peer's, so a readiness probe
// should take the service out of rotation.
func (s *Source) Valid() error {
	m := s.current()
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	if m.cert != nil && m.cert.Leaf != nil && !now.Before(m.cert.Leaf.NotAfter) {
		return fmt.Errorf("meshtls: certificate %s expired at %s", s.files.Cert, m.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !m.caNotAfter.IsZero() && !now.Before(m.caNotAfter) {
		return fmt.Errorf("meshtls: every certificate of CA file %s has expired, the last at %s", s.files.CA, m.caNotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (s *Source) report(err error) {
	if s.onError != nil {
		s.onError(err)
	}
}

// ClientAuth says what a server asks of its clients' certificates.
type ClientAuth int

const (
	// ClientAuthRequire accepts only clients with a certificate the CA
	// signed (the step services).
	ClientAuthRequire ClientAuth = iota
	// ClientAuthOptional verifies a client certificate when one is
	// presented and accepts clients without one (the orchestrator's public
	// API, whose callers authenticate with bearer tokens).
	ClientAuthOptional
)

// ServerOptions configure ServerConfig.
type ServerOptions struct {
	ClientAuth ClientAuth
	// AllowedClients, when not empty, restricts clients to certificates
	// naming one of these in a DNS or URI SAN or as the subject's common
	// name, on top of the CA's signature.
	AllowedClients []string
	// OnRefused, when set, is told of every handshake ServerCredentials
	// refuses (no certificate, another CA, a usage or name not allowed,
	// plaintext), with the peer's address: grpc-go itself reports them
	// only at its info level. A peer that closes before the handshake (a
	// TCP probe) is not reported.
	OnRefused func(peer net.Addr, err error)
}

// ServerConfig returns a server TLS configuration that takes its
// certificate and client CAs from s on every handshake. s must hold a
// certificate, and a CA unless opts.ClientAuth is ClientAuthOptional.
func ServerConfig(s *Source, opts ServerOptions) (*tls.Config, error) {
	if s.files.Cert == "" {
		return nil, errors.New("meshtls: a server needs a certificate and key (--tls-cert, --tls-key)")
	}
	if s.files.CA == "" && opts.ClientAuth == ClientAuthRequire {
		return nil, errors.New("meshtls: mutual TLS needs the CA that signs the clients (--tls-ca)")
	}
	auth := tls.RequireAndVerifyClientCert
	if opts.ClientAuth == ClientAuthOptional {
		auth = tls.VerifyClientCertIfGiven
		if s.files.CA == "" {
			auth = tls.NoClientCert
		}
	}
	allowed := slices.Clone(opts.AllowedClients)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				ClientCAs:    m.pool,
				ClientAuth:   auth,
				// gRPC requires ALPN h2; the config returned here replaces
				// the one grpc's credentials added it to.
				NextProtos: []string{"h2"},
				VerifyConnection: func(cs tls.ConnectionState) error {
					if err := checkClientUsage(cs); err != nil {
						return err
					}
					return checkAllowed(cs, allowed)
				},
			}, nil
		},
	}, nil
}

// checkClientUsage refuses a client certificate that does not name client
// authentication among its extended key usages. crypto/x509 takes a leaf
// without any (unrestricted, RFC 5280 §4.2.1.12) or with
// anyExtendedKeyUsage for every purpose; the mesh asks for a certificate
// its CA signed for client authentication, so that one signed for another
// purpose — a step service's, issued without usages — cannot pass for the
// orchestrator.
func checkClientUsage(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil
	}
	return fmt.Errorf("meshtls: client certificate %q does not name client authentication (extended key usage clientAuth)", leaf.Subject.CommonName)
}

// checkAllowed enforces ServerOptions.AllowedClients on a verified peer.
func checkAllowed(cs tls.ConnectionState, allowed []string) error {
	if len(allowed) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	for _, n := range names {
		if n != "" && slices.Contains(allowed, n) {
			return nil
		}
	}
	return fmt.Errorf("meshtls: client certificate %q is not among the allowed clients", leaf.Subject.CommonName)
}

// ServerCredentials returns gRPC server credentials over ServerConfig.
func ServerCredentials(s *Source, opts ServerOptions) (credentials.TransportCredentials, error) {
	cfg, err := ServerConfig(s, opts)
	if err != nil {
		return nil, err
	}
	creds := credentials.NewTLS(cfg)
	if opts.OnRefused == nil {
		return creds, nil
	}
	return reportRefusals{TransportCredentials: creds, onRefused: opts.OnRefused}, nil
}

// reportRefusals tells ServerOptions.OnRefused of the handshakes its
// credentials refuse.
type reportRefusals struct {
	credentials.TransportCredentials
	onRefused func(net.Addr, error)
}

func (r reportRefusals) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := r.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		r.onRefused(conn.RemoteAddr(), err)
	}
	return c, info, err
}

func (r reportRefusals) Clone() credentials.TransportCredentials {
	return reportRefusals{TransportCredentials: r.TransportCredentials.Clone(), onRefused: r.onRefused}
}

// ClientCredentials returns gRPC client credentials that verify the server
// against s's CA (the system roots when s has none) and present s's
// certificate when it has one. Each handshake uses the material current at
// that moment, so a long-lived connection pool picks up rotated files on
// its next reconnect.
func ClientCredentials(s *Source) credentials.TransportCredentials {
	return &clientCreds{src: s, info: credentials.NewTLS(&tls.Config{}).Info()}
}

// clientCreds builds fresh grpc TLS credentials from the current material
// on every handshake: grpc's own TLS credentials fix their RootCAs when
// built, which would pin the CA of the first handshake forever.
type clientCreds struct {
	src        *Source
	info       credentials.ProtocolInfo
	serverName string
}

func (c *clientCreds) tls() credentials.TransportCredentials {
	m := c.src.current()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: m.pool, ServerName: c.serverName}
	if m.cert != nil {
		cfg.Certificates = []tls.Certificate{*m.cert}
	}
	return credentials.NewTLS(cfg)
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.tls().ClientHandshake(ctx, authority, conn)
}

// ServerHandshake implements credentials.TransportCredentials; client
// credentials never serve.
func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("meshtls: client credentials cannot serve")
}

// Info implements credentials.TransportCredentials.
func (c *clientCreds) Info() credentials.ProtocolInfo {
	return c.info
}

// Clone implements credentials.TransportCredentials.
func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName implements credentials.TransportCredentials.
func (c *clientCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// SelfCredentials returns client credentials for a process that calls its
// own server (the orchestrator's console calls its own gRPC port over
// loopback). The server's certificate is accepted when it is exactly the
// one s holds now, whatever names it carries: a certificate issued for the
// service's DNS name would fail a host name check against 127.0.0.1, and
// pinning our own certificate is stronger than any CA check. No client
// certificate is presented: the calls authenticate with the user's token.
func SelfCredentials(s *Source) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and name checks are replaced by VerifyConnection's pin.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			m := s.current()
			if m.cert == nil || len(m.cert.Certificate) == 0 || len(cs.PeerCertificates) == 0 ||
				!bytes.Equal(cs.PeerCertificates[0].Raw, m.cert.Certificate[0]) {
				return errors.New("meshtls: the server is not this process (its certificate differs from --tls-cert)")
			}
			return nil
		},
	})
}
