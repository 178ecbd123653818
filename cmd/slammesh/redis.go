package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redischeck"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// redisCAParam is the URL query parameter naming the CA file of a rediss://
// URL, as an alternative to --redis-ca; go-redis does not know it, so it
// is taken out before the URL is parsed.
const redisCAParam = "tls_ca"

// redisOptions is the one place a Redis client's options are built from
// configuration: the URL (redis:// or rediss://, with user:password@ for an
// ACL user), a CA file for rediss:// (--redis-ca, or tls_ca= in the URL),
// and a password file (REDIS_PASSWORD_FILE) that keeps the password out of
// the URL, the environment and the process list.
func redisOptions(rawURL string, sec securityConfig) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, password included: report only
		// its cause, next to the redacted URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: redis URL %s: %w", errUsage, redactURL(rawURL), redactErr(err, rawURL))
	}
	caFile := sec.redisCA
	q := u.Query()
	if v := q.Get(redisCAParam); v != "" {
		if caFile != "" && caFile != v {
			return nil, fmt.Errorf("%w: redis CA given twice: --redis-ca %s and %s=%s in the URL", errUsage, caFile, redisCAParam, v)
		}
		caFile = v
		q.Del(redisCAParam)
		u.RawQuery = q.Encode()
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("%w: redis URL %s: %w", errUsage, u.Redacted(), redactErr(err, rawURL))
	}
	if caFile != "" {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("%w: a Redis CA (%s) needs a rediss:// URL, got %s", errUsage, caFile, u.Redacted())
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis CA %s holds no PEM certificate", caFile)
		}
		opts.TLSConfig.RootCAs = pool
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if sec.redisPasswordFile != "" {
		if opts.Password != "" {
			return nil, fmt.Errorf("%w: Redis password given twice: in the URL and in %s", errUsage, sec.redisPasswordFile)
		}
		b, err := os.ReadFile(sec.redisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis password file: %w", err)
		}
		opts.Password = strings.TrimRight(string(b), "\r\n")
		if opts.Password == "" {
			return nil, fmt.Errorf("redis password file %s is empty", sec.redisPasswordFile)
		}
		f := &filePassword{path: sec.redisPasswordFile, user: opts.Username, last: opts.Password}
		opts.CredentialsProviderContext = f.credentials
	}
	return opts, nil
}

// filePassword gives each new Redis connection the password in its file,
// read again at every dial: a password rotated in the file reaches the
// connections made after it (docs/security.md), as the certificates and
// tokens reach theirs, where reading it once at start took the mesh down
// until every service restarted (found by a review). A read that fails, or
// finds the file empty (a rewrite half done), keeps the last password read.
type filePassword struct {
	path, user string
	mu         sync.Mutex
	last       string
}

// credentials is a go-redis CredentialsProviderContext.
func (f *filePassword) credentials(context.Context) (string, string, error) {
	b, err := os.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if pw := strings.TrimRight(string(b), "\r\n"); err == nil && pw != "" {
		f.last = pw
	}
	return f.user, f.last, nil
}

// urlPassword returns the text between "user:" and the last "@" of a
// URL's authority, found without url.Parse so that it is found in a URL
// url.Parse refuses too (e.g. an unescaped "%" or "/" in the password).
func urlPassword(rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// redactURL returns rawURL with its password replaced by "xxxxx".
func redactURL(rawURL string) string {
	pw := urlPassword(rawURL)
	if pw == "" {
		return rawURL
	}
	return strings.Replace(rawURL, ":"+pw+"@", ":xxxxx@", 1)
}

// redactErr removes the URL's password (as written, and as %q quotes it)
// from an error's text.
func redactErr(err error, rawURL string) error {
	pw := urlPassword(rawURL)
	if pw == "" {
		return err
	}
	msg := err.Error()
	quoted := strconv.Quote(pw)
	for _, s := range []string{pw, quoted[1 : len(quoted)-1]} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// redisLoadWait bounds how long a service waits at its start for a Redis
// that is loading its dataset (an AOF of a few GB takes minutes).
const redisLoadWait = 10 * time.Minute

// defaultRedisWait is how long a service waits at its start for a Redis
// it cannot reach (--redis-wait).
const defaultRedisWait = 2 * time.Minute

// errStoppedWaiting ends a start asked to stop while it waited for Redis:
// a clean stop, not a failure.
var errStoppedWaiting = errors.New("stopped while waiting for redis")

// awaitRedis returns once Redis answers a PING with anything but LOADING or
// a sign that it is not up yet (redisNotUp): a service started beside its
// Redis (a compose up, a node reboot, a Kubernetes rollout while Redis
// restarts) then waits for it, logging every 5 s, instead of exiting into
// a restart loop whose back-off outlasts the outage (found by reviews: a
// LOADING Redis killed every service restarted beside it; an unreachable
// one needed a restart policy outside Kubernetes). LOADING is waited for
// up to redisLoadWait, an unreachable Redis up to unreachable (0: not at
// all); past its bound the last error is returned, saying how long it was
// waited for. Any other answer is returned at once, nil included; the end
// of ctx is errStoppedWaiting.
func awaitRedis(ctx context.Context, rdb redis.UniversalClient, tlsOn bool, log *slog.Logger, unreachable time.Duration) error {
	start := time.Now()
	var logged time.Time
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pingAll(pingCtx, rdb)
		cancel()
		if ctx.Err() != nil {
			return errStoppedWaiting
		}
		if err == nil {
			return nil
		}
		waited := time.Since(start)
		// A loading Redis answers at once; an unreachable one costs
		// go-redis's own dial retries, and a log line of its own, per PING.
		what, bound, poll := "is loading its dataset", redisLoadWait, 200*time.Millisecond
		switch {
		case strings.HasPrefix(err.Error(), "LOADING"):
		case redisNotUp(err, tlsOn):
			what, bound, poll = "is unreachable", unreachable, time.Second
			if strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
				what = "does not serve all its hash slots yet"
			}
			if bound == 0 {
				return err
			}
		default:
			return err
		}
		if waited > bound {
			return fmt.Errorf("%w (waited %v for it, at most %v)", err, waited.Round(time.Second), bound)
		}
		if time.Since(logged) >= 5*time.Second {
			log.WarnContext(ctx, "redis "+what+"; waiting for it", "error", err.Error(),
				"waited", waited.Round(time.Second).String(), "at_most", bound.String())
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return errStoppedWaiting
		case <-time.After(poll):
		}
	}
}

// redisNotUp reports whether a PING's error says that Redis is not up yet,
// rather than that the configuration is wrong: no connection (refused, no
// route, or a name that does not resolve yet, as a Kubernetes headless
// Service's before its pod is ready), a Cluster whose slots are not all
// served yet (CLUSTERDOWN), or, on plaintext, no answer before the
// deadline (a Redis stopped or frozen). On TLS a missing answer is the
// sign of a plaintext port instead (redisStartError), and a connection
// closed at once the sign of a TLS port on plaintext: neither is waited for.
func redisNotUp(err error, tlsOn bool) bool {
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	case strings.HasPrefix(err.Error(), "CLUSTERDOWN"):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return !tlsOn
	}
	return false
}

// routeRedisLog sends go-redis's own log lines (a failed dial, each one
// during a Redis outage or a start that waits for it) to w as JSON log
// records of service at level warn, where a service's log goes, instead
// of plain text that breaks a JSON log pipeline; not when the service logs
// only above warn. For `slammesh dev`, whose services log to a file, they
// go to the terminal (w) as text lines, throttled alike: they are what
// tells its user that the Redis of REDIS_URL does not answer. It is for
// the process's command: go-redis has one logger per process. args are
// the service's flags, read for --log-level alone.
func routeRedisLog(service string, args []string, getenv func(string) string, w io.Writer) {
	if l := redisLoggerFor(service, args, getenv, w); l != nil {
		redis.SetLogger(l)
	}
}

// redisLoggerFor is the go-redis logger routeRedisLog installs for
// service, nil for a command that keeps go-redis's own.
func redisLoggerFor(service string, args []string, getenv func(string) string, w io.Writer) *redisLogger {
	if service == "dev" {
		return &redisLogger{log: slog.New(slog.NewTextHandler(w, nil)).With("service", "dev"), every: redisLogEvery}
	}
	if _, ok := defaultPorts[service]; !ok {
		return nil
	}
	cfg, _ := parseServiceConfig(service, args, getenv, io.Discard) // its errors are run's to report
	return &redisLogger{log: telemetry.NewLogger(w, service, cfg.logLevel), every: redisLogEvery}
}

// redisLogEvery is how often, at most, a go-redis line is logged: it
// writes one per failed dial, a few a second in an outage.
const redisLogEvery = 5 * time.Second

// redisLogger is go-redis's logger interface on a slog.Logger, logging at
// most one line every so often and counting the ones it left out.
type redisLogger struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// Printf logs one go-redis line as a warning (go-redis logs only failures),
// unless one was logged within every.
func (l *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < l.every {
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.last = now
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis", "suppressed", dropped) // lines left out since the last one
}

// pingAll pings Redis: every master of a Cluster, one of which may be
// loading while the others answer (found by a review), or the one server.
// A Cluster must also serve every slot (CLUSTER INFO's cluster_state:ok):
// a PING, which names no key, is answered by a Cluster not yet created,
// or one that lost a shard (found by a review: the start then failed on
// the ACL probe's CLUSTERDOWN, blamed on the ACL); such a Cluster is
// reported as CLUSTERDOWN, which awaitRedis waits for. A user that may not
// run CLUSTER INFO (an ACL of before docs/security.md listed it) is not
// held up by it.
func pingAll(ctx context.Context, rdb redis.UniversalClient) error {
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
	var info string
	if err == nil {
		info, err = c.ClusterInfo(ctx).Result()
	}
	switch {
	case err != nil && err.Error() == "redis: cluster has no nodes": // go-redis, before any slot is assigned
		return fmt.Errorf("CLUSTERDOWN no slot assigned: the Cluster is not created yet (%w)", err)
	case err != nil && strings.HasPrefix(err.Error(), "NOPERM"):
		return nil
	case err != nil:
		return err
	}
	if st, _ := redischeck.InfoField(info, "cluster_state"); st != "ok" {
		return fmt.Errorf("CLUSTERDOWN cluster_state:%s: the Cluster does not serve all its hash slots yet (not created, or a shard without a master)", st)
	}
	return nil
}

// redisStartError explains why the first PING failed when the cause is
// one an operator fixes in the configuration: a server certificate the CA
// does not sign, a TLS/plaintext mismatch, or credentials. at names the
// Redis (redisConn.addr: a Cluster by all its seeds, not the first alone,
// which a review found named as down for a dead master's error).
func redisStartError(opts *redis.Options, at string, sec securityConfig, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA) || (errors.As(err, &verifyErr) && !errors.As(err, &hostErr)):
		ca := sec.redisCA
		switch {
		case ca != "":
		case opts.TLSConfig.RootCAs != nil:
			ca = "of the URL's " + redisCAParam + "="
		default:
			ca = "the system roots (no --redis-ca / SLAMMESH_REDIS_CA given)"
		}
		return fmt.Errorf("redis at %s: TLS: the server's certificate is not signed by the Redis CA %s: %w", at, ca, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("redis at %s: TLS: the server's certificate is not valid for that host name: %w", at, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("redis at %s: TLS handshake got a non-TLS answer: the port serves plaintext, use redis:// (or the server's TLS port): %w", at, err)
	case opts.TLSConfig != nil && errors.Is(err, context.DeadlineExceeded):
		// A plaintext Redis reads a ClientHello as a partial command and
		// waits for the rest: the handshake never ends.
		return fmt.Errorf("redis at %s: no TLS handshake before the deadline: the port serves plaintext (use a redis:// URL), or the server is stopped: %w", at, err)
	case opts.TLSConfig == nil && strings.Contains(msg, "EOF"):
		return fmt.Errorf("redis at %s: connection closed at once: if that port serves TLS, use a rediss:// URL: %w", at, err)
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("redis at %s: authentication as %q refused (check the URL's user:password@ or REDIS_PASSWORD_FILE, and the user's ACL, docs/security.md): %w", at, userOrDefault(opts.Username), err)
	}
	return fmt.Errorf("redis at %s: %w", at, err)
}

func userOrDefault(u string) string {
	if u == "" {
		return "default"
	}
	return u
}

// aclProbeScript runs, as a script, the commands slammesh's own scripts
// call, on keys of one slot.
const aclProbeScript = `redis.call('TIME')
redis.call('HSET', KEYS[1], 'f', '1')
redis.call('HGETALL', KEYS[1])
redis.call('ZADD', KEYS[2], 1, 'm')
redis.call('ZREM', KEYS[2], 'm')
return redis.call('EXISTS', KEYS[1])`

// checkRedisACL runs one of each kind of command slammesh sends (strings,
// hashes, sorted sets, streams and consumer groups, expiry, scripts and
// MULTI) on scratch keys under slammesh:{startcheck:<id>}:, and deletes
// them, so that a Redis user whose ACL lacks a permission (docs/security.md
// lists the one needed) stops the start naming the command, instead of
// failing the first mission. Every key gets a 60 s expiry in case the
// DEL never runs.
func checkRedisACL(ctx context.Context, rdb redis.UniversalClient, id string) error {
	p := "slammesh:{startcheck:" + id + "}:"
	str, hash, zset, stream := p+"s", p+"h", p+"z", p+"x"
	keys := []string{str, hash, zset, stream}
	_, err := rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Set(ctx, str, "1", time.Minute)
		tx.IncrBy(ctx, str, 1)
		tx.HSet(ctx, hash, "f", "1")
		tx.ZAdd(ctx, zset, redis.Z{Score: 1, Member: "m"})
		tx.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: 10, Approx: true, Values: []any{"f", "1"}})
		tx.XGroupCreateMkStream(ctx, stream, "g", "0")
		for _, k := range keys[1:] {
			tx.Expire(ctx, k, time.Minute)
		}
		return nil
	})
	if err == nil {
		err = rdb.Eval(ctx, aclProbeScript, []string{hash, zset}).Err()
	}
	if err == nil {
		err = rdb.XRange(ctx, stream, "-", "+").Err()
	}
	if derr := rdb.Del(ctx, keys...).Err(); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("redis at %s: user %q may not run a command slammesh needs (give it the ACL in docs/security.md): %w",
			clientAddr(rdb), userOrDefault(clientUser(rdb)), err)
	}
	return nil
}

// redisConn is how a process reaches Redis: one server, or a Redis Cluster
// (REDIS_CLUSTER_URL, which wins over REDIS_URL when both are set).
type redisConn struct {
	// single is the server's options; for a Cluster, those of its first
	// address, for messages only.
	single *redis.Options
	// cluster is set for a Redis Cluster.
	cluster *redis.ClusterOptions
}

// newRedisConn builds the connection settings of configuration: clusterURL
// (go-redis ParseClusterURL form, redis://host:port?addr=host2:port&addr=…)
// when set, else rawURL. The CA file and the password file apply to both.
func newRedisConn(rawURL, clusterURL string, sec securityConfig) (redisConn, error) {
	if clusterURL == "" {
		opts, err := redisOptions(rawURL, sec)
		return redisConn{single: opts}, err
	}
	u, err := url.Parse(clusterURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return redisConn{}, fmt.Errorf("%w: redis cluster URL %s: %w", errUsage, redactURL(clusterURL), redactErr(err, clusterURL))
	}
	// The first address through redisOptions: it validates the scheme and
	// credentials and applies the CA and password files.
	first := *u
	q := first.Query()
	q.Del("addr")
	first.RawQuery = q.Encode()
	single, err := redisOptions(first.String(), sec)
	if err != nil {
		return redisConn{}, err
	}
	q = u.Query()
	q.Del(redisCAParam)
	u.RawQuery = q.Encode()
	copts, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return redisConn{}, fmt.Errorf("%w: redis cluster URL %s: %w", errUsage, u.Redacted(), redactErr(err, clusterURL))
	}
	copts.TLSConfig = single.TLSConfig
	copts.Password = single.Password
	copts.CredentialsProviderContext = single.CredentialsProviderContext
	return redisConn{single: single, cluster: copts}, nil
}

// client returns a new client; poolSize > 0 overrides the pool size (per
// node on a Cluster).
func (c redisConn) client(poolSize int) redis.UniversalClient {
	if c.cluster != nil {
		opts := *c.cluster
		if poolSize > 0 {
			opts.PoolSize = poolSize
		}
		if opts.ClusterStateReloadInterval == 0 {
			opts.ClusterStateReloadInterval = clusterStateReload
		}
		return redis.NewClusterClient(&opts)
	}
	opts := *c.single
	if poolSize > 0 {
		opts.PoolSize = poolSize
	}
	return redis.NewClient(&opts)
}

// clusterStateReload is how old a Cluster client's view of the slots may
// get before its next command reloads it (one CLUSTER SLOTS, in the
// background). A SIGKILLed master answers no MOVED, so a client that only
// pipelines to it (the saga store, the recovery scan) learns of its
// promoted replica only then: go-redis's default of 60 s kept a third of
// the slots unreachable for a minute after a master died.
const clusterStateReload = time.Second

// addr names the Redis in messages.
func (c redisConn) addr() string {
	if c.cluster != nil {
		return "cluster " + strings.Join(c.cluster.Addrs, ",")
	}
	return c.single.Addr
}

// clientAddr names the Redis rdb talks to, in messages.
func clientAddr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return "?"
}

// clientUser is the ACL user rdb authenticates as ("" for the default).
func clientUser(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Username
	case *redis.ClusterClient:
		return c.Options().Username
	}
	return ""
}
