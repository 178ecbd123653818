package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestTokenIsNeverSentInPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	if _, err := dial(global{addr: "10.1.2.3:50051", token: "secret-token"}); !errors.Is(err, errUsage) {
		t.Fatalf("plaintext token to a remote address: got %v, want a usage error", err)
	}
	c, err := dial(global{addr: "localhost:50051", token: "secret-token"})
	if err != nil {
		t.Fatalf("token to loopback: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUndiallableAddressIsAUsageError: a port no dial can reach fails at
// once (exit 2) naming the flag, not as an outage retried for
// --reconnect; every target form gRPC dials is left to it, and
// --mapping-addr is checked only by the command that dials it.
func TestUndiallableAddressIsAUsageError(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"--addr", "127.0.0.1:500501", "list"},
		{"--addr", "127.0.0.1:0", "list"},
		{"--addr", "orchestrator:5005l", "list"},
	} {
		_, _, err := parseGlobal(args, env, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want a usage error naming %s", args, err, args[0])
		}
	}
	for _, addr := range []string{
		"localhost:50051", "[::1]:50051", "localhost", "localhost:https",
		"dns:///orchestrator.mesh:50051", "dns:localhost:50051", "passthrough:127.0.0.1:50051",
		"unix:///run/slammesh.sock", "unix-abstract:slammesh",
	} {
		if _, _, err := parseGlobal([]string{"--addr", addr, "list"}, env, io.Discard); err != nil {
			t.Errorf("--addr %s: %v", addr, err)
		}
	}
	bad := func(k string) string {
		switch k {
		case "SLAMCTL_ADDR":
			return "orchestrator:65536"
		case "SLAMCTL_MAPPING_ADDR":
			return "mapping:0"
		}
		return ""
	}
	if _, _, err := parseGlobal([]string{"list"}, bad, io.Discard); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "SLAMCTL_ADDR") {
		t.Errorf("SLAMCTL_ADDR with a bad port: %v, want a usage error naming it", err)
	}
	g, _, err := parseGlobal([]string{"--addr", "localhost:50051", "list"}, bad, io.Discard)
	if err != nil {
		t.Fatalf("a bad SLAMCTL_MAPPING_ADDR refused a command that does not dial it: %v", err)
	}
	c := &clients{mappingAddr: g.mappingAddr}
	if _, _, err := c.mapping(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "SLAMCTL_MAPPING_ADDR") {
		t.Errorf("dialling a bad mapping address: %v, want a usage error naming SLAMCTL_MAPPING_ADDR", err)
	}
}
