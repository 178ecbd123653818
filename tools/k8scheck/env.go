package main

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// envVar is one variable of a container's effective environment.
type envVar struct {
	name, value string
	// known: value is what the process sees (a stand-in for a fieldRef),
	// false for a Secret's value or a missing optional reference.
	known bool
	src   *corev1.EnvVar // nil for variables from envFrom
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// effectiveEnv resolves the environment of c as the kubelet builds it:
// envFrom first, then env in order (later wins), $(VAR) expanded from the
// variables defined before.
func effectiveEnv(p *problems, r *report, o *objects, cfg slammeshConfig, where string, c corev1.Container) []envVar {
	var env []envVar
	set := func(v envVar) {
		for i := range env {
			if env[i].name == v.name {
				env[i] = v
				return
			}
		}
		env = append(env, v)
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := configMapNamed(o, from.ConfigMapRef.Name)
			if cm == nil {
				if from.ConfigMapRef.Optional == nil || !*from.ConfigMapRef.Optional {
					p.addf("%s: envFrom ConfigMap %s is not in the build", where, from.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				set(envVar{name: from.Prefix + k, value: v, known: true})
			}
		case from.SecretRef != nil:
			p.addf("%s: envFrom Secret %s: name the variables one by one (secretKeyRef), so each is checked", where, from.SecretRef.Name)
		}
	}
	for i := range c.Env {
		e := &c.Env[i]
		v := envVar{name: e.Name, src: e}
		switch vf := e.ValueFrom; {
		case vf == nil:
			v.value, v.known = expand(p, where, e.Name, e.Value, env), true
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			var data map[string]string
			if cm := configMapNamed(o, ref.Name); cm != nil {
				data = cm.Data
			}
			if val, ok := data[ref.Key]; ok {
				v.value, v.known = val, true
			} else if ref.Optional == nil || !*ref.Optional {
				p.addf("%s: env %s: ConfigMap %s key %s is not in the build", where, e.Name, ref.Name, ref.Key)
			}
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s := secretNamed(o, ref.Name)
			switch {
			case s != nil:
				_, inData := s.Data[ref.Key]
				_, inString := s.StringData[ref.Key]
				if !inData && !inString {
					p.addf("%s: env %s: Secret %s has no key %s", where, e.Name, ref.Name, ref.Key)
				}
			case cfg.complete:
				p.addf("%s: env %s: Secret %s is not in the build", where, e.Name, ref.Name)
			default:
				r.brings = appendOnce(r.brings, fmt.Sprintf("Secret %s key %s (%s)", ref.Name, ref.Key, e.Name))
			}
		case vf.FieldRef != nil:
			// The pod's own fields, known at run time only: a stand-in of
			// the same shape, so that values built from them parse.
			v.value, v.known = fieldStandIn(vf.FieldRef.FieldPath), true
		default:
			p.addf("%s: env %s: unsupported valueFrom", where, e.Name)
		}
		set(v)
	}
	return env
}

// expand replaces $(VAR) in value by the variables defined before (the
// kubelet leaves an undefined reference as it is, which is never meant).
func expand(p *problems, where, name, value string, before []envVar) string {
	return varRef.ReplaceAllStringFunc(value, func(m string) string {
		ref := varRef.FindStringSubmatch(m)[1]
		for _, v := range before {
			if v.name == ref {
				if v.known {
					return v.value
				}
				return m // a Secret: kept symbolic
			}
		}
		p.addf("%s: env %s refers to $(%s), which is not defined before it", where, name, ref)
		return m
	})
}

func checkEnvNames(p *problems, r *report, cfg slammeshConfig, where, svc string, env []envVar) {
	referenced := map[string]bool{}
	for _, v := range env {
		if v.src != nil {
			for _, m := range varRef.FindAllStringSubmatch(v.src.Value, -1) {
				referenced[m[1]] = true
			}
		}
	}
	for _, v := range env {
		switch {
		case cfg.names[svc][v.name], strings.HasPrefix(v.name, "OTEL_"), runtimeEnv[v.name], referenced[v.name]:
		case cfg.pending[v.name]:
			r.pending = appendOnce(r.pending, fmt.Sprintf("%s (%s)", v.name, svc))
		default:
			p.addf("%s: env %s is not read by `slammesh %s` (see slammesh %s -h)", where, v.name, svc, svc)
		}
	}
}

// fieldStandIn is the value checks use for a fieldRef: a valid DNS label
// for names and namespaces, an address for IPs.
func fieldStandIn(path string) string {
	if strings.HasSuffix(path, "IP") || strings.HasSuffix(path, "IPs") {
		return "10.0.0.1"
	}
	return "k8scheck"
}

func lookup(env []envVar, name string) (envVar, bool) {
	for _, v := range env {
		if v.name == name {
			return v, true
		}
	}
	return envVar{}, false
}

func configMapNamed(o *objects, name string) *corev1.ConfigMap {
	for _, c := range o.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func secretNamed(o *objects, name string) *corev1.Secret {
	for _, s := range o.secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}
