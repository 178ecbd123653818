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
		// Addresses are refused before Redis is dialled (found by a
		// review: a mistyped port waited for Redis first).
		{name: "port out of range", service: "orchestrator", args: []string{"--grpc-addr", ":99999"}, usageErr: true},
		{name: "address without a port", service: "mapping", args: []string{"--http-addr", "127.0.0.1"}, usageErr: true},
		{name: "port from the environment", service: "merge", env: map[string]string{"SLAMMESH_GRPC_ADDR": "127.0.0.1:x9"}, usageErr: true},
		{name: "negative Redis wait", service: "mapping", args: []string{"--redis-wait", "-1s"}, usageErr: true},
		// An empty step target would start and fail every mission's step
		// until its retry budget ran out (found by a review).
		{name: "empty step target", service: "orchestrator", args: []string{"--mapping-addr", ""}, usageErr: true},
		{name: "blank step target from the environment", service: "orchestrator", env: map[string]string{"SLAMMESH_MERGE_ADDR": " "}, usageErr: true},
		{name: "step target without its port", service: "orchestrator", args: []string{"--merge-addr", "localhost:"}, usageErr: true},
		{name: "step target of a colon", service: "orchestrator", args: []string{"--localization-addr", ":"}, usageErr: true},
		{name: "dns step target without a host", service: "orchestrator", args: []string{"--merge-addr", "dns:///"}, usageErr: true},
		{name: "step target port out of range", service: "orchestrator", args: []string{"--mapping-addr", "mapping:70000"}, usageErr: true},
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
			if cfg.redisWait != defaultRedisWait {
				t.Errorf("redis wait %v, want the default %v", cfg.redisWait, defaultRedisWait)
			}
		})
	}

	dev, err := parseDevConfig([]string{"--lease-ttl", "600ms"}, func(string) string { return "" }, io.Discard)
	if err != nil || dev.base.leaseTTL != 600*time.Millisecond || dev.base.recoveryInterval != 500*time.Millisecond {
		t.Errorf("dev config = lease %v, interval %v, %v; want 600ms, 500ms", dev.base.leaseTTL, dev.base.recoveryInterval, err)
	}
}

// TestGCHeapFloorFlag: every service and dev take --gc-heap-floor (MiB,
// SLAMMESH_GC_HEAP_FLOOR), 64 by default; 0 keeps Go's default; past 1 TiB
// or not a number is a usage error.
func TestGCHeapFloorFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		want     uint64
		usageErr bool
	}{
		{name: "default", want: defaultGCHeapFloorMiB},
		{name: "from the environment", env: map[string]string{"SLAMMESH_GC_HEAP_FLOOR": "256"}, want: 256},
		{name: "off", args: []string{"--gc-heap-floor", "0"}, want: 0},
		{name: "past 1 TiB", args: []string{"--gc-heap-floor", "1048577"}, usageErr: true},
		{name: "not a number", env: map[string]string{"SLAMMESH_GC_HEAP_FLOOR": "lots"}, usageErr: true},
	}
	for _, tt := range tests {
		getenv := func(k string) string { return tt.env[k] }
		for _, service := range []string{"orchestrator", "mapping", "localization", "merge", "dev"} {
			var got uint64
			var err error
			if service == "dev" {
				var c devConfig
				c, err = parseDevConfig(tt.args, getenv, io.Discard)
				got = c.base.gcHeapFloorMiB
			} else {
				var c serviceConfig
				c, err = parseServiceConfig(service, tt.args, getenv, io.Discard)
				got = c.gcHeapFloorMiB
			}
			switch {
			case tt.usageErr && !errors.Is(err, errUsage):
				t.Errorf("%s, %s: parse = %v, want a usage error", tt.name, service, err)
			case !tt.usageErr && (err != nil || got != tt.want):
				t.Errorf("%s, %s: floor %d MiB, %v; want %d", tt.name, service, got, err, tt.want)
			}
		}
	}
}
