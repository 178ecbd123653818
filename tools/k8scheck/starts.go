package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// closedRedis is a loopback address where nothing listens (port 1,
// tcpmux, unused on any machine here): the started binary parses its
// whole configuration, then fails on Redis before it binds a port.
const closedRedis = "redis://127.0.0.1:1/0"

// checkStarts starts every slammesh container of o as the kubelet would —
// the binary at bin, the container's args, exactly its environment (fieldRefs
// by stand-ins, the Redis URL by closedRedis, collectors by loopback, and
// no wait for Redis) — and expects it to get as
// far as dialling Redis: a value the binary cannot parse, or a
// configuration it refuses (plaintext on a non-loopback address without
// SLAMMESH_INSECURE, a lease TTL below its minimum, …), fails it with a
// usage error first, which is what a pod would crash-loop on.
func checkStarts(ctx context.Context, bin string, o *objects, cfg slammeshConfig) problems {
	type run struct {
		where string
		args  []string
		env   []string
	}
	var runs []run
	var p problems
	for _, d := range o.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !isSlammesh(c.Image) || len(c.Args) == 0 {
				continue
			}
			where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
			var scratch problems
			var env []string
			for _, v := range effectiveEnv(&scratch, &report{}, o, cfg, where, c) {
				switch {
				case v.name == "REDIS_URL" || v.name == "REDIS_CLUSTER_URL":
					if cfg.pending[v.name] && !cfg.names[c.Args[0]][v.name] {
						// Not read yet: the binary would dial its default.
						env = append(env, "REDIS_URL="+closedRedis)
						continue
					}
					env = append(env, v.name+"="+closedRedis)
				case otlpEndpoint[v.name] && v.known:
					e, ok := loopbackEndpoint(v.value)
					if !ok {
						p.addf("%s: %s=%q: want a URL with a scheme and a host, e.g. http://collector:4317", where, v.name, v.value)
					}
					env = append(env, v.name+"="+e)
				case v.known:
					env = append(env, v.name+"="+v.value)
				}
			}
			// A service waits for an unreachable Redis (up to
			// SLAMMESH_REDIS_WAIT, 2 minutes): not waiting, it stops on the
			// closed port at once, which is what this check looks for.
			env = append(env, "SLAMMESH_REDIS_WAIT=0")
			runs = append(runs, run{where: where, args: c.Args, env: env})
		}
	}
	results := make([]string, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Go(func() { results[i] = startOnce(ctx, bin, r.args, r.env) })
	}
	wg.Wait()
	for i, r := range runs {
		if results[i] != "" {
			p.addf("%s: `slammesh %s` with its environment %s", r.where, strings.Join(r.args, " "), results[i])
		}
	}
	return p
}

// otlpEndpoint are the variables that name a collector: the start check
// points them at loopback, so that it sends nothing (not even a DNS query)
// off the machine.
var otlpEndpoint = map[string]bool{
	"OTEL_EXPORTER_OTLP_ENDPOINT":         true,
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  true,
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": true,
}

// loopbackEndpoint keeps the scheme and path of endpoint (so the exporter
// still parses what the manifests give) and replaces its host by the closed
// loopback port; ok is false when endpoint is no URL with a scheme and a
// host, and the closed port is returned alone.
func loopbackEndpoint(endpoint string) (_ string, ok bool) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "http://127.0.0.1:1", false
	}
	u.Host = "127.0.0.1:1"
	return u.String(), true
}

// startOnce runs bin once and returns "" when it stopped on Redis, else
// what went wrong.
func startOnce(ctx context.Context, bin string, args, env []string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Sprintf("did not stop on Redis as expected (err %v): %s", err, lastLine(out.String()))
	}
	// Exit 1 having dialled the closed port: every check of the
	// configuration passed (they run before Redis is dialled).
	last := lastLine(out.String())
	if exit.ExitCode() == 1 && strings.Contains(out.String(), strings.TrimPrefix(strings.TrimSuffix(closedRedis, "/0"), "redis://")) {
		return ""
	}
	return fmt.Sprintf("fails before reaching Redis (exit %d): %s", exit.ExitCode(), last)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
