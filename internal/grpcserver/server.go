// Package grpcserver is the bootstrap every slammesh service shares: a gRPC
// server with OpenTelemetry instrumentation, call logging, panic recovery,
// grpc.health.v1 and server reflection, TLS when given credentials, an HTTP
// side port for /metrics, /healthz and /readyz (and /debug/pprof only when
// enabled), readiness that follows a dependency check (Config.Ready),
// and an ordered graceful shutdown. Dial is the matching client.
//
// A service builds a Server with New, registers its handlers on it (Server is
// a grpc.ServiceRegistrar) and calls Serve, which blocks until its context is
// cancelled:
//
//	srv, err := grpcserver.New(cfg, grpcserver.Deps{Telemetry: tel, Logger: log})
//	if err != nil { ... }
//	mappingv1.RegisterMappingServiceServer(srv, mapping.NewServer(...))
//	err = srv.Serve(ctx)
//
// Serve stops the gRPC and HTTP servers only. Closing Redis and flushing
// telemetry (Telemetry.Shutdown, on a fresh context) stay with the caller,
// after Serve returns, so that the calls drained during shutdown still reach
// Redis and still export their spans.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultGracePeriod      = 10 * time.Second
	DefaultMaxMessageBytes  = 16 << 20 // a merged map with its PNG exceeds gRPC's 4 MiB default
	DefaultKeepaliveMinTime = 10 * time.Second
	DefaultKeepaliveTime    = time.Minute
	DefaultKeepaliveTimeout = 20 * time.Second
	// DefaultMaxConnectionAge: clients dialling dns:/// (the step services
	// behind headless Services) re-resolve only when a connection ends, so
	// without an age a replica the HorizontalPodAutoscaler adds would get
	// no calls from the orchestrators already connected.
	DefaultMaxConnectionAge = time.Minute
	// DefaultStreamWorkers covers the calls in flight at 32 concurrent
	// missions on each service (the orchestrator's waiting StartMission
	// calls are the longest held).
	DefaultStreamWorkers = 64
	// DefaultHTTPReadTimeout bounds the read of an HTTP request, body
	// included (the console's login form is the largest, under a KiB).
	DefaultHTTPReadTimeout = 30 * time.Second
)

// httpShutdownTimeout bounds the drain of the HTTP side port; what it serves
// is short-lived except pprof profiles, which may be cut off.
const httpShutdownTimeout = 5 * time.Second

// Config configures a Server. Service, GRPCAddr and HTTPAddr are required;
// zero durations and sizes take the Default* values.
type Config struct {
	// Service names the service in logs, e.g. "mapping".
	Service string
	// GRPCAddr is the gRPC listen address, e.g. ":50052". A zero port
	// ("127.0.0.1:0") picks a free one; Server.Addr reports it.
	GRPCAddr string
	// HTTPAddr is the listen address of /metrics, /healthz, /readyz (and
	// /debug/pprof with EnablePprof), e.g. ":9092". A zero port picks a free
	// one; Server.HTTPAddr reports it.
	HTTPAddr string
	// Creds secures the gRPC port (meshtls.ServerCredentials); nil serves
	// plaintext, which callers allow only on loopback or when told to
	// (docs/security.md).
	Creds credentials.TransportCredentials
	// HTTPReadTimeout bounds the read of a request on the HTTP port, its
	// body included, so that a client sending slowly cannot hold a
	// connection. It does not bound responses: net/http lifts the read
	// deadline once the request is read, and a live feed streams on.
	HTTPReadTimeout time.Duration
	// EnablePprof serves /debug/pprof on the HTTP port. Off by default: a
	// profile or heap dump is for the operator, not for whoever reaches
	// the port.
	EnablePprof bool
	// GracePeriod bounds how long shutdown waits for in-flight calls before
	// cutting them off.
	GracePeriod time.Duration
	// MaxMessageBytes bounds received and sent messages; a larger request
	// fails with RESOURCE_EXHAUSTED naming both sizes.
	MaxMessageBytes int
	// KeepaliveMinTime is the shortest client ping interval tolerated; a
	// client pinging more often is disconnected (GOAWAY "too_many_pings").
	// It must stay below the interval Dial's clients use (30 s).
	KeepaliveMinTime time.Duration
	// KeepaliveTime is how long a connection may be idle before the server
	// pings the client, so that connections to vanished peers are reaped.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for a ping ack before
	// closing the connection.
	KeepaliveTimeout time.Duration
	// MaxConnectionAge is how long a connection takes new calls: then the
	// server sends GOAWAY (±10 % jitter), the calls in flight finish (no
	// grace limit: none is cut off), and the client reconnects and
	// re-resolves its target, which is how a dns:/// client finds new
	// replicas.
	MaxConnectionAge time.Duration
	// Ready, when set, checks what serving needs besides this process (the
	// binaries: a Redis PING). Only the readiness health service
	// (ReadinessService, /readyz) follows it; see watchReadiness.
	Ready func(ctx context.Context) error
	// ReadyInterval is how often Ready is called, and its deadline.
	ReadyInterval time.Duration
	// UnreadyAfter is how long Ready must have failed before readiness
	// goes NOT_SERVING: a blip (a Redis failover) does not drain a replica.
	UnreadyAfter time.Duration
	// StreamWorkers is how many goroutines are kept to run calls; a call
	// arriving while all are busy gets a goroutine of its own, as every
	// call would without them. A kept goroutine's stack has already grown
	// to what a handler needs: a new goroutine per call grew its stack
	// (runtime.morestack, copying it) on every call, 8 % of the mesh's CPU
	// at 32 concurrent overhead missions (docs/performance.md).
	StreamWorkers int
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Service == "":
		return c, errors.New("grpcserver: empty Service")
	case c.GRPCAddr == "":
		return c, errors.New("grpcserver: empty GRPCAddr")
	case c.HTTPAddr == "":
		return c, errors.New("grpcserver: empty HTTPAddr")
	case c.GracePeriod < 0, c.MaxMessageBytes < 0, c.StreamWorkers < 0, c.KeepaliveMinTime < 0, c.KeepaliveTime < 0, c.KeepaliveTimeout < 0, c.MaxConnectionAge < 0,
		c.ReadyInterval < 0, c.UnreadyAfter < 0, c.HTTPReadTimeout < 0:
		return c, fmt.Errorf("grpcserver: negative duration or size in %+v", c)
	}
	setDefault(&c.GracePeriod, DefaultGracePeriod)
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.KeepaliveMinTime, DefaultKeepaliveMinTime)
	setDefault(&c.KeepaliveTime, DefaultKeepaliveTime)
	setDefault(&c.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDefault(&c.MaxConnectionAge, DefaultMaxConnectionAge)
	setDefault(&c.StreamWorkers, DefaultStreamWorkers)
	setDefault(&c.ReadyInterval, DefaultReadyInterval)
	setDefault(&c.UnreadyAfter, DefaultUnreadyAfter)
	setDefault(&c.HTTPReadTimeout, DefaultHTTPReadTimeout)
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Deps are the collaborators of a Server.
type Deps struct {
	// Telemetry provides the tracer and meter providers of the service and the
	// /metrics handler. Required.
	Telemetry *telemetry.Telemetry
	// Logger receives call logs, recovered panics and lifecycle messages; use
	// telemetry.NewLogger so that lines carry trace ids. Required.
	Logger *slog.Logger
	// UnaryInterceptors run, in order, inside logging and panic recovery, so
	// their errors are logged and their panics recovered; the span of the call
	// is already in their context. The step services pass the progress
	// interceptor here.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors are the streaming counterpart of UnaryInterceptors.
	StreamInterceptors []grpc.StreamServerInterceptor
	// CallScope puts a telemetry call scope around each call, outside its
	// access log, so that what the interceptors learn and set with
	// telemetry.WithCallAttrs (the authenticated caller) is on the call's
	// "finished call" line too. One allocation per call; set it with
	// authentication.
	CallScope bool
}

// Server is a gRPC server plus its HTTP side port. Build it with New,
// register services on it, then call Serve once.
type Server struct {
	cfg       Config
	log       *slog.Logger
	grpc      *grpc.Server
	health    *health.Server
	http      *http.Server
	mux       *http.ServeMux
	grpcLis   net.Listener
	httpLis   net.Listener
	started   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{} // closed by Close, so that Serve returns
	// stopHTTP cancels the context of every HTTP request when shutdown
	// begins, so long-lived responses (a console's live feeds) end and the
	// HTTP server can drain.
	stopHTTP context.CancelFunc
}

// New validates cfg, binds both listen addresses (so that bind errors surface
// here and Addr is known before Serve) and builds the servers. Until Serve is
// called nothing is accepted; if Serve will not be called, call Close to
// release the ports.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Telemetry == nil || deps.Logger == nil {
		return nil, errors.New("grpcserver: Deps.Telemetry and Deps.Logger are required")
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: %s gRPC listener: %w", cfg.Service, err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("grpcserver: %s HTTP listener: %w", cfg.Service, err), grpcLis.Close())
	}

	log := deps.Logger
	s := &Server{
		cfg:     cfg,
		log:     log,
		health:  health.NewServer(),
		grpcLis: grpcLis,
		httpLis: httpLis,
		closed:  make(chan struct{}),
	}
	// health.NewServer reports the overall status "" as SERVING from the
	// start; nothing is served until Serve.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	// Health probes (compose, Kubernetes) arrive every few seconds: tracing
	// and logging them would bury the calls that matter.
	notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	callLog := interceptorLogger(log)
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithDurationField(durationField),
	}
	// logCalls is the unary call log with extra options, health checks left
	// out.
	logCalls := func(extra ...logging.Option) grpc.UnaryServerInterceptor {
		return selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(callLog, slices.Concat(logOpts, extra)...), notHealth)
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(s.recoverPanic)
	// The send limit is checked inside logging, so a reply too large to
	// send is logged with the status its client gets, not as OK.
	unary := append([]grpc.UnaryServerInterceptor{
		lazyCallLog(log, logCalls(), logCalls(logging.WithFieldsFromContextAndCallMeta(replayedDuration))),
		sendLimitUnary(cfg.MaxMessageBytes),
		recovery.UnaryServerInterceptor(recoverOpt),
	}, deps.UnaryInterceptors...)
	stream := append([]grpc.StreamServerInterceptor{
		selector.StreamServerInterceptor(logging.StreamServerInterceptor(callLog, logOpts...), notHealth),
		sendLimitStream(cfg.MaxMessageBytes),
		recovery.StreamServerInterceptor(recoverOpt),
	}, deps.StreamInterceptors...)
	if deps.CallScope {
		unary = append([]grpc.UnaryServerInterceptor{callScopeUnary}, unary...)
		stream = append([]grpc.StreamServerInterceptor{callScopeStream}, stream...)
	}

	tel := deps.Telemetry
	var creds []grpc.ServerOption
	if cfg.Creds != nil {
		creds = append(creds, grpc.Creds(cfg.Creds))
	}
	s.grpc = grpc.NewServer(append(creds,
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider()),
			otelgrpc.WithMeterProvider(tel.MeterProvider()),
			otelgrpc.WithPropagators(tel.Propagator()),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
		)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true, // Dial's clients ping idle connections too
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout, MaxConnectionAge: cfg.MaxConnectionAge}),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(cfg.MaxMessageBytes),
		grpc.NumStreamWorkers(uint32(cfg.StreamWorkers)),
	)...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.MetricsHandler())
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	if cfg.EnablePprof {
		if !IsLoopback(httpLis.Addr().String()) {
			log.Warn("pprof is served on a non-loopback address: anyone who reaches it can profile this process and dump its heap", "http_addr", httpLis.Addr().String())
		}
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.mux = mux
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	s.stopHTTP = stopHTTP
	s.http = &http.Server{
		Handler:           mux,
		BaseContext:       func(net.Listener) context.Context { return httpCtx },
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// interceptorLogger adapts slog to go-grpc-middleware's logging interface
// (copied from its examples/server/main.go). The context is passed through,
// so the telemetry handler adds the call's trace and span ids.
func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// durationField logs a call's duration as grpc.time_ms, like the library's
// default, but as a JSON number rather than a string, so that log queries can
// compare it.
func durationField(d time.Duration) logging.Fields {
	return logging.Fields{"grpc.time_ms", float64(d.Microseconds()) / 1000}
}

// recoverPanic turns a handler panic into codes.Internal with the INTERNAL
// ErrorInfo every other unexpected failure carries, so that callers matching
// on reasons (the saga's classifier, event writers) see a panic like any
// other bug. The panic value and stack go to the log only: they may hold
// internals the caller must not see.
func (s *Server) recoverPanic(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "grpc handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return rpcerr.New(codes.Internal, rpcerr.ReasonInternal, "internal error")
}

// RegisterService registers a service implementation, making Server a
// grpc.ServiceRegistrar for the generated Register…Server functions. Call it
// before Serve: gRPC treats a registration after Serve as fatal.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// Handle mounts h on the HTTP side port under pattern (http.ServeMux
// syntax), beside /metrics, /healthz, /readyz and /debug/pprof, which stay more
// specific than any catch-all such as "/". A service mounts its web pages
// this way (the orchestrator its console) without this package knowing them.
// Call it before Serve; it panics, like http.ServeMux.Handle, on a pattern
// that is malformed or conflicts with one already mounted.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Addr returns the bound gRPC address.
func (s *Server) Addr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr returns the bound address of the HTTP side port.
func (s *Server) HTTPAddr() net.Addr { return s.httpLis.Addr() }

// Serve marks every registered service SERVING in grpc.health.v1 (plus the
// overall status "" and ReadinessService, which then follows Config.Ready),
// serves gRPC and HTTP, and blocks until ctx is cancelled or a server fails.
// It then shuts down in order:
//
//  1. health goes NOT_SERVING (so /healthz and /readyz answer 503 and load
//     balancers stop routing here while calls drain);
//  2. GracefulStop waits for in-flight calls, for at most GracePeriod, after
//     which Stop cuts the rest off;
//  3. the HTTP server stops.
//
// It returns nil after a shutdown caused by ctx or Close, and the error of a
// server that failed otherwise. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("grpcserver: Serve called twice")
	}
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_SERVING)
	s.log.InfoContext(ctx, "serving", "grpc_addr", s.Addr().String(), "http_addr", s.HTTPAddr().String(),
		"tls", s.cfg.Creds != nil, "pprof", s.cfg.EnablePprof)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpcserver: %s gRPC: %w", s.cfg.Service, err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("grpcserver: %s HTTP: %w", s.cfg.Service, err)
		}
		return nil
	})
	if s.cfg.Ready != nil {
		g.Go(func() error {
			s.watchReadiness(gctx)
			return nil
		})
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-s.closed:
			return nil
		}
		return s.shutdown(context.WithoutCancel(ctx))
	})
	return g.Wait()
}

// shutdown drains and stops both servers; see Serve. ctx carries log values
// only.
func (s *Server) shutdown(ctx context.Context) error {
	s.log.InfoContext(ctx, "shutting down", "grace_period", s.cfg.GracePeriod.String())
	s.health.Shutdown()

	hardStop := time.AfterFunc(s.cfg.GracePeriod, func() {
		s.log.WarnContext(ctx, "grace period elapsed, stopping in-flight calls")
		s.grpc.Stop()
	})
	s.grpc.GracefulStop()
	hardStop.Stop()

	s.stopHTTP()
	httpCtx, cancel := context.WithTimeout(ctx, httpShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(httpCtx); err != nil {
		return errors.Join(fmt.Errorf("grpcserver: %s HTTP shutdown: %w", s.cfg.Service, err), s.http.Close())
	}
	s.log.InfoContext(ctx, "stopped")
	return nil
}

// Close stops the server at once without draining: in-flight calls fail and
// the listeners are released. It is meant for a Server that will not be
// served (setup failed after New); to drain, cancel Serve's context instead.
// After Close, a running Serve returns nil and a later Serve returns at once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.close() })
	return err
}

func (s *Server) close() error {
	close(s.closed)
	s.stopHTTP()
	s.health.Shutdown()
	s.grpc.Stop()
	err := s.http.Close()
	// Listeners that were never served are not closed by the servers.
	for _, lis := range []net.Listener{s.grpcLis, s.httpLis} {
		if cerr := lis.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("grpcserver: %s close: %w", s.cfg.Service, err)
	}
	return nil
}

// IsLoopback reports whether a listen address ("host:port") binds only to
// loopback: 127.0.0.0/8, ::1 or localhost. An empty host (":50051") binds
// every interface and is not loopback; nor is a host that does not parse.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
