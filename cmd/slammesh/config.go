package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/services/mapping"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// serviceConfig configures one service process; fields a service does not
// use keep their defaults.
type serviceConfig struct {
	service  string
	grpcAddr string
	httpAddr string
	redisURL string
	// redisClusterURL, when set, names a Redis Cluster and wins over redisURL.
	redisClusterURL string
	// redisCommandMetrics installs redisotel's per-command metrics hook.
	redisCommandMetrics bool
	// redisWait bounds the wait at start for an unreachable Redis (0: none).
	redisWait time.Duration
	logLevel  slog.Level
	// allowFaults honours FaultPlans carried in requests (tests and demos).
	allowFaults bool
	grace       time.Duration
	// gcHeapFloorMiB is the heap floor kept for the process (gctune).
	gcHeapFloorMiB uint64
	// skipRedisCheck is set by `slammesh dev` for its embedded Redis only;
	// no flag turns the Redis checks off.
	skipRedisCheck bool
	// sec holds TLS, authentication, Redis credentials and exposure
	// switches (security.go).
	sec securityConfig

	// orchestrator
	mappingAddr      string
	localizationAddr string
	mergeAddr        string

	// ops bounds the orchestrator's retries, attempt deadlines and
	// watchers (opsflags.go).
	ops opsConfig
	// leaseTTL and recoveryInterval bound how fast a crashed orchestrator's
	// missions resume elsewhere: within leaseTTL + recoveryInterval.
	leaseTTL         time.Duration
	recoveryInterval time.Duration
	// retention is how long a finished mission keeps its data.
	retention time.Duration
	// jaegerURL is the Jaeger UI the console links traces to; empty: no link.
	jaegerURL string
	// consoleHosts are Host names, besides loopback ones, that a tokenless
	// console on loopback answers (comma-separated).
	consoleHosts string

	// mapping
	capacityCells uint64
	// retainedCells is the budget of finished missions' maps.
	retainedCells uint64

	// localization
	parallelism int
}

// defaultPorts are the gRPC and HTTP ports of DESIGN.md §3.
var defaultPorts = map[string][2]int{
	"orchestrator": {50051, 9091},
	"mapping":      {50052, 9092},
	"localization": {50053, 9093},
	"merge":        {50054, 9094},
}

// envFlags registers flags whose defaults come from environment variables,
// so compose and Kubernetes can configure by env and people by flag.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

func (e *envFlags) env(key string) (string, bool) {
	v := e.getenv(key)
	return v, v != ""
}

func (e *envFlags) string(p *string, name, key, def, usage string) {
	if v, ok := e.env(key); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, key))
}

func (e *envFlags) bool(p *bool, name, key string, usage string) {
	def := false
	if v, ok := e.env(key); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", key, v))
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, key))
}

func (e *envFlags) uint64(p *uint64, name, key string, def uint64, usage string) {
	if v, ok := e.env(key); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want a non-negative integer", key, v))
		}
		def = n
	}
	e.fs.Uint64Var(p, name, def, fmt.Sprintf("%s (env %s)", usage, key))
}

func (e *envFlags) int(p *int, name, key string, def int, usage string) {
	if v, ok := e.env(key); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want an integer", key, v))
		}
		def = n
	}
	e.fs.IntVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, key))
}

func (e *envFlags) duration(p *time.Duration, name, key string, def time.Duration, usage string) {
	if v, ok := e.env(key); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration such as 10s", key, v))
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, key))
}

func (e *envFlags) level(p *slog.Level, name, key string) {
	def := "info"
	if v, ok := e.env(key); ok {
		def = v
	}
	*p = slog.LevelInfo
	e.fs.Func(name, fmt.Sprintf("log level: debug, info, warn, error (env %s, default %s)", key, def), func(s string) error { return p.UnmarshalText([]byte(s)) })
	if err := p.UnmarshalText([]byte(def)); err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", key, def, err))
	}
}

// parse parses args and reports bad environment values and stray arguments.
func (e *envFlags) parse(args []string) error {
	if err := e.fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if len(e.errs) > 0 {
		return fmt.Errorf("%w: %v", errUsage, e.errs[0])
	}
	if e.fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, e.fs.Args())
	}
	return nil
}

// addCommon registers the flags every service shares.
func addCommon(e *envFlags, c *serviceConfig, grpcDef, httpDef string) {
	e.string(&c.grpcAddr, "grpc-addr", "SLAMMESH_GRPC_ADDR", grpcDef, "gRPC listen address")
	e.string(&c.httpAddr, "http-addr", "SLAMMESH_HTTP_ADDR", httpDef, "HTTP listen address of /metrics, /healthz, /readyz (and /debug/pprof with --enable-pprof)")
	e.string(&c.redisURL, "redis-url", "REDIS_URL", "redis://localhost:6379/0", "Redis URL (rediss:// for TLS; user:password@ for an ACL user)")
	addClusterURL(e, c)
	e.duration(&c.redisWait, "redis-wait", "SLAMMESH_REDIS_WAIT", defaultRedisWait,
		"how long to wait at start for a Redis that cannot be reached, logging every 5 s (one loading its dataset is waited for up to 10m; 0: exit at once)")
	addSecurity(e, &c.sec, c.service)
	e.level(&c.logLevel, "log-level", "SLAMMESH_LOG_LEVEL")
	e.bool(&c.allowFaults, "allow-fault-injection", "SLAMMESH_ALLOW_FAULT_INJECTION", "honour fault plans in requests (tests and demos only)")
	e.duration(&c.grace, "grace", "SLAMMESH_GRACE", 10*time.Second, "shutdown grace period for in-flight calls and running sagas")
	addGCHeapFloor(e, c)
}

// defaultGCHeapFloorMiB is the heap floor a process keeps unless told
// otherwise: a mission's garbage (an office mission about 19 MB) then no
// longer triggers a collection of a few-MB live heap per mission.
const defaultGCHeapFloorMiB = 64

// maxGCHeapFloorMiB bounds --gc-heap-floor (1 TiB).
const maxGCHeapFloorMiB = 1 << 20

// addGCHeapFloor registers the heap floor flag (internal/gctune).
func addGCHeapFloor(e *envFlags, c *serviceConfig) {
	e.uint64(&c.gcHeapFloorMiB, "gc-heap-floor", "SLAMMESH_GC_HEAP_FLOOR", defaultGCHeapFloorMiB,
		"MiB the heap may grow to before the garbage collector runs, however small the live heap (GOGC is raised to reach it, back to the default once the live heap passes about half of it; 0: Go's default; ignored when GOGC is set to off or a number; GOMEMLIMIT still applies)")
}

func addSpecific(e *envFlags, c *serviceConfig, service string) {
	switch service {
	case "orchestrator":
		e.string(&c.mappingAddr, "mapping-addr", "SLAMMESH_MAPPING_ADDR", "localhost:50052", "mapping service gRPC target")
		e.string(&c.localizationAddr, "localization-addr", "SLAMMESH_LOCALIZATION_ADDR", "localhost:50053", "localization service gRPC target")
		e.string(&c.mergeAddr, "merge-addr", "SLAMMESH_MERGE_ADDR", "localhost:50054", "merge service gRPC target")
		addRecovery(e, c)
		addOps(e, &c.ops)
		addRetention(e, c)
		addConsole(e, c)
	case "mapping":
		e.uint64(&c.capacityCells, "capacity-cells", "SLAMMESH_CAPACITY_CELLS", 16_000_000, "map cells all missions may hold at once")
		addRetainedCells(e, c)
	case "localization":
		e.int(&c.parallelism, "parallelism", "SLAMMESH_PARALLELISM", 0, "agents localized at once (0: number of CPUs)")
	}
}

// addClusterURL registers the Redis Cluster flag, and the Redis command
// metrics switch.
func addClusterURL(e *envFlags, c *serviceConfig) {
	e.string(&c.redisClusterURL, "redis-cluster-url", "REDIS_CLUSTER_URL", "",
		"Redis Cluster URL, redis://host:port?addr=host2:port&addr=… (rediss:// for TLS); when set it wins over --redis-url")
	e.bool(&c.redisCommandMetrics, "redis-command-metrics", "SLAMMESH_REDIS_COMMAND_METRICS",
		"export a histogram of every Redis command on /metrics (costs CPU on every command)")
}

// addRetention registers the orchestrator's retention flag.
func addRetention(e *envFlags, c *serviceConfig) {
	e.duration(&c.retention, "retention", "SLAMMESH_RETENTION", orchestrator.DefaultRetention,
		"how long a completed or compensated mission keeps its data (record, events, map, poses) before it expires; failed missions wait for an operator")
}

// addRetainedCells registers the mapping service's budget of finished
// missions' maps.
func addRetainedCells(e *envFlags, c *serviceConfig) {
	e.uint64(&c.retainedCells, "retained-cells", "SLAMMESH_RETAINED_CELLS", mapping.DefaultRetainedCells,
		"map cells finished missions' maps may hold; past it the oldest are evicted (0: none kept)")
}

// addConsole registers the console's flags.
func addConsole(e *envFlags, c *serviceConfig) {
	e.string(&c.jaegerURL, "jaeger-ui-url", "JAEGER_UI_URL", "", "Jaeger UI base URL the console links mission traces to, e.g. http://localhost:16686")
	e.string(&c.consoleHosts, "console-hosts", "SLAMMESH_CONSOLE_HOSTS", "", "comma-separated Host names a tokenless console on loopback answers besides localhost (e.g. a forwarded port's name in a remote dev environment); it refuses others, the names a rebound page of another site sends")
}

// addRecovery registers the orchestrator's lease and recovery flags.
func addRecovery(e *envFlags, c *serviceConfig) {
	e.duration(&c.leaseTTL, "lease-ttl", "SLAMMESH_LEASE_TTL", saga.DefaultLeaseTTL,
		"how long a mission survives its orchestrator's silence before another takes it over (same on every orchestrator)")
	e.duration(&c.recoveryInterval, "recovery-interval", "SLAMMESH_RECOVERY_INTERVAL", 500*time.Millisecond,
		"how often to look for missions whose orchestrator died")
}

func parseServiceConfig(service string, args []string, getenv func(string) string, stderr io.Writer) (serviceConfig, error) {
	c := serviceConfig{service: service}
	fs := flag.NewFlagSet("slammesh "+service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	ports := defaultPorts[service]
	addCommon(e, &c, fmt.Sprintf(":%d", ports[0]), fmt.Sprintf(":%d", ports[1]))
	addSpecific(e, &c, service)
	if err := e.parse(args); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c serviceConfig) validate() error {
	if c.service == "orchestrator" || c.service == "dev" {
		if err := c.ops.validate(); err != nil {
			return err
		}
	}
	switch {
	case c.grace < 0:
		return fmt.Errorf("%w: --grace must not be negative", errUsage)
	case c.redisWait < 0:
		return fmt.Errorf("%w: --redis-wait must not be negative", errUsage)
	case c.gcHeapFloorMiB > maxGCHeapFloorMiB:
		return fmt.Errorf("%w: --gc-heap-floor %d MiB is more than %d", errUsage, c.gcHeapFloorMiB, maxGCHeapFloorMiB)
	case c.parallelism < 0:
		return fmt.Errorf("%w: --parallelism must not be negative", errUsage)
	case (c.service == "orchestrator" || c.service == "dev") && c.leaseTTL < minLeaseTTL:
		return fmt.Errorf("%w: --lease-ttl must be at least %v", errUsage, minLeaseTTL)
	case (c.service == "orchestrator" || c.service == "dev") && c.recoveryInterval <= 0:
		return fmt.Errorf("%w: --recovery-interval must be positive", errUsage)
	case (c.service == "orchestrator" || c.service == "dev") && c.retention < minRetention:
		return fmt.Errorf("%w: --retention must be at least %v", errUsage, minRetention)
	case c.service == "mapping" && c.capacityCells == 0:
		return fmt.Errorf("%w: --capacity-cells must be positive", errUsage)
	}
	if c.service == "orchestrator" {
		for _, a := range []struct{ flag, addr string }{{"--mapping-addr", c.mappingAddr}, {"--localization-addr", c.localizationAddr}, {"--merge-addr", c.mergeAddr}} {
			if err := grpcserver.CheckTarget(a.addr); err != nil {
				return fmt.Errorf("%w: %s %q: %v", errUsage, a.flag, a.addr, err)
			}
		}
	}
	// Checked here, before Redis is dialled, rather than at the listen
	// (found by a review: a mistyped port waited for Redis first).
	for _, a := range []struct{ flag, addr string }{{"--grpc-addr", c.grpcAddr}, {"--http-addr", c.httpAddr}} {
		if a.addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a.addr)
		if err == nil {
			_, err = net.LookupPort("tcp", port)
		}
		if err != nil {
			return fmt.Errorf("%w: %s %q: %v", errUsage, a.flag, a.addr, err)
		}
	}
	return nil
}

// minRetention keeps a finished mission readable for a moment at least: a
// StartMission with wait answers from the record it just finished.
const minRetention = time.Second

// minLeaseTTL keeps leases coarser than the millisecond scores they are
// stored as, and renewals (every third of the TTL) from flooding Redis.
const minLeaseTTL = 30 * time.Millisecond

// devConfig configures `slammesh dev`: the four services in one process.
type devConfig struct {
	base serviceConfig
	// host the four services bind to; loopback by default, as dev is for one machine.
	host string
	// redisURL empty means: a private redis-server, else an embedded Redis.
	redisURL  string
	redisPort int
	// redisPortGiven: --redis-port (or its variable) was set, and
	// --free-ports keeps it.
	redisPortGiven bool
	demo           bool
	// freePorts binds every service to a free port instead of the
	// production ones (tests; several meshes on one machine).
	freePorts bool
	// logFile receives the services' JSON logs: empty for a fresh temporary
	// file, "-" for stderr.
	logFile string
}

func parseDevConfig(args []string, getenv func(string) string, stderr io.Writer) (devConfig, error) {
	var c devConfig
	fs := flag.NewFlagSet("slammesh dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	e.string(&c.host, "host", "SLAMMESH_HOST", "127.0.0.1", "address the four services bind to (ports as in production: 50051-50054, 9091-9094)")
	e.string(&c.redisURL, "redis-url", "REDIS_URL", "", "Redis URL; empty starts a private redis-server (or an embedded Redis)")
	addClusterURL(e, &c.base)
	e.int(&c.redisPort, "redis-port", "SLAMMESH_DEV_REDIS_PORT", 6380, "port of the private redis-server (fixed, so that redis-cli -p finds it; refused when another process holds it)")
	e.level(&c.base.logLevel, "log-level", "SLAMMESH_LOG_LEVEL")
	addDevSecurity(e, &c.base.sec)
	e.bool(&c.base.allowFaults, "allow-fault-injection", "SLAMMESH_ALLOW_FAULT_INJECTION", "honour fault plans in requests")
	e.duration(&c.base.grace, "grace", "SLAMMESH_GRACE", 10*time.Second, "shutdown grace period")
	addGCHeapFloor(e, &c.base)
	e.uint64(&c.base.capacityCells, "capacity-cells", "SLAMMESH_CAPACITY_CELLS", 16_000_000, "map cells all missions may hold at once")
	addRetainedCells(e, &c.base)
	e.int(&c.base.parallelism, "parallelism", "SLAMMESH_PARALLELISM", 0, "agents localized at once (0: number of CPUs)")
	addRecovery(e, &c.base)
	addOps(e, &c.base.ops)
	addRetention(e, &c.base)
	addConsole(e, &c.base)
	fs.BoolVar(&c.demo, "demo", false, "once up, run one demo mission and print its progress")
	fs.BoolVar(&c.freePorts, "free-ports", false, "bind every service to a free port instead of 50051-50054 and 9091-9094, and the private Redis too unless --redis-port is given (the addresses are printed)")
	e.string(&c.logFile, "log-file", "SLAMMESH_LOG_FILE", "", "file the services' JSON logs go to; empty: a new temporary file, -: stderr")
	if err := e.parse(args); err != nil {
		return c, err
	}
	if c.redisPort <= 0 || c.redisPort > 65535 {
		return c, fmt.Errorf("%w: --redis-port %d out of range", errUsage, c.redisPort)
	}
	c.redisPortGiven = getenv("SLAMMESH_DEV_REDIS_PORT") != ""
	fs.Visit(func(f *flag.Flag) { c.redisPortGiven = c.redisPortGiven || f.Name == "redis-port" })
	c.base.service = "dev"
	if err := c.base.validate(); err != nil {
		return c, err
	}
	return c, c.checkExposure()
}
