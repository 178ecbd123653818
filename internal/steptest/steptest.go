// Package steptest runs a saga step service (mapping, localization, merge)
// in its component tests the way cmd/slammesh runs it: a grpcserver with the
// step interceptors of stepserver.Interceptors, its own telemetry and
// logger, on a real redis-server (internal/redistest) and a loopback port,
// called through grpcserver.Dial. It also holds what those tests share: a
// bounded context, the status check, the mission's keys, events and effects,
// and a mission map seeded as the mapping service writes it.
package steptest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/stepserver"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// Main runs the tests of a step service package from its TestMain: spans
// stay in process whatever the developer's shell exports, and a goroutine
// left running by a test (a server not stopped) fails the package.
func Main(m *testing.M) {
	if err := os.Setenv("OTEL_TRACES_EXPORTER", "none"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

// callTimeout bounds every call made with Context.
const callTimeout = 30 * time.Second

// Context returns a context that is cancelled when t ends or after 30 s, so
// that a call that hangs fails the test.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Registrar is a step service's Server: it registers itself on a gRPC
// server.
type Registrar interface {
	Register(r grpc.ServiceRegistrar)
}

// groupCommitter is a step service that sends more than its barrier's
// commits through a group commit (mapping: its capacity reservation).
type groupCommitter interface {
	WithGroupCommit(g *groupcommit.Group)
}

// Service describes the step service Start runs, with the exported names
// every step service package has.
type Service struct {
	// Name is the service's ServiceName.
	Name string
	// Step is the service's Step, the step of the SagaContexts Env.Saga
	// builds.
	Step string
	// ActionMethods and CompensationMethods are the service's.
	ActionMethods, CompensationMethods []string
	// New builds the Server on Start's Redis client, barrier and logger, as
	// cmd/slammesh does.
	New func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (Registrar, error)
	// AllowFaults injects the fault plans of requests, as
	// --allow-fault-injection does.
	AllowFaults bool
}

// Env is a running step service.
type Env struct {
	// Redis is a client of the service's Redis (a cluster client in
	// redistest's cluster mode), the one the service uses.
	Redis redis.UniversalClient
	// Server is the service's Redis, for another client of it.
	Server *redistest.Server
	// Conn is a client connection to the service.
	Conn *grpc.ClientConn
	// Barrier is a barrier on Redis, to read the effects the service counted.
	Barrier *barrier.Barrier
	step    string
}

// Start runs svc until t ends, on its own redis-server, and dials it. On one
// Redis, as in cmd/slammesh, its barrier commits (and what else it sends
// through WithGroupCommit) go through a group commit.
func Start(t testing.TB, svc Service) *Env {
	t.Helper()
	srv0 := redistest.Start(t)
	rdb := srv0.Universal(t)
	tel, err := telemetry.Setup(context.Background(), svc.Name, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	log := telemetry.NewLogger(io.Discard, svc.Name, 0)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: log})
	// The firehose closes after the server stopped (cleanups run last in,
	// first out), as in the binaries.
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{Logger: log})
	t.Cleanup(func() { _ = fh.Close(context.Background()) })
	srv, err := grpcserver.New(
		grpcserver.Config{Service: svc.Name, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: log,
			// Progress waits for the call's end (stepserver's own tests
			// cover its timer): on a loaded machine a handler may outlast
			// the default delay, and its progress would take a round trip
			// of its own, which the one-trip tests count.
			UnaryInterceptors: stepserver.Interceptors(pub, svc.Name, svc.ActionMethods, svc.CompensationMethods, svc.AllowFaults,
				stepserver.WithFirehose(fh), stepserver.WithProgressDelay(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	// Commits group-committed on one Redis, as cmd/slammesh does.
	var group *groupcommit.Group
	var opts []barrier.Option
	if _, single := rdb.(*redis.Client); single {
		group = groupcommit.New(rdb, groupcommit.Options{})
		opts = append(opts, barrier.WithGroupCommit(group))
	}
	b := barrier.New(rdb, opts...)
	s, err := svc.New(rdb, b, log)
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	if gc, ok := s.(groupCommitter); ok && group != nil {
		gc.WithGroupCommit(group)
	}
	s.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpcserver.Dial(srv.Addr().String(), tel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &Env{Redis: rdb, Server: srv0, Conn: conn, Barrier: b, step: svc.Step}
}

// Saga returns the SagaContext of attempt 1 of the service's step for
// mission, in the saga "saga-<mission>".
func (e *Env) Saga(mission string) *typesv1.SagaContext {
	return &typesv1.SagaContext{MissionId: mission, SagaId: sagaOf(mission), Step: e.step, Attempt: 1}
}

// Effects returns the effects the barrier counted for mission, by
// "<step>:<op>".
func (e *Env) Effects(t testing.TB, mission string) map[string]int64 {
	t.Helper()
	eff, err := e.Barrier.Effects(Context(t), mission)
	if err != nil {
		t.Fatal(err)
	}
	return eff
}

// Events returns the events of mission's stream, oldest first.
func (e *Env) Events(t testing.TB, mission string) []progress.Event {
	t.Helper()
	events, err := progress.Range(Context(t), e.Redis, progress.MissionStream(mission))
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// EventsOf returns the events of type typ of mission's stream, oldest
// first.
func (e *Env) EventsOf(t testing.TB, mission string, typ progress.Type) []progress.Event {
	t.Helper()
	var out []progress.Event
	for _, ev := range e.Events(t, mission) {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// MissionKeys returns the Redis keys of mission other than the barrier's
// own bookkeeping (barrier marks, effect counts) and the events, which
// legitimately outlive a compensation, and other than except (keys the test
// wrote itself or that another service owns).
func (e *Env) MissionKeys(t testing.TB, mission string, except ...string) []string {
	t.Helper()
	keys := redistest.Keys(t, e.Redis, "slammesh:{"+mission+"}:*")
	var out []string
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "slammesh:{"+mission+"}:barrier:"),
			k == barrier.EffectsKey(mission),
			k == progress.MissionStream(mission),
			slices.Contains(except, k):
		default:
			out = append(out, k)
		}
	}
	return out
}

// WantStatus fails t unless err is a status with code and ErrorInfo reason.
func WantStatus(t testing.TB, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || rpcerr.Reason(err) != reason {
		t.Fatalf("err = %v (reason %q), want %v %s", err, rpcerr.Reason(err), code, reason)
	}
}

// SeedWorld generates the world of cfg and writes its map for mission as
// the mapping service allocates it: map mapID, version 1 all unknown. It
// returns the world and the map's geometry.
func SeedWorld(t testing.TB, rdb redis.Cmdable, mission, mapID string, cfg world.Config) (*world.World, grid.Meta) {
	t.Helper()
	w, err := world.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := world.MapMeta(cfg)
	if err != nil {
		t.Fatal(err)
	}
	SeedMap(t, rdb, mission, mapID, meta)
	return w, meta
}

// sagaOf is the saga id Env.Saga gives mission.
func sagaOf(mission string) string { return "saga-" + mission }

// SeedMap writes a map of geometry meta for mission as the mapping service
// allocates it for the saga Env.Saga names: map mapID, version 1 all
// unknown.
func SeedMap(t testing.TB, rdb redis.Cmdable, mission, mapID string, meta grid.Meta) {
	t.Helper()
	blank, err := mapstore.NewBlank(meta)
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t)
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		mapstore.Create(ctx, p, mission, sagaOf(mission), mapID, blank)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
