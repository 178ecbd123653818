package merge_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/telemetry"
	"github.com/slammesh/slammesh/services/merge"
)

func TestMain(m *testing.M) {
	// Spans stay in process whatever the developer's shell exports.
	if err := os.Setenv("OTEL_TRACES_EXPORTER", "none"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

// callTimeout bounds every call so that a bug fails a test instead of
// hanging it.
const callTimeout = 30 * time.Second

// env is one merge server, as cmd/slammesh wires it (grpcserver with the
// progress interceptor), on a real redis-server and a loopback port.
type env struct {
	rdb     *redis.Client
	client  mergev1.MergeServiceClient
	barrier *barrier.Barrier
}

func start(t *testing.T, cfg merge.Config) *env {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	tel, err := telemetry.Setup(context.Background(), merge.ServiceName, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	log := telemetry.NewLogger(io.Discard, merge.ServiceName, 0)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: log})
	srv, err := grpcserver.New(
		grpcserver.Config{Service: merge.ServiceName, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: log, UnaryInterceptors: []grpc.UnaryServerInterceptor{
			progressgrpc.UnaryServerInterceptor(pub, merge.ServiceName, merge.ActionMethods...),
		}})
	if err != nil {
		t.Fatal(err)
	}
	b := barrier.New(rdb)
	svc, err := merge.NewServer(cfg, rdb, b, log)
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	conn, err := grpcserver.Dial(srv.Addr().String(), tel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &env{rdb: rdb, client: mergev1.NewMergeServiceClient(conn), barrier: b}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func saga(mission string) *typesv1.SagaContext {
	return &typesv1.SagaContext{MissionId: mission, SagaId: "saga-" + mission, Step: merge.Step, Attempt: 1}
}

// seedMap writes the mission map hash as the mapping service does
// (docs/architecture.md): version 1 is the empty grid.
func seedMap(t *testing.T, rdb *redis.Client, mission, mapID string, meta grid.Meta) {
	t.Helper()
	b, err := proto.Marshal(slamproto.MetaToProto(meta))
	if err != nil {
		t.Fatal(err)
	}
	empty := bytes.Repeat([]byte{0xff}, int(meta.Cells()))
	if err := rdb.HSet(ctxT(t), mapKey(mission), "map_id", mapID, "meta", b, "cells", meta.Cells(), "current", 1, "v1", empty).Err(); err != nil {
		t.Fatal(err)
	}
}

func mapKey(mission string) string { return "slammesh:{" + mission + "}:map" }

// mapHash returns the whole map hash, to compare before and after.
func mapHash(t *testing.T, rdb *redis.Client, mission string) map[string]string {
	t.Helper()
	h, err := rdb.HGetAll(ctxT(t), mapKey(mission)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// wantStatus fails unless err is a status with code and ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || rpcerr.Reason(err) != reason {
		t.Fatalf("err = %v (reason %q), want %v %s", err, rpcerr.Reason(err), code, reason)
	}
}

func effects(t *testing.T, b *barrier.Barrier, mission string) map[string]int64 {
	t.Helper()
	e, err := b.Effects(ctxT(t), mission)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
