package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifests is the repository's deploy/kubernetes, relative to this module.
const manifests = "../../deploy/kubernetes"

// testNames is what `slammesh <service> -h` names for the variables the
// manifests use (the CLI run by make asks the real binary; these tests
// exercise the checks themselves).
func testNames() envNames {
	common := []string{"SLAMMESH_GRPC_ADDR", "SLAMMESH_HTTP_ADDR", "REDIS_URL", "SLAMMESH_INSECURE", "SLAMMESH_LOG_LEVEL", "SLAMMESH_GRACE"}
	orch := []string{"SLAMMESH_MAPPING_ADDR", "SLAMMESH_LOCALIZATION_ADDR", "SLAMMESH_MERGE_ADDR", "JAEGER_UI_URL",
		"SLAMMESH_LEASE_TTL", "SLAMMESH_RECOVERY_INTERVAL", "SLAMMESH_RETENTION"}
	set := func(names ...[]string) map[string]bool {
		m := map[string]bool{}
		for _, ns := range names {
			for _, n := range ns {
				m[n] = true
			}
		}
		return m
	}
	return envNames{
		"orchestrator": set(common, orch),
		"mapping":      set(common),
		"localization": set(common),
		"merge":        set(common),
	}
}

// loadTree copies deploy/kubernetes into an in-memory file system, where a
// test may break one file.
func loadTree(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(manifests, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(manifests, path)
		return mem.WriteFile(filepath.Join("/k", rel), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

func TestManifestsPass(t *testing.T) {
	for _, dir := range []string{"base", "overlays/dev", "overlays/cluster"} {
		t.Run(dir, func(t *testing.T) {
			cfg := slammeshConfig{names: testNames(), pending: map[string]bool{"REDIS_CLUSTER_URL": true}, complete: dir == "overlays/dev"}
			o, probs, _, err := checkDir(loadTree(t), filepath.Join("/k", dir), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range probs {
				t.Error(p)
			}
			if len(o.deployments) < 4 || len(o.pdbs) < 4 || len(o.hpas) != 3 {
				t.Errorf("build has %s; want the four services with their PDBs and three HPAs", o.count())
			}
		})
	}
}

// TestBrokenManifestsFail breaks the manifests one way at a time and
// expects the check that guards against it to say so.
func TestBrokenManifestsFail(t *testing.T) {
	cases := []struct {
		name, file, old, new string
		dir                  string // default overlays/dev
		want                 string // in the build error or a problem
	}{
		{name: "unknown field", file: "base/mapping.yaml", old: "          imagePullPolicy: IfNotPresent", new: "          imagePullPolicy: IfNotPresent\n          restartPolicyy: Always",
			want: `unknown field "spec.template.spec.containers[0].restartPolicyy"`},
		{name: "field with wrong case", file: "base/merge.yaml", old: "containerPort: 50054", new: "ContainerPort: 50054",
			want: `unknown field`},
		{name: "wrong type", file: "base/localization.yaml", old: "failureThreshold: 2", new: "failureThreshold: two",
			want: "failureThreshold"},
		{name: "no liveness probe", file: "base/merge.yaml", old: "          livenessProbe:\n            grpc:\n              port: 50054\n            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 3\n", new: "",
			want: "container merge has no livenessProbe"},
		{name: "startup probe shorter than the Redis load wait", file: "base/mapping.yaml", old: "failureThreshold: 62", new: "failureThreshold: 6",
			want: "startupProbe allows 1m0s"},
		{name: "no startup probe", file: "base/localization.yaml", old: "          startupProbe:\n            grpc:\n              port: 50053\n            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 62\n", new: "",
			want: "has no startupProbe"},
		{name: "probe on a port the container lacks", file: "base/mapping.yaml", old: "          livenessProbe:\n            grpc:\n              port: 50052", new: "          livenessProbe:\n            grpc:\n              port: 50099",
			want: "livenessProbe port 50099 is not one of its container ports"},
		{name: "http probe instead of grpc", file: "base/mapping.yaml", old: "          readinessProbe:\n            grpc:\n              port: 50052", new: "          readinessProbe:\n            httpGet:\n              port: http\n              path: /healthz",
			want: "readinessProbe must be a grpc probe"},
		{name: "orchestrator readiness on the process alone", file: "base/orchestrator.yaml", old: "\n              service: slammesh.readiness\n", new: "\n",
			want: `readinessProbe must ask for the health service "slammesh.readiness"`},
		{name: "step readiness on Redis", file: "base/localization.yaml", old: "          readinessProbe:\n            grpc:\n              port: 50053\n", new: "          readinessProbe:\n            grpc:\n              port: 50053\n              service: slammesh.readiness\n",
			want: "a Redis outage would empty the headless Service"},
		{name: "liveness on readiness", file: "base/merge.yaml", old: "          livenessProbe:\n            grpc:\n              port: 50054\n", new: "          livenessProbe:\n            grpc:\n              port: 50054\n              service: slammesh.readiness\n",
			want: "livenessProbe must ask for the overall health (no service)"},
		{name: "no memory limit", file: "base/orchestrator.yaml", old: "              cpu: \"2\"\n              memory: 512Mi", new: "              cpu: \"2\"",
			want: "want both a memory request and a memory limit"},
		{name: "request above limit", file: "base/mapping.yaml", old: "              cpu: 250m", new: "              cpu: \"3\"",
			want: "cpu request 3 exceeds its limit 1"},
		{name: "selector does not match labels", file: "base/merge.yaml", old: "  selector:\n    matchLabels:\n      app.kubernetes.io/name: merge\n  strategy", new: "  selector:\n    matchLabels:\n      app.kubernetes.io/name: merger\n  strategy",
			want: "Deployment merge: selector app.kubernetes.io/name=merger does not match"},
		{name: "no PDB", file: "base/localization.yaml", old: "kind: PodDisruptionBudget\nmetadata:\n  name: localization\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: localization",
			new:  "kind: PodDisruptionBudget\nmetadata:\n  name: localization\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: nothing",
			want: "Deployment localization: want exactly one PodDisruptionBudget"},
		{name: "PDB that blocks drains", file: "base/orchestrator.yaml", old: "spec:\n  maxUnavailable: 1", new: "spec:\n  minAvailable: 1",
			want: "PodDisruptionBudget orchestrator: use maxUnavailable"},
		{name: "Service on a missing port", file: "base/merge.yaml", old: "      targetPort: http", new: "      targetPort: metrics",
			want: "Service merge: targetPort metrics is not a container port"},
		{name: "HPA and replicas", file: "base/mapping.yaml", old: "  selector:\n    matchLabels:\n      app.kubernetes.io/name: mapping\n  strategy", new: "  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: mapping\n  strategy",
			want: "Deployment mapping sets replicas while HorizontalPodAutoscaler mapping owns the count"},
		{name: "grace period shorter than the drain", file: "base/orchestrator.yaml", old: "terminationGracePeriodSeconds: 35", new: "terminationGracePeriodSeconds: 20",
			want: "terminationGracePeriodSeconds 20s must exceed preStop 5s + SLAMMESH_GRACE 10s + shutdown 10s = 25s"},
		{name: "longer drain in the ConfigMap", file: "base/kustomization.yaml", old: "SLAMMESH_GRACE=10s", new: "SLAMMESH_GRACE=30s",
			want: "terminationGracePeriodSeconds 35s must exceed preStop 5s + SLAMMESH_GRACE 30s"},
		{name: "liveness kills a draining pod", file: "base/merge.yaml", old: "            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 3", new: "            periodSeconds: 5\n            timeoutSeconds: 2\n            failureThreshold: 3",
			want: "livenessProbe fails after 15s of NOT_SERVING"},
		{name: "variable the binary does not read", file: "base/kustomization.yaml", old: "      - SLAMMESH_LOG_LEVEL=info", new: "      - SLAMMESH_LOGLEVEL=info",
			want: "env SLAMMESH_LOGLEVEL is not read by `slammesh mapping`"},
		{name: "orchestrator variable on a step service", file: "base/merge.yaml", old: "            - name: GOMEMLIMIT", new: "            - name: SLAMMESH_LEASE_TTL\n              value: 3s\n            - name: GOMEMLIMIT",
			want: "env SLAMMESH_LEASE_TTL is not read by `slammesh merge`"},
		{name: "reference to an undefined variable", file: "base/orchestrator.yaml", old: "dns:///merge.$(POD_NAMESPACE)", new: "dns:///merge.$(NAMESPACE)",
			want: "env SLAMMESH_MERGE_ADDR refers to $(NAMESPACE), which is not defined before it"},
		{name: "step address through a ClusterIP", file: "base/merge.yaml", old: "  clusterIP: None\n", new: "",
			want: "Service merge must be headless"},
		{name: "step address on the wrong port", file: "base/orchestrator.yaml", old: "svc.cluster.local:50053", new: "svc.cluster.local:50054",
			want: "Service localization port 50054 does not lead to the gRPC port of the localization pods"},
		{name: "step address without dns:///", file: "base/orchestrator.yaml", old: "value: dns:///mapping.", new: "value: mapping.",
			want: "SLAMMESH_MAPPING_ADDR=\"mapping.$(POD_NAMESPACE).svc.cluster.local:50052\": want dns:///"},
		{name: "listen address off the declared port", file: "base/localization.yaml", old: "              value: \":50053\"", new: "              value: \":50063\"",
			want: "SLAMMESH_GRPC_ADDR=\":50063\" does not listen on the container port named \"grpc\""},
		{name: "Redis URL in plain text", file: "base/mapping.yaml", old: "              valueFrom:\n                secretKeyRef:\n                  name: slammesh-redis\n                  key: url", new: "              value: redis://redis:6379/0",
			want: "REDIS_URL must come from a Secret"},
		{name: "Secret key missing in a complete overlay", file: "overlays/dev/kustomization.yaml", old: "      - url=redis://redis:6379/0", new: "      - address=redis://redis:6379/0",
			want: "has no key url"},
		{name: "GOMEMLIMIT above the limit", file: "base/localization.yaml", old: "value: 920MiB", new: "value: 2GiB",
			want: "GOMEMLIMIT 2GiB is not below the memory limit 1Gi"},
		{name: "writable root file system", file: "base/orchestrator.yaml", old: "            readOnlyRootFilesystem: true", new: "            readOnlyRootFilesystem: false",
			want: "container orchestrator: securityContext.readOnlyRootFilesystem must be true"},
		{name: "root allowed", file: "overlays/dev/redis.yaml", old: "        runAsNonRoot: true", new: "        runAsNonRoot: false",
			want: "Deployment redis: pod securityContext.runAsNonRoot must be true"},
		{name: "step service without autoscaler", file: "base/merge.yaml", old: "kind: HorizontalPodAutoscaler\nmetadata:\n  name: merge\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: merge",
			new:  "kind: HorizontalPodAutoscaler\nmetadata:\n  name: merge\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: mapping",
			want: "Deployment merge (merge) has no HorizontalPodAutoscaler"},
		{name: "NetworkPolicy on a missing port", file: "base/mapping.yaml", old: "        - port: grpc\n", new: "        - port: rpc\n",
			want: "NetworkPolicy mapping: port rpc is not a container port"},
		{name: "NetworkPolicy that keeps the orchestrator off a step's gRPC port", file: "base/localization.yaml", old: "        - port: grpc\n", new: "        - port: http\n",
			want: "NetworkPolicy lets no orchestrator pod reach Deployment localization on its grpc port"},
		{name: "NetworkPolicy that admits other pods than the orchestrator", file: "base/merge.yaml", old: "              app.kubernetes.io/name: orchestrator\n      ports:", new: "              app.kubernetes.io/name: mapping\n      ports:",
			want: "NetworkPolicy lets no orchestrator pod reach Deployment merge on its grpc port"},
		{name: "NetworkPolicy that keeps Prometheus off /metrics", file: "base/mapping.yaml", old: "    - ports:\n        - port: http\n          protocol: TCP\n", new: "",
			want: "NetworkPolicy lets no scraper reach Deployment mapping on its http port"},
		{name: "scrape annotation on another port", file: "base/merge.yaml", old: "prometheus.io/port: \"9094\"", new: "prometheus.io/port: \"9091\"",
			want: "annotation prometheus.io/port 9091 is not its http port 9094"},
		{name: "cluster component on a changed env order", dir: "overlays/cluster", file: "base/merge.yaml", old: "            - name: SLAMMESH_HTTP_ADDR\n              value: \":9094\"\n", new: "",
			want: "kustomize build"},
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
			dir := tc.dir
			if dir == "" {
				dir = "overlays/dev"
			}
			cfg := slammeshConfig{names: testNames(), pending: map[string]bool{"REDIS_CLUSTER_URL": true}, complete: dir == "overlays/dev"}
			_, probs, _, err := checkDir(mem, filepath.Join("/k", dir), cfg)
			got := strings.Join(probs, "\n")
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("want a finding containing %q; got:\n%s", tc.want, got)
			}
		})
	}
}

func TestParseHelpEnv(t *testing.T) {
	help := `  -grace duration
    	shutdown grace period (env SLAMMESH_GRACE) (default 10s)
  -log-level value
    	log level: debug, info, warn, error (env SLAMMESH_LOG_LEVEL, default info)
  -step-timeout value
    	per-step attempt deadlines (default localize_agents=1m; env SLAMMESH_STEP_TIMEOUT)`
	got := parseHelpEnv([]byte(help))
	for _, want := range []string{"SLAMMESH_GRACE", "SLAMMESH_LOG_LEVEL", "SLAMMESH_STEP_TIMEOUT"} {
		if !got[want] {
			t.Errorf("%s not found in %v", want, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %v, want exactly three names", got)
	}
}

func TestParseGoMemLimit(t *testing.T) {
	for in, want := range map[string]int64{"460MiB": 460 << 20, "1GiB": 1 << 30, "1024": 1024, "2048B": 2048} {
		if got, err := parseGoMemLimit(in); err != nil || got != want {
			t.Errorf("parseGoMemLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1Gi", "-5MiB", "lots"} {
		if _, err := parseGoMemLimit(in); err == nil {
			t.Errorf("parseGoMemLimit(%q) accepted", in)
		}
	}
}

func TestIsSlammesh(t *testing.T) {
	for img, want := range map[string]bool{
		"slammesh:dev": true, "registry.local:5000/team/slammesh:1.2": true, "slammesh@sha256:abc": true,
		"redis:7.4-alpine": false, "slammesh-tools:dev": false, "slammesh/other:dev": false,
	} {
		if got := isSlammesh(img); got != want {
			t.Errorf("isSlammesh(%q) = %v, want %v", img, got, want)
		}
	}
}
