package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// opsConfig is the orchestrator's retry budgets, attempt deadlines and
// watcher cap (docs/architecture.md, "Saga error classes" and "Watchers").
type opsConfig struct {
	retryBudget     time.Duration
	compRetryBudget time.Duration
	attemptTimeout  time.Duration
	stepTimeouts    stepTimeouts
	maxWatchers     int
}

// stepTimeouts is the value of --step-timeout: step=duration pairs,
// comma-separated, e.g. "localize_agents=30s,merge_maps=20s".
type stepTimeouts map[string]time.Duration

// defaultStepTimeouts give the SLAM steps room for real-size data: a global
// search (an agent sent without initial guess) over a 400 k-cell map takes
// seconds of CPU, which a loaded machine multiplies, so 10 s would retry it
// until the mission compensates. Allocation keeps --attempt-timeout.
// --step-timeout entries override these per step.
var defaultStepTimeouts = map[string]time.Duration{
	"localize_agents": time.Minute,
	"merge_maps":      time.Minute,
}

// missionSteps are the steps --step-timeout may name.
var missionSteps = []string{"allocate_map", "localize_agents", "merge_maps"}

func (s *stepTimeouts) String() string {
	parts := make([]string, 0, len(*s))
	for k, v := range *s {
		parts = append(parts, k+"="+v.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (s *stepTimeouts) Set(v string) error {
	out := stepTimeouts{}
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		step, dur, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q: want step=duration, e.g. localize_agents=30s", part)
		}
		if !slices.Contains(missionSteps, step) {
			return fmt.Errorf("%q: unknown step %q (steps: %s)", part, step, strings.Join(missionSteps, ", "))
		}
		d, err := time.ParseDuration(dur)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q: want a positive duration such as 30s", part)
		}
		out[step] = d
	}
	*s = out
	return nil
}

// addOps registers the orchestrator's retry, deadline and watcher flags.
func addOps(e *envFlags, c *opsConfig) {
	e.duration(&c.retryBudget, "retry-budget", "SLAMMESH_RETRY_BUDGET", saga.DefaultRetryBudget,
		"how long a step is retried after transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) before the mission compensates")
	e.duration(&c.compRetryBudget, "compensation-retry-budget", "SLAMMESH_COMPENSATION_RETRY_BUDGET", saga.DefaultCompensationRetryBudget,
		"how long a compensation is retried after transient errors before the mission is FAILED")
	e.duration(&c.attemptTimeout, "attempt-timeout", "SLAMMESH_ATTEMPT_TIMEOUT", saga.DefaultAttemptTimeout,
		"deadline of one step or compensation attempt (see --step-timeout)")
	const key = "SLAMMESH_STEP_TIMEOUT"
	if v, ok := e.env(key); ok {
		if err := c.stepTimeouts.Set(v); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	e.fs.Var(&c.stepTimeouts, "step-timeout",
		fmt.Sprintf("per-step attempt deadlines overriding --attempt-timeout, e.g. localize_agents=30s,merge_maps=20s (default localize_agents=1m,merge_maps=1m; env %s)", key))
	e.int(&c.maxWatchers, "max-watchers", "SLAMMESH_MAX_WATCHERS", progress.DefaultMaxWatchers,
		"WatchMission calls and waits served at once; past it RESOURCE_EXHAUSTED")
}

func (c opsConfig) validate() error {
	switch {
	case c.retryBudget <= 0:
		return fmt.Errorf("%w: --retry-budget must be positive", errUsage)
	case c.compRetryBudget <= 0:
		return fmt.Errorf("%w: --compensation-retry-budget must be positive", errUsage)
	case c.attemptTimeout <= 0:
		return fmt.Errorf("%w: --attempt-timeout must be positive", errUsage)
	case c.maxWatchers <= 0:
		return fmt.Errorf("%w: --max-watchers must be positive", errUsage)
	}
	return nil
}

// unretried names, in order, the steps whose attempt deadline leaves the
// step retry budget no room for a second attempt (the budget under twice
// the deadline): an attempt of theirs that hangs to its deadline uses the
// budget up, and the mission compensates instead of retrying it.
func (c opsConfig) unretried() []string {
	p := c.policy()
	var out []string
	for _, step := range missionSteps {
		d, ok := p.StepTimeouts[step]
		if !ok {
			d = p.AttemptTimeout
		}
		if p.RetryBudget < 2*d {
			out = append(out, fmt.Sprintf("%s (deadline %v)", step, d))
		}
	}
	return out
}

// policy is the saga policy the flags describe.
func (c opsConfig) policy() saga.Policy {
	steps := maps.Clone(defaultStepTimeouts)
	maps.Copy(steps, c.stepTimeouts)
	return saga.Policy{
		RetryBudget:             c.retryBudget,
		CompensationRetryBudget: c.compRetryBudget,
		AttemptTimeout:          c.attemptTimeout,
		StepTimeouts:            steps,
	}
}

// streamPoolSize bounds the connections of the orchestrator's stream
// client: the hub holds one in its blocking read, and watchers' short reads
// share the rest.
const streamPoolSize = 16

// streamClient returns a client of n's Redis with a pool of its own for
// the orchestrator's watchers (orchestrator.Deps.StreamRedis), closed with
// the node after the drain.
func streamClient(n *node) redis.UniversalClient {
	c := n.redis.client(streamPoolSize)
	n.closers = append(n.closers, c.Close)
	return c
}
