package testproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// BuildSlammesh builds cmd/slammesh into dir and returns the binary's path,
// so a harness runs the code it is checked out with rather than whatever
// bin/ holds.
func BuildSlammesh(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "slammesh")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/slammesh/slammesh/cmd/slammesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/slammesh: %w\n%s", err, b)
	}
	return out, nil
}

// TailLogs returns the last n lines of every *.log file in dir, in name
// order, for a failure report. Lines containing any of skip are left out
// (e.g. the access log lines of a harness's own polling, which would crowd
// out everything else).
func TailLogs(dir string, n int, skip ...string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", dir, err)
	}
	var b strings.Builder
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintf(&b, "---- %s: %v\n", name, err)
			continue
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if !slices.ContainsFunc(skip, func(s string) bool { return strings.Contains(l, s) }) {
				lines = append(lines, l)
			}
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "---- %s (last %d lines)\n%s\n", name, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
