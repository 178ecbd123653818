package main

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestRecoveryFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		service  string
		args     []string
		env      map[string]string
		lease    time.Duration
		interval time.Duration
		usageErr bool
	}{
		{name: "defaults", service: "orchestrator", lease: 3 * time.Second, interval: 500 * time.Millisecond},
		{
			name: "from the environment", service: "orchestrator",
			env:   map[string]string{"SLAMMESH_LEASE_TTL": "1s", "SLAMMESH_RECOVERY_INTERVAL": "100ms"},
			lease: time.Second, interval: 100 * time.Millisecond,
		},
		{
			name: "flags override the environment", service: "orchestrator",
			args:  []string{"--lease-ttl", "2s", "--recovery-interval", "250ms"},
			env:   map[string]string{"SLAMMESH_LEASE_TTL": "1s"},
			lease: 2 * time.Second, interval: 250 * time.Millisecond,
		},
		{name: "lease too short", service: "orchestrator", args: []string{"--lease-ttl", "10ms"}, usageErr: true},
		{name: "interval not positive", service: "orchestrator", args: []string{"--recovery-interval", "0s"}, usageErr: true},
		{name: "bad duration in the environment", service: "orchestrator", env: map[string]string{"SLAMMESH_LEASE_TTL": "soon"}, usageErr: true},
		{name: "step services have no such flags", service: "mapping", args: []string{"--lease-ttl", "2s"}, usageErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseServiceConfig(tt.service, tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.usageErr {
				if !errors.Is(err, errUsage) {
					t.Fatalf("parse = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.leaseTTL != tt.lease || cfg.recoveryInterval != tt.interval {
				t.Errorf("lease %v, interval %v; want %v, %v", cfg.leaseTTL, cfg.recoveryInterval, tt.lease, tt.interval)
			}
		})
	}

	dev, err := parseDevConfig([]string{"--lease-ttl", "600ms"}, func(string) string { return "" }, io.Discard)
	if err != nil || dev.base.leaseTTL != 600*time.Millisecond || dev.base.recoveryInterval != 500*time.Millisecond {
		t.Errorf("dev config = lease %v, interval %v, %v; want 600ms, 500ms", dev.base.leaseTTL, dev.base.recoveryInterval, err)
	}
}
