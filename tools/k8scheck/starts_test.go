package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var slammeshBin = flag.String("slammesh", "", "the slammesh binary (default: built from ../../cmd/slammesh into a temporary directory)")

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary returns the slammesh binary the start checks run, building it
// when -slammesh is not given (cached by the Go build cache after make build).
func binary(t *testing.T) string {
	t.Helper()
	if *slammeshBin != "" {
		return *slammeshBin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "k8scheck-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "slammesh")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/slammesh")
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building slammesh: %v", buildErr)
	}
	return builtBin
}

// TestBinaryAcceptsManifests checks the real manifests against the real
// binary: the variables it reads, and a start with each container's
// environment that gets as far as Redis.
func TestBinaryAcceptsManifests(t *testing.T) {
	bin := binary(t)
	names, err := binaryEnvNames(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := slammeshConfig{names: names, pending: map[string]bool{"REDIS_CLUSTER_URL": true}, complete: true}
	_, probs, _, err := checkDirStarts(loadTree(t), "/k/overlays/dev", bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Error(p)
	}
}

// TestBinaryRefusals: configurations whose names are right but which the
// binary refuses at start, as a pod would crash-loop on them.
func TestBinaryRefusals(t *testing.T) {
	bin := binary(t)
	names, err := binaryEnvNames(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, file, old, new, want string }{
		{"plaintext without SLAMMESH_INSECURE", "base/kustomization.yaml", "SLAMMESH_INSECURE=true", "SLAMMESH_INSECURE=false", "refusing to serve plaintext gRPC"},
		{"lease TTL below the minimum", "base/kustomization.yaml", "SLAMMESH_LEASE_TTL=3s", "SLAMMESH_LEASE_TTL=1ms", "--lease-ttl must be at least"},
		{"not a log level", "base/kustomization.yaml", "SLAMMESH_LOG_LEVEL=info", "SLAMMESH_LOG_LEVEL=chatty", "SLAMMESH_LOG_LEVEL"},
		{"OTLP endpoint without a scheme", "overlays/dev/kustomization.yaml", "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317", "OTEL_EXPORTER_OTLP_ENDPOINT=jaeger:4317", "want a URL with a scheme and a host"},
		{"unknown OTLP protocol", "base/kustomization.yaml", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon", "fails before reaching Redis"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := loadTree(t)
			path := filepath.Join("/k", tc.file)
			data, err := mem.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(string(data), tc.old) != 1 {
				t.Fatalf("%s holds %q %d times, want once: update the test", tc.file, tc.old, strings.Count(string(data), tc.old))
			}
			if err := mem.WriteFile(path, []byte(strings.Replace(string(data), tc.old, tc.new, 1))); err != nil {
				t.Fatal(err)
			}
			cfg := slammeshConfig{names: names, pending: map[string]bool{"REDIS_CLUSTER_URL": true}, complete: true}
			_, probs, _, err := checkDirStarts(mem, "/k/overlays/dev", bin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(probs, "\n")
			if !strings.Contains(got, tc.want) {
				t.Errorf("want a finding containing %q; got:\n%s", tc.want, got)
			}
		})
	}
}
