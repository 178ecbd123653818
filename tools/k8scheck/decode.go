package main

import (
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// objects is the output of one kustomize build, decoded into the
// Kubernetes API types. Every kind the manifests may hold has a slice
// here; any other kind is an error, so nothing leaves the build unchecked.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	serviceAccounts []*corev1.ServiceAccount
	namespaces      []*corev1.Namespace
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
}

// build runs kustomize (the library `kustomize build` is made of) on the
// kustomization in dir of fsys and strictly decodes every object it emits:
// an unknown or misspelt field, a field of the wrong type, or a duplicate
// field is an error naming the object.
func build(fsys filesys.FileSystem, dir string) (*objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out := &objects{}
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		gvk := r.GetGvk()
		target, add := out.slot(gvk.ApiVersion(), gvk.Kind)
		if target == nil {
			return nil, fmt.Errorf("%s: kind %s %s is not one the checks know; add it to objects", r.CurId(), gvk.ApiVersion(), gvk.Kind)
		}
		strict, err := kjson.UnmarshalStrict(data, target)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s: strict decoding into %s %s: %v", r.CurId(), gvk.ApiVersion(), gvk.Kind, strict)
		}
		add()
	}
	return out, nil
}

// slot returns a new object of the API type of apiVersion and kind, and a
// func that appends it to o once decoded; nil for kinds o does not hold.
func (o *objects) slot(apiVersion, kind string) (any, func()) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		v := &appsv1.Deployment{}
		return v, func() { o.deployments = append(o.deployments, v) }
	case "v1 Service":
		v := &corev1.Service{}
		return v, func() { o.services = append(o.services, v) }
	case "v1 ConfigMap":
		v := &corev1.ConfigMap{}
		return v, func() { o.configMaps = append(o.configMaps, v) }
	case "v1 Secret":
		v := &corev1.Secret{}
		return v, func() { o.secrets = append(o.secrets, v) }
	case "v1 ServiceAccount":
		v := &corev1.ServiceAccount{}
		return v, func() { o.serviceAccounts = append(o.serviceAccounts, v) }
	case "v1 Namespace":
		v := &corev1.Namespace{}
		return v, func() { o.namespaces = append(o.namespaces, v) }
	case "policy/v1 PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		return v, func() { o.pdbs = append(o.pdbs, v) }
	case "autoscaling/v2 HorizontalPodAutoscaler":
		v := &autoscalingv2.HorizontalPodAutoscaler{}
		return v, func() { o.hpas = append(o.hpas, v) }
	case "networking.k8s.io/v1 NetworkPolicy":
		v := &networkingv1.NetworkPolicy{}
		return v, func() { o.netpols = append(o.netpols, v) }
	}
	return nil, nil
}

// count summarises o by kind, e.g. "4 Deployment, 5 Service", for the report.
func (o *objects) count() string {
	n := map[string]int{
		"Deployment": len(o.deployments), "Service": len(o.services), "ConfigMap": len(o.configMaps),
		"Secret": len(o.secrets), "ServiceAccount": len(o.serviceAccounts), "Namespace": len(o.namespaces),
		"PodDisruptionBudget": len(o.pdbs), "HorizontalPodAutoscaler": len(o.hpas), "NetworkPolicy": len(o.netpols),
	}
	kinds := make([]string, 0, len(n))
	for k, v := range n {
		if v > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	s := ""
	for i, k := range kinds {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", n[k], k)
	}
	return s
}
