package mapping_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/telemetry"
	"github.com/slammesh/slammesh/services/mapping"
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

// env is one mapping server, as cmd/slammesh wires it (grpcserver with the
// progress interceptor), on a real redis-server and a loopback port.
type env struct {
	rdb     *redis.Client
	client  mappingv1.MappingServiceClient
	barrier *barrier.Barrier
}

func start(t *testing.T, cfg mapping.Config) *env {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	tel, err := telemetry.Setup(context.Background(), mapping.ServiceName, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	log := telemetry.NewLogger(io.Discard, mapping.ServiceName, 0)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: log})
	srv, err := grpcserver.New(
		grpcserver.Config{Service: mapping.ServiceName, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: log, UnaryInterceptors: []grpc.UnaryServerInterceptor{
			progressgrpc.UnaryServerInterceptor(pub, mapping.ServiceName, mapping.ActionMethods...),
		}})
	if err != nil {
		t.Fatal(err)
	}
	b := barrier.New(rdb)
	mapping.NewServer(cfg, rdb, b, log).Register(srv)
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
	return &env{rdb: rdb, client: mappingv1.NewMappingServiceClient(conn), barrier: b}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func saga(mission string) *typesv1.SagaContext {
	return &typesv1.SagaContext{MissionId: mission, SagaId: "saga-" + mission, Step: mapping.Step, Attempt: 1}
}

// office is the 20x15 m map of a default scenario: 400x300 cells.
func office() *typesv1.MapSpec {
	return &typesv1.MapSpec{WidthM: 20, HeightM: 15, Resolution: 0.05}
}

const officeCells = 400 * 300

// wantStatus fails unless err is a status with code and ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || rpcerr.Reason(err) != reason {
		t.Fatalf("err = %v (reason %q), want %v %s", err, rpcerr.Reason(err), code, reason)
	}
}

// missionKeys returns the Redis keys of a mission other than the barrier's
// own bookkeeping (barrier marks, effect counts, events), which legitimately
// outlive a compensation.
func missionKeys(t *testing.T, rdb *redis.Client, mission string) []string {
	t.Helper()
	keys, err := rdb.Keys(ctxT(t), "slammesh:{"+mission+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "slammesh:{"+mission+"}:barrier:"),
			k == barrier.EffectsKey(mission),
			k == progress.MissionStream(mission):
		default:
			out = append(out, k)
		}
	}
	return out
}

func capacityUsed(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	n, err := rdb.Get(ctxT(t), "slammesh:mapping:capacity").Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func effects(t *testing.T, b *barrier.Barrier, mission string) map[string]int64 {
	t.Helper()
	e, err := b.Effects(ctxT(t), mission)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
