package main

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// problems collects what the checks find; one entry per finding, each
// naming the object.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// selects reports whether sel (a Deployment's, PDB's or NetworkPolicy's
// label selector) matches set. A nil or empty selector matches nothing
// here: every selector in these manifests must name its pods.
func selects(sel *metav1.LabelSelector, set map[string]string) (bool, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(set)), nil
}

// checkWorkloads applies the checks every Deployment must pass, whatever
// it runs: its selector matches its pods; every container has readiness
// and liveness probes on ports it declares, CPU and memory requests and
// limits (requests ≤ limits), and runs as non-root on a read-only root
// file system without privilege escalation or capabilities; exactly one
// PodDisruptionBudget covers it and lets a node drain proceed; a Service
// selects it, and every Service, PDB, HPA and NetworkPolicy points at a
// Deployment and at ports that exist.
func checkWorkloads(o *objects) problems {
	var p problems
	for _, d := range o.deployments {
		checkDeployment(&p, o, d)
	}
	for _, s := range o.services {
		checkService(&p, o, s)
	}
	for _, b := range o.pdbs {
		if len(deploymentsSelected(o, b.Spec.Selector)) == 0 {
			p.addf("PodDisruptionBudget %s selects no Deployment", b.Name)
		}
	}
	for _, n := range o.netpols {
		ds := deploymentsSelected(o, &n.Spec.PodSelector)
		if len(ds) == 0 {
			p.addf("NetworkPolicy %s selects no Deployment", n.Name)
		}
		for _, d := range ds {
			for _, rule := range n.Spec.Ingress {
				for _, port := range rule.Ports {
					if port.Port != nil && !podHasPort(d.Spec.Template.Spec, *port.Port) {
						p.addf("NetworkPolicy %s: port %s is not a container port of Deployment %s", n.Name, port.Port.String(), d.Name)
					}
				}
				for _, peer := range rule.From {
					if peer.PodSelector != nil && len(deploymentsSelected(o, peer.PodSelector)) == 0 {
						p.addf("NetworkPolicy %s: ingress from %s matches no Deployment's pods", n.Name, metav1.FormatLabelSelector(peer.PodSelector))
					}
				}
			}
		}
	}
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		d := deploymentNamed(o, ref.Name)
		switch {
		case ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil:
			p.addf("HorizontalPodAutoscaler %s scales %s %s %s, which is not a Deployment of this build", h.Name, ref.APIVersion, ref.Kind, ref.Name)
		case d.Spec.Replicas != nil:
			p.addf("Deployment %s sets replicas while HorizontalPodAutoscaler %s owns the count (every apply would reset it)", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			p.addf("HorizontalPodAutoscaler %s: want 1 ≤ minReplicas ≤ maxReplicas", h.Name)
		}
		if len(h.Spec.Metrics) == 0 {
			p.addf("HorizontalPodAutoscaler %s has no metrics", h.Name)
		}
	}
	return p
}

func checkDeployment(p *problems, o *objects, d *appsv1.Deployment) {
	tmpl := d.Spec.Template
	if ok, err := selects(d.Spec.Selector, tmpl.Labels); err != nil || !ok {
		p.addf("Deployment %s: selector %s does not match its pod labels %v", d.Name, metav1.FormatLabelSelector(d.Spec.Selector), tmpl.Labels)
	}
	for _, e := range validation.IsDNS1123Label(d.Name) {
		p.addf("Deployment %s: name: %s", d.Name, e)
	}
	pod := tmpl.Spec
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		p.addf("Deployment %s: pod securityContext.runAsNonRoot must be true", d.Name)
	}
	if len(pod.Containers) == 0 {
		p.addf("Deployment %s has no containers", d.Name)
	}
	for _, c := range pod.Containers {
		checkContainer(p, d.Name, pod, c)
	}

	var pdbs []string
	for _, b := range o.pdbs {
		if ok, _ := selects(b.Spec.Selector, tmpl.Labels); ok {
			pdbs = append(pdbs, b.Name)
			if !pdbAllowsEviction(b.Spec.MaxUnavailable, b.Spec.MinAvailable) {
				p.addf("PodDisruptionBudget %s: use maxUnavailable ≥ 1 (minAvailable would block every node drain of a single-replica %s)", b.Name, d.Name)
			}
		}
	}
	if len(pdbs) != 1 {
		p.addf("Deployment %s: want exactly one PodDisruptionBudget selecting it, have %v", d.Name, pdbs)
	}
	found := false
	for _, s := range o.services {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(tmpl.Labels)) {
			found = true
		}
	}
	if !found {
		p.addf("Deployment %s: no Service selects its pods", d.Name)
	}
}

// pdbAllowsEviction reports whether a budget can let a pod go whatever the
// replica count: a positive maxUnavailable. minAvailable: 1 on one replica
// (the dev overlay) would block node drains forever.
func pdbAllowsEviction(maxUnavailable, minAvailable *intstr.IntOrString) bool {
	if minAvailable != nil || maxUnavailable == nil {
		return false
	}
	if maxUnavailable.Type == intstr.Int {
		return maxUnavailable.IntVal >= 1
	}
	return maxUnavailable.StrVal != "0%"
}

func checkContainer(p *problems, dep string, pod corev1.PodSpec, c corev1.Container) {
	where := fmt.Sprintf("Deployment %s container %s", dep, c.Name)
	for _, port := range c.Ports {
		if port.Name == "" {
			p.addf("%s: port %d has no name (Services and probes refer to ports by name)", where, port.ContainerPort)
		}
		for _, e := range validation.IsValidPortName(port.Name) {
			p.addf("%s: port name %q: %s", where, port.Name, e)
		}
	}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			p.addf("%s: env %q: %s", where, e.Name, msg)
		}
	}
	for name, probe := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if probe == nil {
			p.addf("%s has no %s", where, name)
			continue
		}
		for _, port := range probePorts(probe) {
			if !containerHasPort(c, port) {
				p.addf("%s: %s port %s is not one of its container ports", where, name, port.String())
			}
		}
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		rq, okR := req[r]
		l, okL := lim[r]
		switch {
		case !okR || !okL:
			p.addf("%s: want both a %s request and a %s limit", where, r, r)
		case rq.Cmp(l) > 0:
			p.addf("%s: %s request %s exceeds its limit %s", where, r, rq.String(), l.String())
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		p.addf("%s has no securityContext", where)
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			p.addf("%s: securityContext.readOnlyRootFilesystem must be true", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			p.addf("%s: securityContext.allowPrivilegeEscalation must be false", where)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
			p.addf("%s: securityContext.capabilities must drop ALL and add none", where)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			p.addf("%s runs as root (runAsUser 0)", where)
		}
	}
	for _, m := range c.VolumeMounts {
		found := false
		for _, v := range pod.Volumes {
			found = found || v.Name == m.Name
		}
		if !found {
			p.addf("%s mounts volume %s, which the pod does not declare", where, m.Name)
		}
	}
}

// probePorts returns the ports a probe connects to.
func probePorts(pr *corev1.Probe) []intstr.IntOrString {
	switch h := pr.ProbeHandler; {
	case h.GRPC != nil:
		return []intstr.IntOrString{intstr.FromInt32(h.GRPC.Port)}
	case h.HTTPGet != nil:
		return []intstr.IntOrString{h.HTTPGet.Port}
	case h.TCPSocket != nil:
		return []intstr.IntOrString{h.TCPSocket.Port}
	}
	return nil
}

// containerHasPort reports whether port (a number or a name) is one of c's
// declared ports.
func containerHasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) || (port.Type == intstr.String && cp.Name == port.StrVal) {
			return true
		}
	}
	return false
}

func podHasPort(pod corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range pod.Containers {
		if containerHasPort(c, port) {
			return true
		}
	}
	return false
}

func checkService(p *problems, o *objects, s *corev1.Service) {
	if len(s.Spec.Selector) == 0 {
		p.addf("Service %s has no selector", s.Name)
		return
	}
	var ds []*appsv1.Deployment
	for _, d := range o.deployments {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		p.addf("Service %s selects no Deployment's pods (selector %v)", s.Name, s.Spec.Selector)
	}
	for _, d := range ds {
		for _, port := range s.Spec.Ports {
			target := port.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(port.Port)
			}
			if !podHasPort(d.Spec.Template.Spec, target) {
				p.addf("Service %s: targetPort %s is not a container port of Deployment %s", s.Name, target.String(), d.Name)
			}
		}
	}
}

// deploymentsSelected returns the Deployments whose pods sel matches.
func deploymentsSelected(o *objects, sel *metav1.LabelSelector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range o.deployments {
		if ok, _ := selects(sel, d.Spec.Template.Labels); ok {
			out = append(out, d)
		}
	}
	return out
}

func deploymentNamed(o *objects, name string) *appsv1.Deployment {
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}
