package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/slammesh/slammesh/internal/auth"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// securityConfig is what a service is told about TLS, tokens, Redis
// credentials and what it may expose (docs/security.md).
type securityConfig struct {
	tls meshtls.Files
	// allowedClients restricts a step service's clients to certificates
	// with one of these names (comma-separated), on top of the CA.
	allowedClients string
	// insecure allows plaintext gRPC, and an orchestrator without
	// authentication, on a non-loopback address.
	insecure    bool
	enablePprof bool

	// orchestrator authentication
	authTokens    string
	authJWKS      string
	authAudience  string
	authIssuer    string
	authRoleClaim string

	// Redis
	redisCA           string
	redisPasswordFile string
}

// addSecurity registers the security flags of a service process.
func addSecurity(e *envFlags, s *securityConfig, service string) {
	e.string(&s.tls.Cert, "tls-cert", "SLAMMESH_TLS_CERT", "", "PEM certificate (chain) this service serves gRPC with; the orchestrator also presents it to the step services. Reloaded when the file changes")
	e.string(&s.tls.Key, "tls-key", "SLAMMESH_TLS_KEY", "", "PEM private key of --tls-cert")
	e.string(&s.tls.CA, "tls-ca", "SLAMMESH_TLS_CA", "", "PEM CA bundle: step services accept only clients it signed (mutual TLS); the orchestrator verifies the step services and optional client certificates with it")
	e.bool(&s.insecure, "insecure", "SLAMMESH_INSECURE", "allow plaintext gRPC (and, on the orchestrator, no authentication) on a non-loopback address")
	e.bool(&s.enablePprof, "enable-pprof", "SLAMMESH_ENABLE_PPROF", "serve /debug/pprof on the HTTP port")
	addRedisSecurity(e, s)
	switch service {
	case "orchestrator":
		e.string(&s.authTokens, "auth-tokens", "SLAMMESH_AUTH_TOKENS", "", "file of static bearer tokens, one 'ROLE TOKEN' per line (roles: viewer, operator, admin); reloaded when it changes")
		e.string(&s.authJWKS, "auth-jwks", "SLAMMESH_AUTH_JWKS", "", "JWKS file or URL whose keys sign accepted JWTs (RS256, ES256)")
		e.string(&s.authAudience, "auth-audience", "SLAMMESH_AUTH_AUDIENCE", "", "audience a JWT must name in aud (required with --auth-jwks)")
		e.string(&s.authIssuer, "auth-issuer", "SLAMMESH_AUTH_ISSUER", "", "issuer a JWT must name in iss (optional)")
		e.string(&s.authRoleClaim, "auth-role-claim", "SLAMMESH_AUTH_ROLE_CLAIM", "", "JWT claim holding the role (default: role, else roles)")
	case "mapping", "localization", "merge":
		e.string(&s.allowedClients, "tls-allowed-clients", "SLAMMESH_TLS_ALLOWED_CLIENTS", "", "comma-separated names (CN, DNS or URI SAN) of the client certificates accepted, on top of --tls-ca; empty accepts any the CA signed for client auth")
	}
}

// addDevSecurity registers what `slammesh dev` has of them: dev is
// plaintext without tokens, on loopback unless --insecure.
func addDevSecurity(e *envFlags, s *securityConfig) {
	e.bool(&s.insecure, "insecure", "SLAMMESH_INSECURE", "allow --host to be a non-loopback address (plaintext, no authentication)")
	e.bool(&s.enablePprof, "enable-pprof", "SLAMMESH_ENABLE_PPROF", "serve /debug/pprof on the HTTP ports")
	addRedisSecurity(e, s)
}

func addRedisSecurity(e *envFlags, s *securityConfig) {
	e.string(&s.redisCA, "redis-ca", "SLAMMESH_REDIS_CA", "", "PEM CA bundle that signs the Redis server's certificate (rediss:// URLs; the URL parameter tls_ca=FILE does the same)")
	e.string(&s.redisPasswordFile, "redis-password-file", "REDIS_PASSWORD_FILE", "", "file holding the Redis password (of the URL's user, or the default user); keeps it out of the URL and the process list")
}

func (s securityConfig) authConfigured() bool { return s.authTokens != "" || s.authJWKS != "" }

// checkExposure refuses starts that would expose an unprotected port:
// plaintext gRPC on a non-loopback address, and an orchestrator without
// authentication there, unless --insecure says the network is trusted.
func (c serviceConfig) checkExposure() error {
	s := c.sec
	if (s.tls.Cert == "") != (s.tls.Key == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if s.tls.Enabled() && s.tls.Cert == "" {
		return fmt.Errorf("%w: --tls-ca without --tls-cert/--tls-key: a server needs its own certificate", errUsage)
	}
	step := c.service != "orchestrator"
	if step && s.tls.Cert != "" && s.tls.CA == "" {
		return fmt.Errorf("%w: a step service with TLS needs --tls-ca: it accepts only clients (the orchestrator) whose certificate that CA signed", errUsage)
	}
	if !step && s.tls.Cert != "" && s.tls.CA == "" {
		// Found by a review: it started, and every mission's first step
		// failed on the step services' certificates for its retry budget.
		return fmt.Errorf("%w: the orchestrator with TLS needs --tls-ca: it verifies the step services' certificates with it, and presents its own to them as their client", errUsage)
	}
	if s.authJWKS != "" && s.authAudience == "" {
		return fmt.Errorf("%w: --auth-jwks needs --auth-audience: a token minted for another service must not open this one", errUsage)
	}
	if !step && !s.insecure && !s.authConfigured() && !grpcserver.IsLoopback(c.httpAddr) {
		// The console lists, cancels and resumes missions: without tokens
		// it is as open as a gRPC port without them, whatever --grpc-addr.
		return fmt.Errorf("%w: refusing to serve the orchestrator's console on %s (not loopback) without authentication: it lists, cancels and resumes missions; give --auth-tokens or --auth-jwks, --http-addr on loopback, or --insecure (docs/security.md)", errUsage, c.httpAddr)
	}
	if s.insecure || grpcserver.IsLoopback(c.grpcAddr) {
		return nil
	}
	if !s.tls.Enabled() {
		return fmt.Errorf("%w: refusing to serve plaintext gRPC on %s (not loopback): give --tls-cert, --tls-key and --tls-ca, or --insecure on a network you trust (docs/security.md)", errUsage, c.grpcAddr)
	}
	if !step && !s.authConfigured() {
		return fmt.Errorf("%w: refusing to serve the orchestrator on %s without authentication: give --auth-tokens or --auth-jwks, or --insecure (docs/security.md)", errUsage, c.grpcAddr)
	}
	return nil
}

// checkExposure of dev: its services are plaintext and take no tokens, so
// they stay on loopback unless --insecure.
func (c devConfig) checkExposure() error {
	if c.base.sec.insecure || grpcserver.IsLoopback(net.JoinHostPort(c.host, "0")) {
		return nil
	}
	return fmt.Errorf("%w: slammesh dev serves plaintext without authentication; refusing --host %s (not loopback) without --insecure", errUsage, c.host)
}

// warnExposure says loudly what a start leaves open; w is stderr.
func warnExposure(w io.Writer, c serviceConfig) {
	var open []string
	if !c.sec.tls.Enabled() {
		open = append(open, fmt.Sprintf("gRPC on %s is PLAINTEXT", c.grpcAddr))
	}
	if c.service == "orchestrator" && !c.sec.authConfigured() {
		open = append(open, fmt.Sprintf("the orchestrator takes NO TOKENS: anyone who reaches it (gRPC on %s, the console on %s) can start, cancel and resume missions", c.grpcAddr, c.httpAddr))
	}
	if c.service == "orchestrator" && c.sec.authConfigured() && !grpcserver.IsLoopback(c.httpAddr) {
		open = append(open, fmt.Sprintf("the console on %s is PLAIN HTTP: tokens typed into it cross the network in the clear (put a TLS proxy in front)", c.httpAddr))
	}
	if len(open) == 0 {
		return
	}
	fmt.Fprintf(w, "\n!!! slammesh %s: %s.\n!!! Fine on one machine or a trusted network; see docs/security.md for TLS and tokens.\n\n",
		c.service, strings.Join(open, "; "))
}

// tlsSource loads the TLS files, logging failed reloads and a certificate
// in use that nears its expiry or is past it.
func tlsSource(files meshtls.Files, log *slog.Logger) (*meshtls.Source, error) {
	return meshtls.NewSource(files, meshtls.Options{
		OnError: func(err error) {
			log.Warn("TLS files changed but could not be loaded; still serving the previous ones", "error", err.Error())
		},
		OnExpiring: func(file string, notAfter time.Time) {
			if left := time.Until(notAfter); left > 0 {
				round := time.Minute
				if left < time.Hour {
					round = time.Second
				}
				log.Warn(fmt.Sprintf("the TLS certificate of %s expires in %v: rotate it (replace the file; it is picked up without a restart)", file, left.Round(round)),
					"not_after", notAfter.UTC().Format(time.RFC3339))
				return
			}
			log.Error(fmt.Sprintf("the TLS certificate of %s has expired: handshakes it takes part in fail, and the service reports not ready; rotate it (replace the file; it is picked up without a restart)", file),
				"not_after", notAfter.UTC().Format(time.RFC3339))
		},
	})
}

// serverCreds returns the gRPC server credentials of c (nil: plaintext)
// and the TLS source, which the orchestrator also dials with.
func serverCreds(c serviceConfig, log *slog.Logger) (credentials.TransportCredentials, *meshtls.Source, error) {
	if !c.sec.tls.Enabled() {
		return nil, nil, nil
	}
	src, err := tlsSource(c.sec.tls, log)
	if err != nil {
		return nil, nil, err
	}
	opts := meshtls.ServerOptions{ClientAuth: meshtls.ClientAuthRequire}
	if c.service == "orchestrator" {
		// The public API: callers authenticate with tokens; a client
		// certificate is verified when one is presented.
		opts.ClientAuth = meshtls.ClientAuthOptional
	}
	opts.AllowedClients = splitList(c.sec.allowedClients)
	opts.OnRefused = refusalLog(log)
	creds, err := meshtls.ServerCredentials(src, opts)
	return creds, src, err
}

// refusalLog logs refused TLS handshakes, so that an operator sees who was
// turned away and why: at most one line a second (a port scanner must not
// flood the log), counting the refusals it left out.
func refusalLog(log *slog.Logger) func(net.Addr, error) {
	var mu sync.Mutex
	var last time.Time
	unlogged := 0
	return func(peer net.Addr, err error) {
		mu.Lock()
		now := time.Now()
		if now.Sub(last) < time.Second {
			unlogged++
			mu.Unlock()
			return
		}
		n := unlogged
		last, unlogged = now, 0
		mu.Unlock()
		log.Warn("TLS handshake refused", "peer", peer.String(), "error", err.Error(), "refused_unlogged", n)
	}
}

// authInterceptors builds the orchestrator's authentication from c, or
// returns nils when none is configured.
func authInterceptors(ctx context.Context, c serviceConfig, log *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, error) {
	var vs auth.Verifiers
	onErr := func(msg string) func(error) {
		return func(err error) { log.Warn(msg, "error", err.Error()) }
	}
	if c.sec.authJWKS != "" {
		j, err := auth.NewJWKS(ctx, auth.JWKSConfig{
			Source: c.sec.authJWKS, Audience: c.sec.authAudience, Issuer: c.sec.authIssuer,
			RoleClaim: c.sec.authRoleClaim, OnError: onErr("the JWKS could not be loaded; the previous keys stay in force"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-jwks: %w", err)
		}
		vs = append(vs, j)
	}
	if c.sec.authTokens != "" {
		tf, err := auth.NewTokenFile(c.sec.authTokens, func(err error) {
			log.Error("the token file changed and a reload skipped a line or left no token: only its valid lines are in force", "error", err.Error())
		})
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-tokens: %w", err)
		}
		vs = append(vs, tf)
	}
	if len(vs) == 0 {
		return nil, nil, nil
	}
	pol := orchestrator.AccessPolicy()
	return auth.UnaryServerInterceptor(vs, pol), auth.StreamServerInterceptor(vs, pol), nil
}

// loosePermissions returns a warning for each secret file of s (token
// file, Redis password file) that users other than its owner may read:
// such a file hands out the keys to the mesh. A warning, not a refusal:
// Kubernetes mounts secrets 0644 unless told otherwise (defaultMode).
func loosePermissions(s securityConfig) []string {
	var out []string
	for _, f := range []struct{ flag, path string }{
		{"--auth-tokens", s.authTokens},
		{"--redis-password-file", s.redisPasswordFile},
	} {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue // a missing file fails the start elsewhere
		}
		out = append(out, fmt.Sprintf("%s %s is readable by other users (mode %04o): chmod 600 it (in Kubernetes, defaultMode: 0400)",
			f.flag, f.path, fi.Mode().Perm()))
	}
	return out
}
