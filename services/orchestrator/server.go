// Package orchestrator is slammesh's public gRPC API: it starts each mission
// as a compensating saga over the mapping, localization and merge services
// (the saga definition is in mission.go) and lets clients follow and cancel
// it.
//
// The handlers are a thin port over internal/saga: the engine makes the
// saga durable (its record lives in Redis and is written before and after
// every step, with the events that describe each change), this package
// validates requests, supplies the step functions and the gRPC error
// classifier, and presents saga records as Missions. Sagas run in the
// background, on a context no request cancels, so a client that leaves
// (or a StartMission with wait whose caller gives up) never stops a mission.
//
// Replicas share the missions: each mission is held under a lease its
// orchestrator renews, and every orchestrator runs the engine's recovery,
// which resumes the missions of an orchestrator that died (their lease
// expired) within LeaseTTL + RecoveryInterval. Shutdown lets the running
// missions finish within its grace period and hands the rest off to the
// other replicas without compensating them.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// Defaults and limits of ListMissions (the proto documents them).
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// Config tunes a Server. The zero value is valid: no fault injection, the
// saga engine's default retry policy and leases, the owner name derived from
// the host.
type Config struct {
	// AllowFaultInjection accepts StartMission requests with a fault plan.
	// Without it such a request fails with FAILED_PRECONDITION, so a fault
	// plan can never reach production services by accident.
	AllowFaultInjection bool
	// Policy bounds the saga's retries, attempt deadlines and mission
	// deadline; zero fields take internal/saga's defaults.
	Policy saga.Policy
	// Owner names this orchestrator in saga records (default hostname:pid).
	Owner string
	// LeaseTTL is how long a mission may go without its orchestrator
	// renewing its lease before another orchestrator takes it over (default
	// saga.DefaultLeaseTTL, 3s); the lease is renewed every LeaseTTL/3.
	// Every orchestrator sharing a Redis must use the same value.
	LeaseTTL time.Duration
	// RecoveryInterval is the time between two scans for missions whose
	// lease expired (default 500ms): a mission orphaned by a crash resumes at
	// most LeaseTTL + RecoveryInterval after its orchestrator's last renewal.
	RecoveryInterval time.Duration
	// Retention is how long a COMPLETED or COMPENSATED mission keeps its
	// data (record, events, barrier marks, map, poses) before every key of
	// it expires (default DefaultRetention, 7 days). A FAILED mission never
	// expires: it waits for ResumeMission or DeleteMission. Every
	// orchestrator sharing a Redis should use the same value.
	Retention time.Duration
	// JanitorInterval is the time between two trims of the mission index
	// (entries of expired missions; default min(Retention/4, 1 minute)).
	JanitorInterval time.Duration
	// MaxWatchers caps the WatchMission calls (and StartMission/
	// CancelMission waits on a mission driven elsewhere) this orchestrator
	// serves at once; past it they fail RESOURCE_EXHAUSTED
	// (TOO_MANY_WATCHERS), so a crowd of dashboards cannot starve missions
	// (default progress.DefaultMaxWatchers, 1000).
	MaxWatchers int
	// LostCheckInterval is how often a watch (or a wait on a mission
	// driven elsewhere) that received no event in that time checks that
	// its mission still exists (default DefaultLostCheckInterval, 5s): a
	// mission whose data Redis lost will never write the terminal event the
	// watch waits for.
	LostCheckInterval time.Duration
}

// Deps are the collaborators of a Server. Redis and the three step-service
// clients are required.
type Deps struct {
	// Redis holds saga records, the mission index and progress streams.
	Redis redis.UniversalClient
	// GroupCommit, when set, batches the saga writes of concurrent
	// missions (see groupcommit); it must be on Redis. Default: each saga
	// write is a round trip of its own.
	GroupCommit *groupcommit.Group
	// StreamRedis, when set, is a client of the same Redis with a pool of
	// its own, which serves the watchers' stream reads (see watch.go), so
	// that saga writes and lease renewals never wait behind watchers for a
	// connection; default Redis.
	StreamRedis redis.UniversalClient
	// Mapping, Localization and Merge are the step services. Create them with
	// grpcserver.Dial and the orchestrator's telemetry, so that step calls
	// are client spans of the mission's trace.
	Mapping      mappingv1.MappingServiceClient
	Localization localizationv1.LocalizationServiceClient
	Merge        mergev1.MergeServiceClient
	// Publisher writes the orchestrator's progress events; default
	// progress.NewPublisher(Redis, progress.Options{Logger: Logger}).
	Publisher *progress.Publisher
	// Logger receives saga transitions and failures that no caller sees;
	// default discards.
	Logger *slog.Logger
	// Tracer opens the mission span and the spans of step attempts and
	// compensations; default no-op (then missions have no trace id).
	Tracer trace.Tracer
	// Meter records the saga metrics; default no-op.
	Meter metric.Meter
}

// Server implements orchestratorv1.OrchestratorServiceServer. Build it with
// NewServer, which starts its recovery loop; call Shutdown before closing
// Redis.
type Server struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer

	cfg    Config
	rdb    redis.UniversalClient
	store  *saga.Store
	engine *saga.Engine
	// firehose copies the saga's events to the global stream (closed, and
	// so flushed, at the end of Shutdown).
	firehose *progress.Firehose
	mission  *mission
	log      *slog.Logger

	// hub follows the streams of every watcher with one blocking read;
	// skips counts the stream entries watchers skip.
	hub   *progress.Hub
	skips *progress.Skips
	// drained is closed when Shutdown begins: waits on runs end then.
	drained chan struct{}

	mu       sync.Mutex
	draining bool
	// runs holds the missions this server drives, so that a waiting call
	// learns of the end from the run itself, without a Redis round trip.
	runs map[string]*run
	// work counts the background runs and teardowns Shutdown waits for.
	work sync.WaitGroup

	// stopRecovery ends the recovery loop and the index janitor; recovered
	// is closed when both have returned.
	stopRecovery context.CancelFunc
	recovered    chan struct{}
}

var _ orchestratorv1.OrchestratorServiceServer = (*Server)(nil)

// NewServer builds the mission saga on deps' clients and a saga engine on
// deps.Redis, and starts recovering the missions of orchestrators that died
// (see saga.Engine.Recover). Shutdown stops it.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	if deps.Redis == nil || deps.Mapping == nil || deps.Localization == nil || deps.Merge == nil {
		return nil, errors.New("orchestrator: Deps.Redis, Mapping, Localization and Merge are required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pub := deps.Publisher
	if pub == nil {
		pub = progress.NewPublisher(deps.Redis, progress.Options{Logger: log})
	}
	m := &mission{
		mapping:      deps.Mapping,
		localization: deps.Localization,
		merge:        deps.Merge,
		scenarios:    newScenarioAgents(),
	}
	def := m.definition(cfg.Policy)
	// The firehose copies of the saga's events are written after the record
	// script succeeded (another Redis Cluster slot), as a group commit that
	// rides in the store's next round trip.
	fh := progress.NewFirehose(deps.Redis, progress.FirehoseOptions{Logger: log})
	store := saga.NewStore(deps.Redis, eventSink{pub: pub, firehose: fh}, cfg.LeaseTTL).
		WithRetention(retention(cfg, def)).WithSideWriter(fh).
		WithDamagedRecords((&damagedOnce{log: log}).note)
	if deps.GroupCommit != nil {
		store.WithGroupCommit(deps.GroupCommit)
	}
	engine, err := saga.NewEngine(store, *def, saga.Options{
		Owner:  cfg.Owner,
		Tracer: deps.Tracer,
		Meter:  deps.Meter,
		Logger: log,
	})
	if err != nil {
		_ = fh.Close(context.Background())
		return nil, fmt.Errorf("orchestrator: %w", err)
	}
	recoveryCtx, stopRecovery := context.WithCancel(context.Background())
	s := &Server{
		cfg:          cfg,
		rdb:          deps.Redis,
		store:        store,
		firehose:     fh,
		engine:       engine,
		mission:      m,
		log:          log,
		skips:        progress.NewSkips(deps.Meter, log),
		drained:      make(chan struct{}),
		runs:         make(map[string]*run),
		stopRecovery: stopRecovery,
		recovered:    make(chan struct{}),
	}
	s.hub = newHub(cfg, deps, s.skips, log)
	go func() {
		defer close(s.recovered)
		janitorDone := make(chan struct{})
		go func() {
			defer close(janitorDone)
			s.janitor(recoveryCtx)
		}()
		engine.Recover(recoveryCtx, saga.RecoveryOptions{Interval: cfg.RecoveryInterval})
		<-janitorDone
	}()
	return s, nil
}

// handoffTimeout bounds the hand-off at the end of Shutdown's grace period:
// the runs stop at their next step boundary, and one write releases their
// leases.
const handoffTimeout = 5 * time.Second

// Shutdown stops accepting new missions, teardowns and resumes (they fail
// with UNAVAILABLE, so clients retry on another replica), ends every open
// WatchMission and every wait of StartMission, CancelMission and
// ResumeMission at once with UNAVAILABLE (the missions go on; their clients
// follow them on another replica), stops recovering missions, and waits until the missions this server drives have ended or ctx
// ends. The missions still running then are handed off: their runs stop
// without compensating and without another write, and their leases are
// released, so another orchestrator's recovery resumes them within its scan
// interval. A deployment thus neither undoes the missions it interrupts nor
// leaves them waiting for their leases to expire. Shutdown returns an error
// only when the hand-off fails, in which case the leases expire as after a
// crash. Call it before Redis is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.draining
	s.draining = true
	running := len(s.runs)
	s.mu.Unlock()
	if first {
		// Streaming calls and waits end now, with UNAVAILABLE, so that
		// neither the gRPC server's graceful stop nor this drain waits on
		// them; their clients resume on another replica.
		close(s.drained)
		s.hub.Close()
	}
	s.stopRecovery()
	<-s.recovered
	if running > 0 {
		s.log.InfoContext(ctx, "draining running missions", slog.Int("missions", running))
	}
	// First this server's own work (the runs it launched, teardowns and
	// resumes), then whatever else the engine drives (missions it recovered).
	err := waitFor(ctx, &s.work)
	if err == nil {
		err = s.engine.Drain(ctx)
	}
	if err == nil {
		return s.closeFirehose(ctx)
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handoffTimeout)
	defer cancel()
	n, err := s.engine.Handoff(hctx)
	if err != nil {
		return fmt.Errorf("orchestrator: hand off the missions still running at the end of the grace period: %w", err)
	}
	s.log.InfoContext(ctx, "grace period over: missions handed off to the other orchestrators", slog.Int("missions", n))
	// Handoff waited for the runs; their goroutines are returning.
	s.work.Wait()
	return s.closeFirehose(hctx)
}

// closeFirehose flushes the firehose copies still waiting and stops it.
func (s *Server) closeFirehose(ctx context.Context) error {
	if err := s.firehose.Close(ctx); err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	return nil
}

// waitFor waits for wg, or until ctx ends.
func waitFor(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// track reserves a slot for background work, or reports that the server is
// draining. A reserved slot must be released with s.work.Done.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.work.Add(1)
	return true
}

var (
	errDraining  = rpcerr.New(codes.Unavailable, rpcerr.ReasonDraining, "orchestrator is shutting down; retry on another replica")
	errHandedOff = rpcerr.New(codes.Unavailable, rpcerr.ReasonMissionMoved, "orchestrator is shutting down and handed the mission to another replica; retry there to follow it")
	errTakenOver = rpcerr.New(codes.Unavailable, rpcerr.ReasonMissionMoved, "another orchestrator took the mission over; retry to follow it there")
	errInternal  = rpcerr.New(codes.Internal, rpcerr.ReasonInternal, "internal error; see the server log")
)

// handedOff reports whether a run of a mission this server started ended
// because Shutdown handed the mission to another replica: the run was
// stopped (saga.ErrHandedOff), or Handoff took the mission before its run
// began, which Run then refuses as the engine is closed (saga.ErrClosed —
// it can mean nothing else for a saga this engine started or resumed).
func handedOff(err error) bool {
	return errors.Is(err, saga.ErrHandedOff) || errors.Is(err, saga.ErrClosed)
}

// run is a saga driven by this server. rec and err are what Engine.Run
// returned; they are set before done is closed and never written after.
type run struct {
	done chan struct{}
	rec  *saga.Record
	err  error
}

// launch drives the saga key, just created by Start (or reopened by Resume)
// on this engine, in the background, on a context no request cancels (the engine continues the
// mission span that Start opened, so the trace does not depend on it). The
// caller has reserved a work slot. done is called when the run ends.
func (s *Server) launch(key string, done func()) {
	r := &run{done: make(chan struct{})}
	s.mu.Lock()
	s.runs[key] = r
	s.mu.Unlock()
	go func() {
		defer s.work.Done()
		defer done()
		ctx := telemetry.WithLogAttrs(context.Background(), slog.String("mission_id", key))
		r.rec, r.err = s.engine.Run(ctx, key)
		switch {
		case r.err == nil, errors.Is(r.err, saga.ErrHandedOff):
			// The engine logged a hand-off; another orchestrator resumes
			// the mission.
		case errors.Is(r.err, saga.ErrClosed):
			// Handoff took the mission before its run began (see
			// handedOff): a hand-off too, logged here once since the engine
			// logs only the runs it stops.
			s.log.InfoContext(ctx, "mission handed off before its run began")
		case errors.Is(r.err, saga.ErrRunning):
			// Start and Resume reserve the key for this run: a bug.
			s.log.ErrorContext(ctx, "mission run refused", slog.String("error", r.err.Error()))
		default:
			// The engine logged why it stopped driving the mission (taken
			// over, Redis gone, a record of another definition).
		}
		s.mu.Lock()
		// A ResumeMission may have launched the next run of the mission
		// once this one's engine run returned: leave its entry alone.
		if s.runs[key] == r {
			delete(s.runs, key)
		}
		s.mu.Unlock()
		close(r.done)
	}()
}
