package main

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// checkAccess: the NetworkPolicies that isolate a step service's pods still
// let the orchestrator's pods reach its "grpc" port (or every call fails
// with UNAVAILABLE, which only a cluster would show) and let a scraper in
// another namespace reach its "http" port (/metrics); and a
// prometheus.io/port annotation names the "http" port. Pods no Ingress
// policy selects accept everything, which passes.
func checkAccess(p *problems, o *objects, d *appsv1.Deployment, c corev1.Container) {
	where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
	httpPort := namedPort(c, "http")
	if a, ok := d.Spec.Template.Annotations["prometheus.io/port"]; ok && a != strconv.Itoa(int(httpPort)) {
		p.addf("%s: annotation prometheus.io/port %s is not its http port %d", where, a, httpPort)
	}
	var rules []networkingv1.NetworkPolicyIngressRule
	isolated := false
	for _, n := range o.netpols {
		if ok, _ := selects(&n.Spec.PodSelector, d.Spec.Template.Labels); !ok || !ingressPolicy(n) {
			continue
		}
		isolated = true
		rules = append(rules, n.Spec.Ingress...)
	}
	if !isolated {
		return
	}
	var orchestrators []map[string]string
	for _, od := range o.deployments {
		for _, oc := range od.Spec.Template.Spec.Containers {
			if isSlammesh(oc.Image) && len(oc.Args) > 0 && oc.Args[0] == "orchestrator" {
				orchestrators = append(orchestrators, od.Spec.Template.Labels)
			}
		}
	}
	reached, scraped := false, false
	for _, r := range rules {
		if admitsPort(r, c, "grpc") {
			for _, l := range orchestrators {
				reached = reached || admitsPod(r, l)
			}
		}
		scraped = scraped || (admitsPort(r, c, "http") && admitsOtherNamespaces(r))
	}
	if !reached {
		p.addf("%s: NetworkPolicy lets no orchestrator pod reach Deployment %s on its grpc port", where, d.Name)
	}
	if !scraped {
		p.addf("%s: NetworkPolicy lets no scraper reach Deployment %s on its http port (/metrics)", where, d.Name)
	}
}

// ingressPolicy reports whether n restricts ingress: policyTypes lists
// Ingress, or is empty (the API server then implies Ingress).
func ingressPolicy(n *networkingv1.NetworkPolicy) bool {
	if len(n.Spec.PolicyTypes) == 0 {
		return true
	}
	for _, t := range n.Spec.PolicyTypes {
		if t == networkingv1.PolicyTypeIngress {
			return true
		}
	}
	return false
}

// admitsPort reports whether rule r admits TCP to c's port named name: no
// ports listed, a port without a number, the name, or a number (range)
// covering it.
func admitsPort(r networkingv1.NetworkPolicyIngressRule, c corev1.Container, name string) bool {
	if len(r.Ports) == 0 {
		return true
	}
	num := namedPort(c, name)
	for _, pp := range r.Ports {
		if pp.Protocol != nil && *pp.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case pp.Port == nil:
			return true
		case pp.Port.Type == intstr.String && pp.Port.StrVal == name:
			return true
		case pp.Port.Type == intstr.Int && pp.Port.IntVal == num:
			return true
		case pp.Port.Type == intstr.Int && pp.EndPort != nil && pp.Port.IntVal <= num && num <= *pp.EndPort:
			return true
		}
	}
	return false
}

// admitsPod reports whether rule r admits a pod labelled l in the policy's
// own namespace (the build's): no peers listed, or a pod selector that
// matches l, alone or with a namespace selector that matches every
// namespace.
func admitsPod(r networkingv1.NetworkPolicyIngressRule, l map[string]string) bool {
	if len(r.From) == 0 {
		return true
	}
	for _, peer := range r.From {
		if peer.IPBlock != nil || peer.PodSelector == nil {
			continue
		}
		if ns := peer.NamespaceSelector; ns != nil && (len(ns.MatchLabels) > 0 || len(ns.MatchExpressions) > 0) {
			continue
		}
		if ok, _ := selects(peer.PodSelector, l); ok {
			return true
		}
	}
	return false
}

// admitsOtherNamespaces reports whether rule r can admit a pod of another
// namespace (where Prometheus usually runs): no peers listed, or a peer
// with a namespace selector or an IP block. A bare pod selector admits the
// policy's namespace only.
func admitsOtherNamespaces(r networkingv1.NetworkPolicyIngressRule) bool {
	if len(r.From) == 0 {
		return true
	}
	for _, peer := range r.From {
		if peer.NamespaceSelector != nil || peer.IPBlock != nil {
			return true
		}
	}
	return false
}
