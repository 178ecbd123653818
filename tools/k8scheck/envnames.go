package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"time"
)

// helpEnv matches how `slammesh <service> -h` names the variable behind a
// flag: "(env SLAMMESH_GRACE)", "(env SLAMMESH_LOG_LEVEL, default info)",
// "; env SLAMMESH_STEP_TIMEOUT)".
var helpEnv = regexp.MustCompile(`\benv ([A-Z][A-Z0-9_]*)`)

// parseHelpEnv returns the variables a service's help text names.
func parseHelpEnv(help []byte) map[string]bool {
	out := map[string]bool{}
	for _, m := range helpEnv.FindAllSubmatch(help, -1) {
		out[string(m[1])] = true
	}
	return out
}

// binaryEnvNames asks the slammesh binary at bin which variables each
// service reads: the flags' help is generated from the same table that
// reads them (cmd/slammesh/config.go), so it cannot drift.
func binaryEnvNames(ctx context.Context, bin string) (envNames, error) {
	out := envNames{}
	for svc := range services {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var buf bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, svc, "-h")
		cmd.Stdout, cmd.Stderr = &buf, &buf
		// -h exits 2 after printing the usage; only a missing binary or an
		// empty usage is an error.
		err := cmd.Run()
		cancel()
		if _, exited := err.(*exec.ExitError); err != nil && !exited {
			return nil, fmt.Errorf("%s %s -h: %w", bin, svc, err)
		}
		names := parseHelpEnv(buf.Bytes())
		if !names["REDIS_URL"] || !names["SLAMMESH_GRPC_ADDR"] {
			return nil, fmt.Errorf("%s %s -h names no REDIS_URL or SLAMMESH_GRPC_ADDR: not the slammesh binary? output:\n%s", bin, svc, buf.String())
		}
		out[svc] = names
	}
	return out, nil
}
