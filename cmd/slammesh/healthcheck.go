package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

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
		return err
	}
	fmt.Fprintf(stdout, "%s: SERVING\n", addr)
	return nil
}
