package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

// TestExitCode pins the statuses scripts rely on: -h succeeds (sidebyside.sh
// probes `slamctl bench -h | grep` under pipefail), usage mistakes are 2.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{flag.ErrHelp, 0},
		{fmt.Errorf("bench: %w", flag.ErrHelp), 0},
		{fmt.Errorf("%w: -d must be positive", errUsage), 2},
		{errors.New("connection refused"), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// writes counts the writes made to it.
type writes struct {
	n   int
	buf strings.Builder
}

func (w *writes) Write(p []byte) (int, error) {
	w.n++
	return w.buf.Write(p)
}

func (w *writes) String() string { return w.buf.String() }

// TestUsageIsOneWrite: a command's usage goes out in one write, so that a
// reader that stops at the line it looks for (`slamctl bench -h | grep -q
// -- -d`) cannot make a later write kill slamctl with SIGPIPE.
func TestUsageIsOneWrite(t *testing.T) {
	w := &writes{}
	fs := newFlags("bench", "bench [flags]", w)
	fs.Duration("d", 0, "run for this long")
	fs.Int("n", 300, "missions to run")
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
	if w.n != 1 || !strings.Contains(w.String(), "  -d duration") || !strings.HasPrefix(w.String(), "Usage: slamctl bench") {
		t.Errorf("usage in %d writes, want 1:\n%s", w.n, w.String())
	}
	// Errors after the usage still go to the same writer.
	if err := fs.Parse([]string{"-x"}); err == nil {
		t.Fatal("Parse(-x) succeeded")
	}
	if !strings.Contains(w.String(), "flag provided but not defined: -x") {
		t.Errorf("parse error not written to stderr: %q", w.String())
	}
}
