// Command k8scheck validates the Kubernetes manifests of slammesh offline:
// it builds each kustomization with kustomize's own library (krusty),
// decodes every object strictly into the Kubernetes API types (unknown,
// misspelt, mistyped or duplicate fields are errors), and checks what
// matters for slammesh (checks.go, slammesh.go): probes, limits, PDBs,
// Services, HPAs, the grace period against the drain, and that every
// variable given to a service is one its binary reads. Last it starts each
// service's binary with exactly its container's environment (starts.go)
// and expects it to accept the configuration and stop on Redis.
//
//	go run . -bin ../../bin/slammesh -complete overlays/dev ../../deploy/kubernetes base overlays/dev
//
// It lives in a module of its own (like tools/promtool) so that kustomize's
// and the Kubernetes API's dependencies stay out of the main go.mod. No
// cluster is needed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "k8scheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("k8scheck", flag.ContinueOnError)
	bin := fs.String("bin", "", "the slammesh binary, asked which env variables each service reads (required)")
	pending := fs.String("pending-env", "", "comma-separated variables accepted although the binary does not read them yet (reported)")
	complete := fs.String("complete", "", "comma-separated kustomizations (relative to ROOT) that must hold every Secret and ConfigMap they use")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: k8scheck -bin SLAMMESH [-pending-env A,B] [-complete DIR,...] ROOT DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || fs.NArg() < 2 {
		fs.Usage()
		return fmt.Errorf("want -bin, a root and at least one kustomization")
	}
	names, err := binaryEnvNames(context.Background(), *bin)
	if err != nil {
		return err
	}
	for name := range splitSet(*pending) {
		for svc, ns := range names {
			if ns[name] {
				fmt.Printf("note: slammesh %s reads %s now: drop it from -pending-env\n", svc, name)
				break
			}
		}
	}
	root := fs.Arg(0)
	failed := 0
	for _, dir := range fs.Args()[1:] {
		cfg := slammeshConfig{names: names, pending: splitSet(*pending), complete: splitSet(*complete)[dir]}
		o, probs, rep, err := checkDirStarts(filesys.MakeFsOnDisk(), filepath.Join(root, dir), *bin, cfg)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", dir, err)
			failed++
			continue
		}
		if len(probs) > 0 {
			fmt.Printf("FAIL %s: %d problems\n", dir, len(probs))
			for _, p := range probs {
				fmt.Println("  -", p)
			}
			failed++
			continue
		}
		fmt.Printf("ok   %s: %s\n", dir, o.count())
		for _, b := range rep.brings {
			fmt.Printf("     expects from the user: %s\n", b)
		}
		for _, v := range rep.pending {
			fmt.Printf("     -pending-env: %s, not read by this binary yet\n", v)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d kustomizations failed", failed, fs.NArg()-1)
	}
	return nil
}

// checkDir builds the kustomization in dir and runs every check on it.
func checkDir(fsys filesys.FileSystem, dir string, cfg slammeshConfig) (*objects, problems, report, error) {
	o, err := build(fsys, dir)
	if err != nil {
		return nil, nil, report{}, err
	}
	probs := checkWorkloads(o)
	sp, rep := checkSlammesh(o, cfg)
	return o, append(probs, sp...), rep, nil
}

// checkDirStarts is checkDir, then checkStarts with the binary at bin.
func checkDirStarts(fsys filesys.FileSystem, dir, bin string, cfg slammeshConfig) (*objects, problems, report, error) {
	o, probs, rep, err := checkDir(fsys, dir, cfg)
	if err != nil || len(probs) > 0 {
		return o, probs, rep, err
	}
	return o, checkStarts(context.Background(), bin, o, cfg), rep, nil
}

func splitSet(s string) map[string]bool {
	out := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out[part] = true
		}
	}
	return out
}
