package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// TestMain keeps the in-process mesh's spans in process whatever the
// developer's shell exports, and fails the package on a leaked goroutine
// (a server not stopped).
func TestMain(m *testing.M) {
	if err := os.Setenv("OTEL_TRACES_EXPORTER", "none"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

// fakeOrchestrator answers StartMission with the state outcome picks for the
// mission's index (an error for UNSPECIFIED: the mission was never recorded)
// and records the CancelMission calls, holding each one at gate (when set)
// so that a test can see how many are in flight at once.
type fakeOrchestrator struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	outcome func(i int) orchestratorv1.MissionState
	gate    chan struct{}

	mu        sync.Mutex
	recorded  map[string]bool
	cancelled []string
	inFlight  int
	maxFlight int
}

func (f *fakeOrchestrator) StartMission(_ context.Context, req *orchestratorv1.StartMissionRequest) (*orchestratorv1.StartMissionResponse, error) {
	id := req.GetMissionId()
	i, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mission id %q", id)
	}
	st := f.outcome(i)
	if st == orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED {
		return nil, status.Error(codes.Unavailable, "draining")
	}
	f.mu.Lock()
	f.recorded[id] = true
	f.mu.Unlock()
	return &orchestratorv1.StartMissionResponse{Created: true, Mission: &orchestratorv1.Mission{MissionId: id, State: st}}, nil
}

func (f *fakeOrchestrator) CancelMission(ctx context.Context, req *orchestratorv1.CancelMissionRequest) (*orchestratorv1.CancelMissionResponse, error) {
	f.mu.Lock()
	f.cancelled = append(f.cancelled, req.GetMissionId())
	recorded := f.recorded[req.GetMissionId()]
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !recorded {
		return nil, status.Error(codes.NotFound, "no such mission")
	}
	if !req.GetWait() {
		return nil, status.Error(codes.InvalidArgument, "bench must wait for its teardown")
	}
	return &orchestratorv1.CancelMissionResponse{Mission: &orchestratorv1.Mission{
		MissionId: req.GetMissionId(), State: orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
	}}, nil
}

func (f *fakeOrchestrator) snapshot() (cancelled []string, maxFlight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancelled), f.maxFlight
}

// serve runs f on a loopback port until the test ends and returns its address.
func serve(t *testing.T, f *fakeOrchestrator) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	orchestratorv1.RegisterOrchestratorServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return l.Addr().String()
}

func TestBenchTearsItsMissionsDown(t *testing.T) {
	t.Parallel()
	completed := func(int) orchestratorv1.MissionState { return orchestratorv1.MissionState_MISSION_STATE_COMPLETED }
	// mixed: every third mission is compensated, every fourth never recorded.
	mixed := func(i int) orchestratorv1.MissionState {
		switch {
		case i%4 == 3:
			return orchestratorv1.MissionState_MISSION_STATE_UNSPECIFIED
		case i%3 == 2:
			return orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
		}
		return orchestratorv1.MissionState_MISSION_STATE_COMPLETED
	}
	tests := []struct {
		name    string
		args    []string
		outcome func(int) orchestratorv1.MissionState
		// gated holds cancels until teardownConcurrency are in flight.
		gated bool
		// wantCancelled are the indices of the missions cancelled.
		wantCancelled []int
		wantOut       string
		wantErr       string
	}{
		{
			name: "every completed mission, at bounded concurrency", args: []string{"-n", "40", "-c", "4"},
			outcome: completed, gated: true, wantCancelled: seq(0, 40),
			wantOut: "teardown 40 missions torn down",
		},
		{
			// 0 1 2 3 4 5 6 7 8 9 10 11: 2, 5, 8 compensated; 3, 7, 11 failed to start.
			name: "not the compensated ones", args: []string{"-n", "12", "-c", "3"},
			outcome: mixed, wantCancelled: []int{0, 1, 3, 4, 6, 7, 9, 10, 11},
			wantOut: "teardown 6 missions torn down", wantErr: "6 of 12 missions did not complete",
		},
		{
			name: "-keep keeps them", args: []string{"-n", "5", "-keep"},
			outcome: completed, wantOut: "kept     5 missions",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeOrchestrator{outcome: tt.outcome, recorded: map[string]bool{}}
			if tt.gated {
				f.gate = make(chan struct{})
			}
			addr := serve(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, append([]string{"--addr", addr, "bench"}, tt.args...), func(string) string { return "" }, &stdout, &stderr)
			}()
			if tt.gated {
				for {
					if _, n := f.snapshot(); n >= teardownConcurrency {
						break
					}
					select {
					case <-ctx.Done():
						t.Fatalf("never %d cancels in flight", teardownConcurrency)
					case <-time.After(time.Millisecond):
					}
				}
				close(f.gate)
			}
			err := <-errc
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("bench: %v\n%s", err, stderr.String())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("bench error = %v, want one saying %q", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("output does not say %q:\n%s", tt.wantOut, stdout.String())
			}
			cancelled, maxFlight := f.snapshot()
			var got []int
			for _, id := range cancelled {
				i, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
				got = append(got, i)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantCancelled) {
				t.Errorf("cancelled missions %v, want %v", got, tt.wantCancelled)
			}
			if maxFlight > teardownConcurrency {
				t.Errorf("%d cancels in flight at once, want at most %d", maxFlight, teardownConcurrency)
			}
		})
	}
}

// seq returns the integers in [from, to).
func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
