package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/grpcserver/healthcheck"
	"github.com/slammesh/slammesh/internal/meshtls"
)

// runHealthcheck backs the compose healthchecks: the image has no shell, so
// the probe is the binary itself.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("slammesh healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var addr, service, serverName string
	var files meshtls.Files
	var timeout time.Duration
	e.string(&addr, "addr", "SLAMMESH_HEALTHCHECK_ADDR", "localhost:50051", "gRPC address to probe")
	// The service's own variables, so that a probe inside its container
	// speaks TLS when the service does.
	e.string(&files.CA, "tls-ca", "SLAMMESH_TLS_CA", "", "PEM CA that signs the server's certificate; set, the probe uses TLS")
	e.string(&files.Cert, "tls-cert", "SLAMMESH_TLS_CERT", "", "PEM client certificate, for servers that require one (the step services)")
	e.string(&files.Key, "tls-key", "SLAMMESH_TLS_KEY", "", "PEM key of --tls-cert")
	fs.StringVar(&serverName, "tls-server-name", "", "name to verify the server's certificate against (default: the host of --addr)")
	fs.StringVar(&service, "service", "", "gRPC service name to probe (empty: the whole server)")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	if err := e.parse(args); err != nil {
		return err
	}
	var opts []grpc.DialOption
	if files.Enabled() {
		src, err := meshtls.NewSource(files, meshtls.Options{})
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		opts = append(opts, grpc.WithTransportCredentials(meshtls.ClientCredentials(src)))
		if serverName != "" {
			opts = append(opts, grpc.WithAuthority(serverName))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := healthcheck.Check(ctx, addr, service, opts...); err != nil {
		return fmt.Errorf("%w%s", err, probeHint(err, files.Enabled()))
	}
	fmt.Fprintf(stdout, "%s: SERVING\n", addr)
	return nil
}

// probeHint says what a probe's transport failure means for its flags
// (found by a review: a plaintext probe of a TLS orchestrator said only
// "connection reset by peer", one without a client certificate only
// "certificate required"); "" for any other failure.
func probeHint(err error, tlsOn bool) string {
	if status.Code(err) != codes.Unavailable {
		return ""
	}
	msg := status.Convert(err).Message()
	switch {
	case strings.Contains(msg, "looked like an HTTP/1.1 header"):
		// Before the TLS hints: a plaintext probe of the HTTP port also
		// fails reading the server preface (found by a review).
		return " (that address answers HTTP/1.1: it is a service's HTTP port, /metrics, not its gRPC one)"
	case tlsOn && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the server does not speak TLS: leave out --tls-ca)"
	case tlsOn && (strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer")):
		return " (the server refused this probe's client certificate, or its absence: a step service takes only one its CA signed for clientAuth: pass --tls-cert and --tls-key, or SLAMMESH_TLS_CERT and SLAMMESH_TLS_KEY)"
	case !tlsOn && (strings.Contains(msg, "error reading server preface") || strings.Contains(msg, "connection reset by peer")):
		return " (the server closed the connection before it spoke gRPC: if it serves TLS, pass --tls-ca, or SLAMMESH_TLS_CA, and for a step service --tls-cert and --tls-key)"
	}
	return ""
}
