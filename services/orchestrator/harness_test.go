package orchestrator_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/faults"
	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/progress/progressgrpc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
	"github.com/slammesh/slammesh/services/localization"
	"github.com/slammesh/slammesh/services/mapping"
	"github.com/slammesh/slammesh/services/merge"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// callTimeout bounds every call and wait of a test, so that a bug fails the
// test instead of hanging it.
const callTimeout = 60 * time.Second

// stepNames are the saga's steps in order.
var stepNames = []string{"allocate_map", "localize_agents", "merge_maps"}

// stack is the whole mesh in one test process, wired as cmd/slammesh wires
// it: four gRPC servers (grpcserver, on 127.0.0.1:0), each with its own
// telemetry, logger and Redis client on one real redis-server; the step
// services with the progress interceptor (and the fault interceptor when
// faults are allowed); the orchestrator dialling them with grpcserver.Dial.
// All four tracer providers feed one span recorder, as they would feed one
// Jaeger.
type stack struct {
	rdb     redis.UniversalClient
	client  orchestratorv1.OrchestratorServiceClient
	mapping mappingv1.MappingServiceClient
	barrier *barrier.Barrier
	orch    *orchestrator.Server
	spans   *tracetest.SpanRecorder

	redisSrv *redistest.Server
	// stepAddrs are the mapping, localization and merge servers' addresses;
	// stepRedis their Redis clients.
	stepAddrs [3]string
	stepRedis [3]redis.UniversalClient
}

type stackConfig struct {
	// capacityCells is the mapping service's budget; 0 is its default.
	capacityCells uint64
	// allowFaults enables fault injection in the orchestrator and services.
	allowFaults bool
	// policy is the saga policy; zero fields take the engine's defaults.
	policy saga.Policy
	// owner names the orchestrator in saga records; leaseTTL and
	// recoveryInterval tune its leases and recovery (0: the defaults).
	owner            string
	leaseTTL         time.Duration
	recoveryInterval time.Duration
	// maxWatchers caps the orchestrator's watchers (0: the default);
	// lostCheck is how often an idle watch checks its mission exists.
	maxWatchers int
	lostCheck   time.Duration
}

func startStack(t *testing.T, cfg stackConfig) *stack {
	t.Helper()
	redisSrv := redistest.Start(t)
	st := &stack{rdb: redisSrv.Universal(t), spans: tracetest.NewSpanRecorder(), redisSrv: redisSrv}
	st.barrier = barrier.New(st.rdb)

	stepNode := func(name string, actions, compensations []string, register func(n *node) error) *node {
		return startNode(t, redisSrv, st.spans, name, func(pub *progress.Publisher) []grpc.UnaryServerInterceptor {
			ics := []grpc.UnaryServerInterceptor{progressgrpc.UnaryServerInterceptor(pub, name, actions...)}
			if cfg.allowFaults {
				ics = append(ics, faults.UnaryServerInterceptor(compensations...))
			}
			return ics
		}, register)
	}
	mappingNode := stepNode(mapping.ServiceName, mapping.ActionMethods, mapping.CompensationMethods, func(n *node) error {
		// One group for the barrier and the reservation, as a node has.
		g := groupCommit(n.rdb)
		s := mapping.NewServer(mapping.Config{CapacityCells: cfg.capacityCells}, n.rdb, stepBarrier(n.rdb, g), n.log)
		if g != nil {
			s.WithGroupCommit(g)
		}
		s.Register(n.srv)
		return nil
	})
	localizationNode := stepNode(localization.ServiceName, localization.ActionMethods, localization.CompensationMethods, func(n *node) error {
		s, err := localization.NewServer(localization.Config{}, n.rdb, stepBarrier(n.rdb, groupCommit(n.rdb)), n.log)
		if err != nil {
			return err
		}
		s.Register(n.srv)
		return nil
	})
	mergeNode := stepNode(merge.ServiceName, merge.ActionMethods, merge.CompensationMethods, func(n *node) error {
		s, err := merge.NewServer(merge.Config{}, n.rdb, stepBarrier(n.rdb, groupCommit(n.rdb)), n.log)
		if err != nil {
			return err
		}
		s.Register(n.srv)
		return nil
	})

	st.stepAddrs = [3]string{mappingNode.addr(), localizationNode.addr(), mergeNode.addr()}
	st.stepRedis = [3]redis.UniversalClient{mappingNode.rdb, localizationNode.rdb, mergeNode.rdb}
	st.orch, st.client = st.startOrchestrator(t, cfg)
	mappingNode.dialFor(t, func(conn *grpc.ClientConn) { st.mapping = mappingv1.NewMappingServiceClient(conn) })
	return st
}

// groupCommit is the group commit a node of cmd/slammesh builds on rdb: one
// on one Redis, none on a Cluster.
func groupCommit(rdb redis.UniversalClient) *groupcommit.Group {
	if _, single := rdb.(*redis.Client); !single {
		return nil
	}
	return groupcommit.New(rdb, groupcommit.Options{})
}

// stepBarrier is a step service's barrier on rdb, its commits going through
// g (nil: none).
func stepBarrier(rdb redis.UniversalClient, g *groupcommit.Group) *barrier.Barrier {
	if g != nil {
		return barrier.New(rdb, barrier.WithGroupCommit(g))
	}
	return barrier.New(rdb)
}

// startOrchestrator starts an orchestrator on the stack's Redis and step
// services — the stack's own, or another replica — and returns it with a
// client of it.
func (st *stack) startOrchestrator(t *testing.T, cfg stackConfig) (*orchestrator.Server, orchestratorv1.OrchestratorServiceClient) {
	t.Helper()
	var orch *orchestrator.Server
	var client orchestratorv1.OrchestratorServiceClient
	startNode(t, st.redisSrv, st.spans, orchestrator.ServiceName, nil, func(n *node) error {
		var conns []*grpc.ClientConn
		dial := func(target string) *grpc.ClientConn {
			conn, err := grpcserver.Dial(target, n.tel)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
			return conn
		}
		var err error
		orch, err = orchestrator.NewServer(orchestrator.Config{
			AllowFaultInjection: cfg.allowFaults,
			Policy:              cfg.policy,
			Owner:               cfg.owner,
			LeaseTTL:            cfg.leaseTTL,
			RecoveryInterval:    cfg.recoveryInterval,
			MaxWatchers:         cfg.maxWatchers,
			LostCheckInterval:   cfg.lostCheck,
		}, orchestrator.Deps{
			Redis:        n.rdb,
			GroupCommit:  groupCommit(n.rdb),
			Mapping:      mappingv1.NewMappingServiceClient(dial(st.stepAddrs[0])),
			Localization: localizationv1.NewLocalizationServiceClient(dial(st.stepAddrs[1])),
			Merge:        mergev1.NewMergeServiceClient(dial(st.stepAddrs[2])),
			Logger:       n.log,
			Tracer:       n.tel.Tracer(),
			Meter:        n.tel.Meter(),
		})
		if err != nil {
			return err
		}
		orchestratorv1.RegisterOrchestratorServiceServer(n.srv, orch)
		// As in cmd/slammesh: drain after the gRPC server stopped, then
		// close the step connections.
		n.drain = func(ctx context.Context) error {
			err := orch.Shutdown(ctx)
			for _, c := range conns {
				err = errors.Join(err, c.Close())
			}
			return err
		}
		return nil
	}).dialFor(t, func(conn *grpc.ClientConn) { client = orchestratorv1.NewOrchestratorServiceClient(conn) })
	return orch, client
}

// node is one running service.
type node struct {
	tel   *telemetry.Telemetry
	log   *slog.Logger
	rdb   redis.UniversalClient
	srv   *grpcserver.Server
	drain func(ctx context.Context) error
}

func (n *node) addr() string { return n.srv.Addr().String() }

// startNode starts service name and stops it when the test ends: the gRPC
// server first, then its drain hook, then its telemetry.
func startNode(t *testing.T, redisSrv *redistest.Server, spans sdktrace.SpanProcessor, name string,
	interceptors func(*progress.Publisher) []grpc.UnaryServerInterceptor, register func(*node) error) *node {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), name, telemetry.Options{SpanProcessors: []sdktrace.SpanProcessor{spans}})
	if err != nil {
		t.Fatalf("%s telemetry: %v", name, err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("%s telemetry shutdown: %v", name, err)
		}
	})
	n := &node{tel: tel, log: telemetry.NewLogger(io.Discard, name, slog.LevelInfo), rdb: redisSrv.Universal(t)}
	var ics []grpc.UnaryServerInterceptor
	if interceptors != nil {
		ics = interceptors(progress.NewPublisher(n.rdb, progress.Options{Logger: n.log}))
	}
	n.srv, err = grpcserver.New(grpcserver.Config{Service: name, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		grpcserver.Deps{Telemetry: tel, Logger: n.log, UnaryInterceptors: ics})
	if err != nil {
		t.Fatalf("%s server: %v", name, err)
	}
	if err := register(n); err != nil {
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
			drainCtx, cancelDrain := context.WithTimeout(context.Background(), callTimeout)
			defer cancelDrain()
			if err := n.drain(drainCtx); err != nil {
				t.Errorf("%s drain: %v", name, err)
			}
		}
	})
	return n
}

// dialFor gives use a plain client connection to the node, closed when the
// test ends (before the node stops). It is not instrumented: the test is not
// one of the services.
func (n *node) dialFor(t *testing.T, use func(*grpc.ClientConn)) {
	t.Helper()
	conn, err := grpc.NewClient(n.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	use(conn)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// start calls StartMission and fails the test on error.
func (st *stack) start(t *testing.T, req *orchestratorv1.StartMissionRequest) *orchestratorv1.StartMissionResponse {
	t.Helper()
	resp, err := st.client.StartMission(ctxT(t), req)
	if err != nil {
		t.Fatalf("StartMission: %v", err)
	}
	return resp
}

// raceStarts sends n StartMissions of req(i) at once and checks that
// exactly one of them created the mission and that all answered the same
// saga.
func (st *stack) raceStarts(t *testing.T, n int, req func(i int) *orchestratorv1.StartMissionRequest) {
	t.Helper()
	var wg sync.WaitGroup
	resps := make([]*orchestratorv1.StartMissionResponse, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { resps[i], errs[i] = st.client.StartMission(ctxT(t), req(i)) })
	}
	wg.Wait()
	created, sagas := 0, map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if resps[i].GetCreated() {
			created++
		}
		sagas[resps[i].GetMission().GetSagaId()] = true
	}
	if created != 1 || len(sagas) != 1 {
		t.Errorf("%d calls created the mission, %d saga ids %v; want 1 and 1", created, len(sagas), sagas)
	}
}

// events returns every event of the mission's stream, oldest first.
func (st *stack) events(t *testing.T, missionID string) []progress.Event {
	t.Helper()
	events, err := progress.Range(ctxT(t), st.rdb, progress.MissionStream(missionID))
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// awaitEvent blocks on the mission's stream until an event matching match
// arrives, and returns it.
func (st *stack) awaitEvent(t *testing.T, missionID string, match func(progress.Event) bool) progress.Event {
	t.Helper()
	e, err := st.nextEvent(ctxT(t), missionID, match)
	if err != nil {
		t.Fatalf("awaiting an event of %s: %v", missionID, err)
	}
	return e
}

// nextEvent is awaitEvent for goroutines other than the test's.
func (st *stack) nextEvent(ctx context.Context, missionID string, match func(progress.Event) bool) (progress.Event, error) {
	after := "0"
	for {
		events, err := progress.Read(ctx, st.rdb, progress.MissionStream(missionID), after, 100, time.Second)
		if err != nil {
			return progress.Event{}, err
		}
		for _, e := range events {
			if match(e) {
				return e, nil
			}
			after = e.ID
		}
	}
}

// leftovers returns what a compensated mission left in Redis of its
// business data (docs/architecture.md: the map with its versions, the
// localizations, and the step results that carry them: the map id, the
// poses, the merged version), as "key" or "key field". What legitimately
// outlives a compensation holds none of it: the events, the effect counts,
// the barrier marks (saga, action, compensation — not the action's result,
// deleted by the compensation) and the saga record (without step outputs,
// deleted with each compensation).
func (st *stack) leftovers(t *testing.T, missionID string) []string {
	t.Helper()
	ctx := ctxT(t)
	prefix := "slammesh:{" + missionID + "}:"
	keys := redistest.Keys(t, st.rdb, prefix+"*")
	fieldsOf := func(key string) []string {
		fields, err := st.rdb.HKeys(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return fields
	}
	var out []string
	for _, k := range keys {
		switch {
		case k == progress.MissionStream(missionID), k == barrier.EffectsKey(missionID):
		case strings.HasPrefix(k, prefix+"barrier:"):
			for _, f := range fieldsOf(k) {
				if f != "saga" && f != "action" && f != "compensation" {
					out = append(out, k+" "+f)
				}
			}
		case k == saga.RecordKey(missionID):
			for _, f := range fieldsOf(k) {
				if strings.HasPrefix(f, "out.") {
					out = append(out, k+" "+f)
				}
			}
		default:
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// capacityUsed is the mapping budget in use across all missions.
func (st *stack) capacityUsed(t *testing.T) int64 {
	t.Helper()
	n, err := st.rdb.Get(ctxT(t), "slammesh:{mapping}:capacity").Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantStatus fails unless err is a status with code and ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || rpcerr.Reason(err) != reason {
		t.Fatalf("err = %v (reason %q), want %v %s", err, rpcerr.Reason(err), code, reason)
	}
}

// eventLine renders an event for comparisons and failure messages.
func eventLine(e progress.Event) string {
	s := string(e.Type)
	if e.Step != "" {
		s += " " + e.Step
	}
	return s
}

func eventLines(events []progress.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = eventLine(e)
	}
	return out
}

// checkTraceIDs fails unless every event carries traceID.
func checkTraceIDs(t *testing.T, events []progress.Event, traceID string) {
	t.Helper()
	if len(traceID) != 32 {
		t.Fatalf("mission trace id %q is not a W3C trace id", traceID)
	}
	for _, e := range events {
		if e.TraceID != traceID {
			t.Errorf("event %s (service %s) has trace id %q, want the mission's %q", eventLine(e), e.Service, e.TraceID, traceID)
		}
	}
}

// await polls cond until it holds. Spans end asynchronously to the replies
// that a test waits for (a server span ends after its response is sent), so
// a test that reads the span recorder has to wait for them.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
