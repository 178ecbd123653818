package main

import (
	"errors"
	"flag"
	"fmt"
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
