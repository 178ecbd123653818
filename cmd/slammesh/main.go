// Command slammesh runs the slammesh services: one per process
// (orchestrator, mapping, localization, merge), all four in one process
// (dev), or a health probe (healthcheck) for container orchestrators.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/slammesh/slammesh/internal/gctune"
)

func main() {
	if len(os.Args) > 1 {
		routeRedisLog(os.Args[1], os.Args[2:], os.Getenv, os.Stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "slammesh:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usage = `slammesh runs the services of a collaborative multi-robot SLAM mesh.

Usage:
  slammesh <command> [flags]

Commands:
  orchestrator   the mission saga driver (gRPC :50051, HTTP :9091)
  mapping        map allocation (gRPC :50052, HTTP :9092)
  localization   agent localization (gRPC :50053, HTTP :9093)
  merge          map merge (gRPC :50054, HTTP :9094)
  dev            all four in one process, each on its own ports and with its
                 own tracer; Redis from REDIS_URL, else a private redis-server,
                 else an embedded one
  healthcheck    exit 0 when a server reports SERVING (grpc.health.v1;
                 over TLS with --tls-ca, --tls-cert, --tls-key)

A flag that configures a service can also be set by an environment
variable (named in 'slammesh <command> -h'; the flag wins); the one-shot
flags, dev --demo and healthcheck --service and --timeout, have none.
Traces are exported by the standard OTEL_* variables, e.g.
  OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317

A service refuses plaintext gRPC, and an orchestrator without tokens, on a
non-loopback address unless --insecure: see docs/security.md for --tls-*,
--auth-* and the Redis options.
`

var errUsage = errors.New("usage error")

func exitCode(err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0 // the usage is the answer to -h, as for slamctl
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "orchestrator", "mapping", "localization", "merge":
		cfg, err := parseServiceConfig(cmd, rest, getenv, stderr)
		if err != nil {
			return err
		}
		defer startGCHeapFloor(cfg.gcHeapFloorMiB)()
		return runService(ctx, cfg, stderr)
	case "dev":
		cfg, err := parseDevConfig(rest, getenv, stderr)
		if err != nil {
			return err
		}
		defer startGCHeapFloor(cfg.base.gcHeapFloorMiB)()
		return runDev(ctx, cfg, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
	}
}

// startGCHeapFloor keeps a heap floor of mib MiB (internal/gctune) for as
// long as the service runs, unless the operator set GOGC: an explicit GOGC
// wins. Set means as the runtime reads it from the process environment:
// "off" or a number; it takes anything else for the default, and so does
// this.
func startGCHeapFloor(mib uint64) (stop func()) {
	if v := os.Getenv("GOGC"); v == "off" || validGOGC(v) {
		return func() {}
	}
	return gctune.Start(mib << 20)
}

// validGOGC reports whether v is a GOGC percentage the runtime honours.
func validGOGC(v string) bool {
	_, err := strconv.ParseInt(v, 10, 32)
	return err == nil
}
