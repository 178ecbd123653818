package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// BenchmarkUnaryCall is one OK call through a Server and its interceptors,
// on loopback, at the log levels a mesh runs at (the call log writes a line
// per call at info, none at warn), one call at a time and 32 at once.
func BenchmarkUnaryCall(b *testing.B) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		for _, parallel := range []bool{false, true} {
			name := "log " + level.String()
			if parallel {
				name += " 32 at once"
			}
			b.Run(name, func(b *testing.B) {
				h := start(b, &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
					return &testgrpc.SimpleResponse{}, nil
				}}, func(_ *grpcserver.Config, d *grpcserver.Deps) {
					d.Logger = telemetry.NewLogger(io.Discard, "mapping", level)
				})
				ctx := context.Background()
				b.ReportAllocs()
				if !parallel {
					for b.Loop() {
						if _, err := h.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(32 / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := h.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
