package main

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/saga"
)

func TestOrchestratorOpsFlags(t *testing.T) {
	env := map[string]string{"SLAMMESH_STEP_TIMEOUT": "merge_maps=20s"}
	c, err := parseServiceConfig("orchestrator", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := c.ops.policy()
	if p.RetryBudget != saga.DefaultRetryBudget || p.CompensationRetryBudget != saga.DefaultCompensationRetryBudget ||
		p.AttemptTimeout != saga.DefaultAttemptTimeout || p.StepTimeouts["merge_maps"] != 20*time.Second ||
		p.StepTimeouts["localize_agents"] != time.Minute || c.ops.maxWatchers != 1000 {
		t.Errorf("defaults with env: %+v, max watchers %d", p, c.ops.maxWatchers)
	}
	// An attempt that hangs to its step's default deadline leaves the
	// default retry budget room for another.
	for step, d := range defaultStepTimeouts {
		if saga.DefaultRetryBudget < 2*d {
			t.Errorf("default retry budget %v: a hung %s attempt (deadline %v) is never retried", saga.DefaultRetryBudget, step, d)
		}
	}
	if steps := c.ops.unretried(); len(steps) != 0 {
		t.Errorf("defaults: %v named as never retried", steps)
	}
	c, err = parseServiceConfig("orchestrator", []string{"--retry-budget", "90s", "--compensation-retry-budget", "30m",
		"--step-timeout", "allocate_map=10s,localize_agents=30s", "--max-watchers", "5"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// 90s leaves no second attempt to the steps with a 1m deadline.
	if got, want := c.ops.unretried(), []string{"merge_maps (deadline 1m0s)"}; !slices.Equal(got, want) {
		t.Errorf("unretried with --retry-budget 90s = %v, want %v", got, want)
	}
	p = c.ops.policy()
	if p.RetryBudget != 90*time.Second || p.CompensationRetryBudget != 30*time.Minute || c.ops.maxWatchers != 5 ||
		p.StepTimeouts["allocate_map"] != 10*time.Second || p.StepTimeouts["localize_agents"] != 30*time.Second ||
		p.StepTimeouts["merge_maps"] != time.Minute {
		t.Errorf("flags: %+v, max watchers %d", p, c.ops.maxWatchers)
	}
	for _, bad := range [][]string{
		{"--step-timeout", "warp_drive=1s"},
		{"--step-timeout", "merge_maps"},
		{"--step-timeout", "merge_maps=-1s"},
		{"--retry-budget", "0s"},
		{"--max-watchers", "0"},
	} {
		if _, err := parseServiceConfig("orchestrator", bad, func(string) string { return "" }, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", bad, err)
		}
	}
}
