package main

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
)

func TestRunWritesImagesAndMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-seed", "3", "-agents", "3", "-out", dir, "-scale", "1"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, name := range []string{"merged.png", "truth.png", "agents.png", "side_by_side.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "merged.png" && (img.Bounds().Dx() != 400 || img.Bounds().Dy() != 300) {
			t.Errorf("merged.png is %v, want 400x300", img.Bounds())
		}
	}
	for _, want := range []string{"occupied IoU", "trans_err_m", "localized"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunReportsScenarioFailures(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-seed", "1", "-kind", "changed_world", "-out", t.TempDir()}, &out)
	if !errors.Is(err, slam.ErrInconsistent) {
		t.Fatalf("changed world: %v, want ErrInconsistent\n%s", err, out.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-kind", "moon"}, {"-agents", "99"}, {"-resolution", "-1"}, {"-scale", "0"}, {"stray"}, {"-nope"}} {
		var out bytes.Buffer
		if err := run(context.Background(), append(args, "-out", t.TempDir()), &out); err == nil {
			t.Errorf("run %v succeeded", args)
		}
	}
}
