package main

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// services are the slammesh subcommands a container may run; the step
// services are dialled by the orchestrator through the env variable named.
var services = map[string]string{
	"orchestrator": "",
	"mapping":      "SLAMMESH_MAPPING_ADDR",
	"localization": "SLAMMESH_LOCALIZATION_ADDR",
	"merge":        "SLAMMESH_MERGE_ADDR",
}

// shutdownTail is what a slammesh process may still spend after
// SLAMMESH_GRACE once SIGTERM arrived: the HTTP server's shutdown
// (httpShutdownTimeout, internal/grpcserver/server.go) and the telemetry
// flush (cmd/slammesh/node.go), 5 s each.
const shutdownTail = 10 * time.Second

// defaultGrace is SLAMMESH_GRACE when unset (cmd/slammesh/config.go).
const defaultGrace = 10 * time.Second

// runtimeEnv are read by the Go runtime of every binary, not by flags.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true, "GODEBUG": true}

// envNames is, per service, the environment variables its binary reads
// (from `slammesh <service> -h`).
type envNames map[string]map[string]bool

// slammeshConfig is what checkSlammesh needs besides the objects.
type slammeshConfig struct {
	names envNames
	// pending are variables accepted although the binary does not read
	// them yet (a feature in another branch); each use is reported.
	pending map[string]bool
	// complete: every Secret and ConfigMap a container refers to must be
	// in the build (a self-contained overlay); otherwise a missing Secret
	// is one the user brings, and is reported as such.
	complete bool
}

// report is what checkSlammesh found besides problems: Secrets brought by
// the user and pending variables in use.
type report struct {
	brings  []string
	pending []string
}

// checkSlammesh applies the checks of the containers that run the slammesh
// binary: the subcommand exists; every variable they are given is one the
// binary reads (or OTEL_*, the Go runtime's, or one only used as $(VAR) by
// another); $(VAR) refers to a variable defined before it; the listen
// addresses, container ports and gRPC probes agree; the pod's grace period
// covers the drain; liveness cannot kill a draining pod; GOMEMLIMIT is
// under the memory limit; Redis comes from a Secret; step services are
// autoscaled behind a headless Service, which the orchestrator dials as
// dns:///<service>.$(POD_NAMESPACE).svc.cluster.local:<port>, and which
// their NetworkPolicies let the orchestrator and a scraper reach.
func checkSlammesh(o *objects, cfg slammeshConfig) (problems, report) {
	var p problems
	var r report
	seenStep := map[string]bool{}
	for _, d := range o.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !isSlammesh(c.Image) {
				continue
			}
			where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
			if len(c.Args) == 0 {
				p.addf("%s: args must name the service (orchestrator, mapping, localization, merge)", where)
				continue
			}
			svc := c.Args[0]
			if _, ok := services[svc]; !ok {
				p.addf("%s: unknown service %q", where, svc)
				continue
			}
			if services[svc] != "" {
				seenStep[svc] = true
			}
			env := effectiveEnv(&p, &r, o, cfg, where, c)
			checkEnvNames(&p, &r, cfg, where, svc, env)
			checkPorts(&p, where, c, env)
			checkReadiness(&p, where, svc, c)
			checkShutdown(&p, where, d, c, env)
			checkRedis(&p, where, env)
			checkMemLimit(&p, where, c, env)
			if svc == "orchestrator" {
				checkStepAddrs(&p, o, where, env)
			} else {
				checkStepService(&p, o, d, svc)
				checkAccess(&p, o, d, c)
			}
		}
	}
	for svc, key := range services {
		if key != "" && !seenStep[svc] {
			p.addf("no Deployment runs the %s service", svc)
		}
	}
	return p, r
}

// isSlammesh reports whether image (after kustomize's images transform) is
// the slammesh image: its repository's last path element is "slammesh".
func isSlammesh(image string) bool {
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo[strings.LastIndex(repo, "/")+1:] == "slammesh"
}

// checkPorts: the listen addresses name the declared ports "grpc" and
// "http", and both probes are gRPC health checks on the gRPC port.
func checkPorts(p *problems, where string, c corev1.Container, env []envVar) {
	for _, pair := range [][2]string{{"SLAMMESH_GRPC_ADDR", "grpc"}, {"SLAMMESH_HTTP_ADDR", "http"}} {
		v, ok := lookup(env, pair[0])
		if !ok || !v.known {
			p.addf("%s: set %s (its port must match the container port %q)", where, pair[0], pair[1])
			continue
		}
		_, port, err := net.SplitHostPort(v.value)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n == 0 || namedPort(c, pair[1]) != int32(n) {
			p.addf("%s: %s=%q does not listen on the container port named %q", where, pair[0], v.value, pair[1])
		}
	}
	grpcPort := namedPort(c, "grpc")
	for name, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if pr != nil && (pr.GRPC == nil || pr.GRPC.Port != grpcPort) {
			p.addf("%s: %s must be a grpc probe (grpc.health.v1) on the gRPC port %d", where, name, grpcPort)
		}
	}
	// A service waits for a loading Redis before it serves (redisLoadWait
	// in cmd/slammesh): liveness must not kill it meanwhile.
	switch pr := c.StartupProbe; {
	case pr == nil:
		p.addf("%s has no startupProbe: its livenessProbe would restart it while it waits up to %v for a loading Redis", where, redisLoadWait)
	case probeWindow(pr) < redisLoadWait:
		p.addf("%s: startupProbe allows %v (periodSeconds × failureThreshold), less than the %v a service waits for a loading Redis", where, probeWindow(pr), redisLoadWait)
	}
	if pr := c.LivenessProbe; pr != nil && pr.GRPC != nil && probedService(pr) != "" {
		p.addf("%s: livenessProbe must ask for the overall health (no service), not %q: a dependency's outage must not restart the process", where, probedService(pr))
	}
}

// redisLoadWait is how long a service waits at its start for a Redis that
// is loading its dataset (cmd/slammesh's redisLoadWait).
const redisLoadWait = 10 * time.Minute

// probeWindow is how long a probe may fail before it counts as failed:
// periodSeconds × failureThreshold, with Kubernetes' defaults (10 s, 3).
func probeWindow(pr *corev1.Probe) time.Duration {
	period, threshold := pr.PeriodSeconds, pr.FailureThreshold
	if period == 0 {
		period = 10
	}
	if threshold == 0 {
		threshold = 3
	}
	return time.Duration(period) * time.Duration(threshold) * time.Second
}

// readinessService is grpcserver.ReadinessService, the health service name
// of a replica that serves and reaches Redis.
const readinessService = "slammesh.readiness"

// checkReadiness: the orchestrator's readiness asks for readinessService,
// so that clients' Service leaves out a replica that cannot reach Redis. A
// step service's asks for the process alone: the orchestrator finds step
// replicas through their headless Service's DNS, which a Redis outage would
// otherwise empty of every replica at once, and gRPC's resolver backs off
// for up to minutes before it asks again once Redis is back.
func checkReadiness(p *problems, where, svc string, c corev1.Container) {
	pr := c.ReadinessProbe
	if pr == nil || pr.GRPC == nil {
		return
	}
	switch got := probedService(pr); {
	case svc == "orchestrator" && got != readinessService:
		p.addf("%s: readinessProbe must ask for the health service %q (it also needs Redis)", where, readinessService)
	case svc != "orchestrator" && got != "":
		p.addf("%s: readinessProbe must ask for the overall health (no service), not %q: a Redis outage would empty the headless Service the orchestrator resolves", where, got)
	}
}

// probedService is the health service a gRPC probe asks for ("": overall).
func probedService(pr *corev1.Probe) string {
	if pr.GRPC.Service == nil {
		return ""
	}
	return *pr.GRPC.Service
}

// checkShutdown: SIGTERM comes after the preStop hook, then the process
// drains for SLAMMESH_GRACE and stops within shutdownTail; the kubelet must
// not SIGKILL it before, and liveness (NOT_SERVING from the drain on) must
// not fail it first.
func checkShutdown(p *problems, where string, d *appsv1.Deployment, c corev1.Container, env []envVar) {
	grace := defaultGrace
	if v, ok := lookup(env, "SLAMMESH_GRACE"); ok {
		g, err := time.ParseDuration(v.value)
		if !v.known || err != nil {
			p.addf("%s: SLAMMESH_GRACE=%q is not a duration", where, v.value)
			return
		}
		grace = g
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		h := c.Lifecycle.PreStop
		if h.Sleep == nil {
			p.addf("%s: preStop must be a sleep (the image has no shell)", where)
		} else {
			preStop = time.Duration(h.Sleep.Seconds) * time.Second
		}
	}
	tgps := 30 * time.Second // the Kubernetes default
	if s := d.Spec.Template.Spec.TerminationGracePeriodSeconds; s != nil {
		tgps = time.Duration(*s) * time.Second
	}
	if need := preStop + grace + shutdownTail; tgps <= need {
		p.addf("%s: terminationGracePeriodSeconds %v must exceed preStop %v + SLAMMESH_GRACE %v + shutdown %v = %v",
			where, tgps, preStop, grace, shutdownTail, need)
	}
	if lp := c.LivenessProbe; lp != nil {
		// Kubernetes defaults: every 10 s, 3 failures.
		period, threshold := lp.PeriodSeconds, lp.FailureThreshold
		if period == 0 {
			period = 10
		}
		if threshold == 0 {
			threshold = 3
		}
		if window := time.Duration(threshold*period) * time.Second; window <= grace+shutdownTail {
			p.addf("%s: livenessProbe fails after %v of NOT_SERVING, within the drain (SLAMMESH_GRACE %v + %v)", where, window, grace, shutdownTail)
		}
	}
}

// checkRedis: the Redis URL (which may hold a password) comes from a Secret.
func checkRedis(p *problems, where string, env []envVar) {
	found := false
	for _, name := range []string{"REDIS_URL", "REDIS_CLUSTER_URL"} {
		v, ok := lookup(env, name)
		if !ok {
			continue
		}
		found = true
		if v.src == nil || v.src.ValueFrom == nil || v.src.ValueFrom.SecretKeyRef == nil {
			p.addf("%s: %s must come from a Secret (secretKeyRef): it may hold a password", where, name)
		}
	}
	if !found {
		p.addf("%s: no REDIS_URL or REDIS_CLUSTER_URL: the binary would dial localhost:6379", where)
	}
}

// checkMemLimit: GOMEMLIMIT, when set, is below the container's memory
// limit, so the GC tightens before the kernel kills the process.
func checkMemLimit(p *problems, where string, c corev1.Container, env []envVar) {
	v, ok := lookup(env, "GOMEMLIMIT")
	if !ok {
		return
	}
	n, err := parseGoMemLimit(v.value)
	if !v.known || err != nil {
		p.addf("%s: GOMEMLIMIT=%q: %v", where, v.value, err)
		return
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && n >= lim.Value() {
		p.addf("%s: GOMEMLIMIT %s is not below the memory limit %s", where, v.value, lim.String())
	}
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does: a byte count
// with an optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive byte count such as 460MiB")
	}
	return n * mult, nil
}

// stepAddr is the only form the orchestrator's step addresses take here.
var stepAddr = regexp.MustCompile(`^dns:///([a-z0-9-]+)\.\$\(POD_NAMESPACE\)\.svc\.cluster\.local:([0-9]+)$`)

// checkStepAddrs: each step address is dns:/// on a headless Service of
// this build that selects the pods running that step, at the Service port
// that leads to their gRPC port; POD_NAMESPACE is the pod's namespace.
func checkStepAddrs(p *problems, o *objects, where string, env []envVar) {
	ns, ok := lookup(env, "POD_NAMESPACE")
	if !ok || ns.src == nil || ns.src.ValueFrom == nil || ns.src.ValueFrom.FieldRef == nil || ns.src.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		p.addf("%s: POD_NAMESPACE must come from fieldRef metadata.namespace", where)
	}
	for svc, key := range services {
		if key == "" {
			continue
		}
		v, ok := lookup(env, key)
		if !ok || v.src == nil {
			p.addf("%s: set %s", where, key)
			continue
		}
		m := stepAddr.FindStringSubmatch(v.src.Value)
		if m == nil {
			p.addf("%s: %s=%q: want dns:///<service>.$(POD_NAMESPACE).svc.cluster.local:<port> (a headless Service, balanced per call)", where, key, v.src.Value)
			continue
		}
		port, _ := strconv.Atoi(m[2])
		s := serviceNamed(o, m[1])
		if s == nil {
			p.addf("%s: %s names Service %s, which is not in the build", where, key, m[1])
			continue
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			p.addf("%s: %s: Service %s must be headless (clusterIP: None) for per-call round_robin", where, key, s.Name)
		}
		if !serviceReaches(o, s, svc, int32(port)) {
			p.addf("%s: %s: Service %s port %d does not lead to the gRPC port of the %s pods", where, key, s.Name, port, svc)
		}
	}
}

// serviceReaches reports whether Service s, at port, selects pods running
// slammesh service svc and targets their "grpc" container port.
func serviceReaches(o *objects, s *corev1.Service, svc string, port int32) bool {
	for _, sp := range s.Spec.Ports {
		if sp.Port != port {
			continue
		}
		for _, d := range o.deployments {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if isSlammesh(c.Image) && len(c.Args) > 0 && c.Args[0] == svc {
					t := sp.TargetPort
					if (t.Type == intstr.String && t.StrVal == "grpc") || (t.Type == intstr.Int && t.IntVal == namedPort(c, "grpc")) {
						return true
					}
				}
			}
		}
	}
	return false
}

// checkStepService: a step service is autoscaled and behind a headless
// Service.
func checkStepService(p *problems, o *objects, d *appsv1.Deployment, svc string) {
	hpa := false
	for _, h := range o.hpas {
		hpa = hpa || (h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name)
	}
	if !hpa {
		p.addf("Deployment %s (%s) has no HorizontalPodAutoscaler", d.Name, svc)
	}
	headless := false
	for _, s := range o.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone && len(s.Spec.Selector) > 0 &&
			labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			headless = true
		}
	}
	if !headless {
		p.addf("Deployment %s (%s) has no headless Service", d.Name, svc)
	}
}

func namedPort(c corev1.Container, name string) int32 {
	for _, cp := range c.Ports {
		if cp.Name == name {
			return cp.ContainerPort
		}
	}
	return 0
}

func serviceNamed(o *objects, name string) *corev1.Service {
	for _, s := range o.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
