package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
	"github.com/slammesh/slammesh/services/localization"
	"github.com/slammesh/slammesh/services/mapping"
	"github.com/slammesh/slammesh/services/merge"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// meshTimeout bounds one mission run through the mesh in a test, and
// attemptTimeout each step attempt in it: real missions take seconds, but a
// loaded 2-core CI machine under -race takes many times that, and the
// production 10 s attempt timeout would turn slowness into compensations.
const (
	meshTimeout    = 4 * time.Minute
	attemptTimeout = 3 * time.Minute
)

// mesh is the four services in this test process, wired as cmd/slammesh
// dev wires them (grpcserver on 127.0.0.1:0, the progress interceptor on the
// step services, one real redis-server), so that slamctl talks to real
// servers over real sockets.
type mesh struct {
	orchestrator, mapping string
}

func startMesh(t *testing.T) mesh {
	t.Helper()
	redisSrv := redistest.Start(t)
	step := func(name string, actions []string, register func(srv *grpcserver.Server, n *meshNode) error) string {
		n := startMeshNode(t, redisSrv, name, func(pub *progress.Publisher) []grpc.UnaryServerInterceptor {
			return []grpc.UnaryServerInterceptor{progressgrpc.UnaryServerInterceptor(pub, name, actions...)}
		}, register)
		return n.srv.Addr().String()
	}
	mappingAddr := step(mapping.ServiceName, mapping.ActionMethods, func(srv *grpcserver.Server, n *meshNode) error {
		mapping.NewServer(mapping.Config{}, n.rdb, barrier.New(n.rdb), n.log).Register(srv)
		return nil
	})
	localizationAddr := step(localization.ServiceName, localization.ActionMethods, func(srv *grpcserver.Server, n *meshNode) error {
		s, err := localization.NewServer(localization.Config{}, n.rdb, barrier.New(n.rdb), n.log)
		if err == nil {
			s.Register(srv)
		}
		return err
	})
	mergeAddr := step(merge.ServiceName, merge.ActionMethods, func(srv *grpcserver.Server, n *meshNode) error {
		s, err := merge.NewServer(merge.Config{}, n.rdb, barrier.New(n.rdb), n.log)
		if err == nil {
			s.Register(srv)
		}
		return err
	})
	orch := startMeshNode(t, redisSrv, orchestrator.ServiceName, nil, func(srv *grpcserver.Server, n *meshNode) error {
		var conns []*grpc.ClientConn
		dial := func(target string) (*grpc.ClientConn, error) {
			conn, err := grpcserver.Dial(target, n.tel)
			if err == nil {
				conns = append(conns, conn)
			}
			return conn, err
		}
		mc, err1 := dial(mappingAddr)
		lc, err2 := dial(localizationAddr)
		gc, err3 := dial(mergeAddr)
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		o, err := orchestrator.NewServer(orchestrator.Config{Policy: saga.Policy{AttemptTimeout: attemptTimeout}}, orchestrator.Deps{
			Redis: n.rdb, Logger: n.log, Tracer: n.tel.Tracer(), Meter: n.tel.Meter(),
			Mapping:      mappingv1.NewMappingServiceClient(mc),
			Localization: localizationv1.NewLocalizationServiceClient(lc),
			Merge:        mergev1.NewMergeServiceClient(gc),
		})
		if err != nil {
			return err
		}
		orchestratorv1.RegisterOrchestratorServiceServer(srv, o)
		// As in cmd/slammesh: drain after the gRPC server stopped, then
		// close the step connections.
		n.drain = func(ctx context.Context) error {
			err := o.Shutdown(ctx)
			for _, c := range conns {
				err = errors.Join(err, c.Close())
			}
			return err
		}
		return nil
	})
	return mesh{orchestrator: orch.srv.Addr().String(), mapping: mappingAddr}
}

// meshNode is one running service of a mesh.
type meshNode struct {
	tel   *telemetry.Telemetry
	log   *slog.Logger
	rdb   *redis.Client
	srv   *grpcserver.Server
	drain func(ctx context.Context) error
}

// startMeshNode starts service name and stops it when the test ends: the
// gRPC server first, then its drain hook, then its telemetry.
func startMeshNode(t *testing.T, redisSrv *redistest.Server, name string,
	interceptors func(*progress.Publisher) []grpc.UnaryServerInterceptor,
	register func(*grpcserver.Server, *meshNode) error) *meshNode {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), name, telemetry.Options{})
	if err != nil {
		t.Fatalf("%s telemetry: %v", name, err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("%s telemetry shutdown: %v", name, err)
		}
	})
	n := &meshNode{tel: tel, log: telemetry.NewLogger(io.Discard, name, slog.LevelInfo), rdb: redisSrv.Client(t)}
	var ics []grpc.UnaryServerInterceptor
	if interceptors != nil {
		ics = interceptors(progress.NewPublisher(n.rdb, progress.Options{Logger: n.log}))
	}
	n.srv, err = grpcserver.New(grpcserver.Config{Service: name, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: n.log, UnaryInterceptors: ics})
	if err != nil {
		t.Fatalf("%s server: %v", name, err)
	}
	if err := register(n.srv, n); err != nil {
		_ = n.srv.Close()
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("%s serve: %v", name, err)
		}
		if n.drain != nil {
			drainCtx, cancelDrain := context.WithTimeout(context.Background(), meshTimeout)
			defer cancelDrain()
			if err := n.drain(drainCtx); err != nil {
				t.Errorf("%s drain: %v", name, err)
			}
		}
	})
	return n
}
