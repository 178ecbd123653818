package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartExitsNonZeroUnlessTheMissionCompleted: start --wait and --watch
// both fail for a mission that was compensated (a sealed agent cannot be
// localized; a changed world fails the merge), after printing it, and
// succeed for one that completed (the changed world with the merge's
// gates loosened).
func TestStartExitsNonZeroUnlessTheMissionCompleted(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), meshTimeout)
	defer cancel()
	for _, tc := range []struct {
		args        []string
		wantErr     string // "" for none
		wantPrinted string
	}{
		{[]string{"start", "--wait", "--id", "ok-wait", "--agents", "2"}, "", "COMPLETED"},
		{[]string{"start", "--wait", "--id", "sealed-wait", "--kind", "sealed-agent"}, "mission sealed-wait was compensated", "COMPENSATED"},
		{[]string{"--json", "start", "--wait", "--id", "sealed-json", "--kind", "sealed-agent"}, "mission sealed-json was compensated", "MISSION_STATE_COMPENSATED"},
		{[]string{"start", "--watch", "--id", "sealed-watch", "--kind", "sealed-agent"}, "mission sealed-watch was compensated", "mission.compensated"},
		// The merge's gates loosened for a scenario: the changed world the
		// defaults refuse merges.
		{[]string{"start", "--wait", "--id", "changed-default", "--kind", "changed-world", "--seed", "3"}, "mission changed-default was compensated", "INCONSISTENT_MAPS"},
		{[]string{"start", "--wait", "--id", "changed-loose", "--kind", "changed-world", "--seed", "3", "--max-changed-share", "1", "--min-consistency", "0.5"}, "", "COMPLETED"},
		// A reused id reads as every other refusal does (found by a
		// review: it printed gRPC's "rpc error: code = AlreadyExists
		// desc = …").
		{[]string{"start", "--id", "ok-wait", "--agents", "3"}, "start mission: AlreadyExists: ", ""},
	} {
		out, err := slamctl(t, ctx, m, tc.args...)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("slamctl %v: %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("slamctl %v: error %v, want %q", tc.args, err, tc.wantErr)
		}
		if !strings.Contains(out, tc.wantPrinted) {
			t.Errorf("slamctl %v printed %q, want %q in it", tc.args, out, tc.wantPrinted)
		}
	}
	// The map of a compensated mission was released, as its record says
	// (found by a review: it said none had been allocated, from the map
	// id the compensation clears).
	_, err := slamctl(t, ctx, m, "map", "-o", filepath.Join(t.TempDir(), "m.png"), "sealed-wait")
	if err == nil || !strings.Contains(err.Error(), "undoing allocate_map released its map") {
		t.Errorf("map of a compensated mission: %v, want it to say undoing allocate_map released it", err)
	}
}

func TestFaultFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in           string
		times        uint32
		compensation bool
		wantErr      string
	}{
		{in: "merge_maps:drop-reply"},
		{in: "localize_agents:transient:2", times: 2},
		{in: "localize_agents:business:compensation", compensation: true},
		{in: "localize_agents:stall:3:compensation", times: 3, compensation: true},
		{in: "localize_agents:business:2", wantErr: "times applies to transient"},
		{in: "localize_agents:transient:x", wantErr: `fault times "x"`},
		{in: "localize_agents:transient:2:undo", wantErr: "must be 'compensation'"},
		{in: "localize_agents:oops", wantErr: "unknown fault kind"},
		{in: "localize_agents", wantErr: "want step:kind"},
	} {
		var f faultFlags
		err := f.Set(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := f[0]; got.GetTimes() != tc.times || got.GetCompensation() != tc.compensation {
			t.Errorf("%s: times %d compensation %v, want %d %v", tc.in, got.GetTimes(), got.GetCompensation(), tc.times, tc.compensation)
		}
	}
}

// TestStartRefusesFlagsItsModeIgnores: a scenario flag with real data, or a
// real-data flag with a scenario, is a usage error naming the flags, before
// anything is sent (no server here).
func TestStartRefusesFlagsItsModeIgnores(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--map", "0,0,10,10", "--resolution", "0.02"}, "--map, --resolution: real-data flags"},
		{[]string{"start", "--seed", "3", "--guess", "robot-1=1,2,3"}, "--guess: real-data flags"},
		{[]string{"start", "--carmen", "x.log", "--segments", "0:10", "--seed", "4", "--width", "30"}, "--seed, --width: scenario flags"},
	} {
		var stdout, stderr strings.Builder
		err := run(t.Context(), append([]string{"--addr", "127.0.0.1:1"}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("slamctl %v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("slamctl %v: exit %d, want 2 (usage)", tc.args, code)
		}
	}
}
