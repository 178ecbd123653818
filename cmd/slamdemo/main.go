// Command slamdemo runs the SLAM domain of slammesh on one synthetic world,
// without any service: it generates the world, localizes every agent, merges
// their submaps and writes the merged map, the ground truth and a
// colour-by-agent map as PNGs, printing pose and map metrics.
//
//	go run ./cmd/slamdemo -seed 7 -agents 4 -out /tmp/slamdemo
//	go run ./cmd/slamdemo -kind changed_world -out /tmp/slamdemo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/slammesh/slammesh/internal/slam/eval"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slam/render"
	"github.com/slammesh/slammesh/internal/slam/world"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slamdemo:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	world world.Config
	out   string
	scale int
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("slamdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 7, "world seed")
	fs.IntVar(&c.world.Agents, "agents", 3, "number of agents (1..16)")
	kind := fs.String("kind", "office", "scenario: office, sealed_agent, symmetric_corridor, changed_world")
	fs.Float64Var(&c.world.WidthM, "width", world.DefaultWidthM, "building width in metres")
	fs.Float64Var(&c.world.HeightM, "height", world.DefaultHeightM, "building height in metres")
	fs.Float64Var(&c.world.Resolution, "resolution", world.DefaultResolution, "metres per cell")
	fs.StringVar(&c.out, "out", "slamdemo-out", "directory for the PNGs")
	fs.IntVar(&c.scale, "scale", 2, "pixels per cell in the PNGs (1..8)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	k, err := world.ParseKind(*kind)
	if err != nil {
		return c, err
	}
	if c.scale < 1 || c.scale > 8 {
		return c, fmt.Errorf("-scale %d outside 1..8", c.scale)
	}
	c.world.Seed, c.world.Kind = *seed, k
	return c, nil
}

// run is the whole program. A scenario that fails (sealed agent, ambiguous
// corridor, changed world) still writes what it has and then returns the
// typed domain error, so the exit code tells the story.
func run(ctx context.Context, args []string, stdout io.Writer) (err error) {
	c, err := parse(args, stdout)
	if err != nil {
		return err
	}
	t0 := time.Now()
	w, err := world.Generate(c.world)
	if err != nil {
		return fmt.Errorf("generate world: %w", err)
	}
	meta := w.Truth.Meta()
	fmt.Fprintf(stdout, "world: %s seed %d, %gx%g m at %g m (%dx%d cells), %d agents, generated in %v\n",
		c.world.Kind, c.world.Seed, w.Config.WidthM, w.Config.HeightM, meta.Resolution, meta.Width, meta.Height, len(w.Agents), time.Since(t0).Round(time.Microsecond))

	agents := make([]match.Agent, len(w.Agents))
	for i, a := range w.Agents {
		agents[i] = match.Agent{Submap: a.Submap, Guess: a.InitialGuess, Anchor: a.Anchor}
	}
	t1 := time.Now()
	res, locErr := match.LocalizeAll(ctx, meta, agents, match.Options{}, func(e match.Event) {
		status := "localized"
		if e.Err != nil {
			status = "failed: " + e.Err.Error()
			if !e.Final {
				status += " (retrying next round)"
			}
		}
		fmt.Fprintf(stdout, "  round %d agent %d %s [%d/%d]\n", e.Round, e.Agent, status, e.Localized, e.Total)
	})
	if errors.Is(locErr, context.Canceled) || errors.Is(locErr, context.DeadlineExceeded) {
		return locErr
	}
	fmt.Fprintf(stdout, "localization: %v\n", time.Since(t1).Round(time.Microsecond))
	fmt.Fprintln(stdout, "agent  anchor round  trans_err_m  rot_err_rad  score  inliers  ambiguity")
	for i, r := range res {
		te, re := eval.PoseError(r.Pose, w.Agents[i].Truth)
		mark := ""
		if !r.Localized {
			mark = "  NOT LOCALIZED"
		}
		fmt.Fprintf(stdout, "%5d  %6v %5d  %11.4f  %11.5f  %5.3f  %7.3f  %9.3f%s\n", i, r.Anchor, r.Round, te, re, r.Score, r.InlierRatio, r.Ambiguity, mark)
	}

	// Merge what was localized; if the gate refuses, still draw the fused
	// map so the contradiction can be seen.
	var inputs []fuse.Input
	for i, a := range w.Agents {
		if res != nil && res[i].Localized {
			inputs = append(inputs, fuse.Input{Agent: i, Submap: a.Submap, Pose: res[i].Pose})
		}
	}
	base, err := grid.New(meta)
	if err != nil {
		return err
	}
	t2 := time.Now()
	merged, rep, mergeErr := fuse.Merge(base, inputs, fuse.Options{})
	fmt.Fprintf(stdout, "merge: %v, consistency per agent:", time.Since(t2).Round(time.Microsecond))
	for _, a := range rep.Agents {
		if a.Judged {
			fmt.Fprintf(stdout, " %d=%.4f", a.Agent, a.Consistency)
		} else {
			fmt.Fprintf(stdout, " %d=n/a", a.Agent)
		}
	}
	fmt.Fprintln(stdout)
	layers := make([]*grid.Grid, len(inputs))
	shown := base.Clone()
	for k, in := range inputs {
		if layers[k], err = grid.New(meta); err != nil {
			return err
		}
		if err := fuse.Warp(layers[k], in.Submap, in.Pose); err != nil {
			return err
		}
		if err := fuse.Warp(shown, in.Submap, in.Pose); err != nil {
			return err
		}
	}
	if merged != nil {
		shown = merged
		s, err := eval.CompareMaps(merged, w.Truth)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "map: occupied IoU %.4f, accuracy %.4f over %d observed cells, coverage %.3f\n", s.OccupiedIoU, s.Accuracy, s.Observed, s.Coverage)
	}
	if err := writeImages(c, shown, w.Truth, layers); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote merged.png, truth.png, agents.png, side_by_side.png to %s\n", c.out)
	return errors.Join(locErr, mergeErr)
}

func writeImages(c config, merged, truth *grid.Grid, layers []*grid.Grid) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	agents, err := render.Agents(merged, layers)
	if err != nil {
		return err
	}
	m, t, a := render.Scale(render.Image(merged), c.scale), render.Scale(render.Image(truth), c.scale), render.Scale(agents, c.scale)
	side, err := render.SideBySide(m, a, t)
	if err != nil {
		return err
	}
	for name, img := range map[string]image.Image{"merged.png": m, "truth.png": t, "agents.png": a, "side_by_side.png": side} {
		if err := writePNG(filepath.Join(c.out, name), img); err != nil {
			return err
		}
	}
	return nil
}

// writePNG writes through a temporary file so a reader never sees half an
// image, and reports the close error that a deferred Close would lose.
func writePNG(path string, img image.Image) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.png")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := render.Encode(f, img); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
