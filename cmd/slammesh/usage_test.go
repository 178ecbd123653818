package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every command answers -h with its usage and exit status 0, as slamctl
// does; a bad flag is a usage error, 2 (found by a review: `slammesh dev
// -h` exited 2).
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	env := func(string) string { return "" }
	for _, cmd := range []string{"dev", "orchestrator", "mapping", "localization", "merge", "healthcheck"} {
		if code := exitCode(run(t.Context(), []string{cmd, "-h"}, env, io.Discard, io.Discard)); code != 0 {
			t.Errorf("slammesh %s -h exits %d, want 0", cmd, code)
		}
		if code := exitCode(run(t.Context(), []string{cmd, "--no-such-flag"}, env, io.Discard, io.Discard)); code != 2 {
			t.Errorf("slammesh %s --no-such-flag exits %d, want 2", cmd, code)
		}
	}
}

// TestConfigurationTableNamesEveryVariable: every environment variable a
// command's -h names has its row in the README's Configuration table
// (found by a review: SLAMMESH_LOG_FILE and JAEGER_UI_URL had none).
func TestConfigurationTableNamesEveryVariable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	named := regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	for _, cmd := range []string{"dev", "orchestrator", "mapping", "localization", "merge", "healthcheck"} {
		var help strings.Builder
		_ = run(t.Context(), []string{cmd, "-h"}, env, io.Discard, &help)
		vars := named.FindAllStringSubmatch(help.String(), -1)
		if len(vars) == 0 {
			t.Fatalf("slammesh %s -h names no variable:\n%s", cmd, help.String())
		}
		for _, v := range vars {
			if !strings.Contains(string(readme), "| `"+v[1]+"`") && !strings.Contains(string(readme), ", `"+v[1]+"`") {
				t.Errorf("README's Configuration table has no row for %s (slammesh %s -h)", v[1], cmd)
			}
		}
	}
}
