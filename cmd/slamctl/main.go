// Command slamctl is the slammesh client: start missions (from scenarios or
// real robot data: CARMEN logs, ROS maps), follow, cancel and inspect them,
// fetch merged maps as PNG or as ROS map_server files, and benchmark the
// mesh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels ctx (bench tears its missions down, a watch
	// ends); from then on signals act as by default, so a second one ends
	// slamctl even in work that does not watch ctx.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) { // the usage is the answer to -h
			fmt.Fprintln(os.Stderr, "slamctl:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usage = `slamctl talks to a slammesh orchestrator.

Usage:
  slamctl [global flags] <command> [flags]

Commands:
  start    start a mission from a scenario or from real data (--carmen LOG
           --segments LIST, or --ros-map MAP.yaml ...); the same start
           again with its --id returns that mission
  import   write the StartMission JSON of real data (same flags as start)
           for grpcurl: slamctl import ... -o mission.json
  get      show a mission
  list     list missions, newest first
  cancel   cancel a mission (compensates it, or tears a completed one down)
  resume   resume the compensation of a FAILED mission once its cause is
           repaired (role admin)
  watch    follow a mission's progress events until it ends
  map      write a mission's map as PNG, or with --format ros as a
           map_server .yaml + .pgm pair that Nav2 loads
  delete   remove a finished mission and all its data now (else it expires
           at the end of the retention period)
  bench    run many small missions, report missions/s and latency, then
           tear the missions down and delete them (-keep keeps them)

Global flags:
  --addr ADDR           orchestrator address (env SLAMCTL_ADDR, default localhost:50051)
  --mapping-addr ADDR   mapping service address, used by map (env SLAMCTL_MAPPING_ADDR,
                        default localhost:50052)
  --json                print protobuf JSON instead of text
  --token TOKEN         bearer token for the orchestrator (env SLAMCTL_TOKEN)
  --cacert FILE         PEM CA of the servers' certificates; set, slamctl uses TLS
                        (env SLAMCTL_CACERT)
  --cert FILE, --key FILE
                        PEM client certificate and key, for servers that require
                        one (env SLAMCTL_CERT, SLAMCTL_KEY)
  --server-name NAME    name to verify server certificates against

Run 'slamctl <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	g, rest, err := parseGlobal(args, getenv, stderr)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, cmdArgs := rest[0], rest[1:]
	c, err := dial(g)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	defer func() { err = tlsOrchestrator(ctx, g, cmd, err) }()
	switch cmd {
	case "start":
		return cmdStart(ctx, c, g, cmdArgs, stdout, stderr)
	case "import":
		return cmdImport(cmdArgs, stdout, stderr)
	case "get":
		return cmdGet(ctx, c, g, cmdArgs, stdout, stderr)
	case "list":
		return cmdList(ctx, c, g, cmdArgs, stdout, stderr)
	case "cancel":
		return cmdCancel(ctx, c, g, cmdArgs, stdout, stderr)
	case "resume":
		return cmdResume(ctx, c, g, cmdArgs, stdout, stderr)
	case "watch":
		return cmdWatch(ctx, c, g, cmdArgs, stdout, stderr)
	case "map":
		return cmdMap(ctx, c, g, cmdArgs, stdout, stderr)
	case "bench":
		return cmdBench(ctx, c, g, cmdArgs, getenv, stdout, stderr)
	case "delete":
		return cmdDelete(ctx, c, g, cmdArgs, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
	}
}

// tlsOrchestrator replaces err, a command's failure on a connection its
// orchestrator closed before gRPC began, by the cause when a probe finds
// that orchestrator speaking TLS to this plaintext slamctl (speaksTLS):
// the commands that reconnect say so already (outage.retry), and a
// review found `list` guessing between TLS and a restart instead. map, whose
// call goes to the mapping service, is left as it is.
func tlsOrchestrator(ctx context.Context, g global, cmd string, err error) error {
	to := g.plaintextAddr()
	if err == nil || cmd == "map" || to == "" || !strings.Contains(err.Error(), "error reading server preface") || !speaksTLS(ctx, to) {
		return err
	}
	return fmt.Errorf("%s: %s: the orchestrator at %s speaks TLS: pass --cacert, and --cert/--key for mutual TLS", cmd, codes.Unavailable, to)
}
