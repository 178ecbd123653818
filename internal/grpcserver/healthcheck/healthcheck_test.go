package healthcheck_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/grpcserver/healthcheck"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCheck(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("slammesh.mapping.v1.MappingService", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("slammesh.merge.v1.MergeService", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	// A port that was just released: nothing listens there.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		target     string
		service    string
		notServing bool
		code       codes.Code // expected gRPC code of the error, OK for none
	}{
		{name: "server as a whole", target: lis.Addr().String(), service: ""},
		{name: "serving service", target: lis.Addr().String(), service: "slammesh.mapping.v1.MappingService"},
		{name: "not serving service", target: lis.Addr().String(), service: "slammesh.merge.v1.MergeService", notServing: true},
		{name: "unknown service", target: lis.Addr().String(), service: "nope.v1.Nope", code: codes.NotFound},
		{name: "nothing listening", target: deadAddr, service: "", code: codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := healthcheck.Check(ctx, tt.target, tt.service)
			wantErr := tt.notServing || tt.code != codes.OK
			if (err != nil) != wantErr {
				t.Fatalf("Check = %v, want error %v", err, wantErr)
			}
			if got := errors.Is(err, healthcheck.ErrNotServing); got != tt.notServing {
				t.Errorf("errors.Is(%v, ErrNotServing) = %v, want %v", err, got, tt.notServing)
			}
			if got := status.Code(err); tt.code != codes.OK && got != tt.code {
				t.Errorf("code of %v = %v, want %v", err, got, tt.code)
			}
		})
	}
}
