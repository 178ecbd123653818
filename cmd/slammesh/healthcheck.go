package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/slammesh/slammesh/internal/grpcserver/healthcheck"
)

// runHealthcheck backs the compose healthchecks: the image has no shell, so
// the probe is the binary itself.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("slammesh healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var addr, service string
	var timeout time.Duration
	e.string(&addr, "addr", "SLAMMESH_HEALTHCHECK_ADDR", "localhost:50051", "gRPC address to probe")
	fs.StringVar(&service, "service", "", "gRPC service name to probe (empty: the whole server)")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	if err := e.parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := healthcheck.Check(ctx, addr, service); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: SERVING\n", addr)
	return nil
}
