package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/slamproto"
)

func TestCheckExposure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsArgs := []string{"--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem"), "--tls-ca", filepath.Join(dir, "ca.pem")}
	tests := []struct {
		name    string
		service string
		args    []string
		env     map[string]string
		refuse  string // substring of the refusal; empty: allowed
	}{
		{name: "default start refuses plaintext on all interfaces", service: "mapping", refuse: "refusing to serve plaintext gRPC on :50052"},
		{name: "loopback plaintext is allowed", service: "mapping", args: []string{"--grpc-addr", "127.0.0.1:0"}},
		{name: "--insecure allows plaintext", service: "merge", args: []string{"--insecure"}},
		{name: "SLAMMESH_INSECURE too", service: "merge", env: map[string]string{"SLAMMESH_INSECURE": "true"}},
		{name: "TLS step service", service: "localization", args: tlsArgs},
		{name: "step service with TLS needs a CA", service: "localization", args: tlsArgs[:4], refuse: "needs --tls-ca"},
		{name: "cert without key", service: "mapping", args: tlsArgs[:2], refuse: "go together"},
		{name: "orchestrator with TLS but no auth", service: "orchestrator", args: tlsArgs, refuse: "without authentication"},
		{name: "orchestrator with TLS needs a CA", service: "orchestrator", args: append([]string{"--auth-tokens", "t"}, tlsArgs[:4]...), refuse: "orchestrator with TLS needs --tls-ca"},
		{name: "orchestrator with TLS and a token file", service: "orchestrator", args: append([]string{"--auth-tokens", "t"}, tlsArgs...)},
		{name: "orchestrator with TLS and JWKS", service: "orchestrator", args: append([]string{"--auth-jwks", "j", "--auth-audience", "slammesh"}, tlsArgs...)},
		{name: "JWKS needs an audience", service: "orchestrator", args: append([]string{"--auth-jwks", "j"}, tlsArgs...), refuse: "needs --auth-audience"},
		{name: "orchestrator on loopback without auth", service: "orchestrator", args: []string{"--grpc-addr", "localhost:0", "--http-addr", "127.0.0.1:0"}},
		{name: "console off loopback without auth", service: "orchestrator", args: []string{"--grpc-addr", "localhost:0"}, refuse: "refusing to serve the orchestrator's console on :9091"},
		{name: "console off loopback, --insecure", service: "orchestrator", args: []string{"--grpc-addr", "localhost:0", "--insecure"}},
		{name: "console off loopback with tokens", service: "orchestrator", args: []string{"--grpc-addr", "localhost:0", "--auth-tokens", "t"}},
		{name: "orchestrator with tokens but plaintext off loopback", service: "orchestrator", env: map[string]string{"SLAMMESH_AUTH_TOKENS": "t"}, refuse: "plaintext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseServiceConfig(tt.service, tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.checkExposure()
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse) || !errors.Is(err, errUsage)):
				t.Fatalf("got %v, want a usage error containing %q", err, tt.refuse)
			}
		})
	}

	if _, err := parseDevConfig([]string{"--host", "0.0.0.0"}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Errorf("dev on 0.0.0.0 without --insecure: %v", err)
	}
	if _, err := parseDevConfig([]string{"--host", "0.0.0.0", "--insecure"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("dev on 0.0.0.0 with --insecure: %v", err)
	}
}

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	opts, err := redisOptions("rediss://slammesh@redis.example:6380/2?tls_ca="+ca.CertFile, securityConfig{redisPasswordFile: pw})
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.RootCAs == nil || opts.TLSConfig.ServerName != "redis.example" {
		t.Errorf("TLS config %+v: want the CA pool and the host as server name", opts.TLSConfig)
	}
	if opts.Username != "slammesh" || opts.Password != "s3cret" || opts.DB != 2 {
		t.Errorf("user %q password %q db %d", opts.Username, opts.Password, opts.DB)
	}
	opts, err = redisOptions("rediss://localhost:6380", securityConfig{redisCA: ca.CertFile})
	if err != nil || opts.TLSConfig.RootCAs == nil {
		t.Errorf("--redis-ca: %v", err)
	}

	for name, tc := range map[string]struct {
		url  string
		sec  securityConfig
		want string
	}{
		"CA with plaintext URL":   {"redis://localhost:6379", securityConfig{redisCA: ca.CertFile}, "needs a rediss:// URL"},
		"two CAs":                 {"rediss://localhost:6380?tls_ca=/a.pem", securityConfig{redisCA: ca.CertFile}, "given twice"},
		"CA file is not PEM":      {"rediss://localhost:6380", securityConfig{redisCA: pw}, "no PEM certificate"},
		"two passwords":           {"redis://u:p@localhost:6379", securityConfig{redisPasswordFile: pw}, "given twice"},
		"empty password file":     {"redis://localhost:6379", securityConfig{redisPasswordFile: empty}, "is empty"},
		"unknown option redacted": {"redis://u:hunter2@localhost:6379?bogus=1", securityConfig{}, "unexpected option"},
		// url.Parse quotes the whole URL in its errors.
		"bad escape after the password": {"redis://u:hunter2@localhost:6379/0%zz", securityConfig{}, "invalid URL escape"},
		"bad escape in the password":    {"redis://u:hunter2%zz@localhost:6379/0", securityConfig{}, "u:xxxxx@localhost"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := redisOptions(tc.url, tc.sec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestReceiveLimitMatchesTheAPI keeps the servers' and clients' message
// limit equal to the request size the protos document.
func TestReceiveLimitMatchesTheAPI(t *testing.T) {
	t.Parallel()
	if slamproto.MaxRequestBytes != grpcserver.DefaultMaxMessageBytes {
		t.Fatalf("slamproto.MaxRequestBytes %d != grpcserver.DefaultMaxMessageBytes %d (Dial's clients use the latter)",
			slamproto.MaxRequestBytes, grpcserver.DefaultMaxMessageBytes)
	}
}

func TestRedisStartErrorNamesTheCause(t *testing.T) {
	t.Parallel()
	tlsOpts, err := redisOptions("rediss://localhost:6380", securityConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	urlCA, err := redisOptions("rediss://localhost:6380?tls_ca="+ca.CertFile, securityConfig{})
	if err != nil {
		t.Fatal(err)
	}
	unknown := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for name, tc := range map[string]struct {
		opts *redis.Options
		err  error
		want string
	}{
		"TLS to a plaintext port": {tlsOpts, fmt.Errorf("dial: %w", context.DeadlineExceeded), "the port serves plaintext (use a redis:// URL), or the server is stopped"},
		"CA from the URL":         {urlCA, unknown, "not signed by the Redis CA of the URL's tls_ca="},
		"no CA at all":            {tlsOpts, unknown, "the system roots"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := redisStartError(tc.opts, tc.opts.Addr, securityConfig{}, tc.err); !strings.Contains(got.Error(), tc.want) {
				t.Fatalf("got %v, want %q", got, tc.want)
			}
		})
	}
}

// TestRedisACLCheck starts a service's Redis check as the user
// docs/security.md describes (it passes and leaves no key behind) and as a
// user lacking permissions (it fails naming the user and the command).
func TestRedisACLCheck(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	line := func(prefix string) []string {
		_, rest, ok := strings.Cut(string(doc), "\n"+prefix)
		if !ok {
			t.Fatalf("docs/security.md has no ACL line %q", prefix)
		}
		l, _, _ := strings.Cut(rest, "\n")
		return strings.Fields(l)
	}
	rules := line("user slammesh on >PASSWORD ")
	// The default user is off with the same permissions (Redis replays its
	// AOF as that user), and the tests' Redis runs with them too.
	if def := line("user default off "); !slices.Equal(def, rules) || !slices.Equal(rules, redisproc.SlammeshACL) {
		t.Errorf("the documented ACLs differ:\nslammesh %v\ndefault  %v\ntests    %v", rules, def, redisproc.SlammeshACL)
	}
	// docker-compose.yml's Redis runs the same two users.
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string][]string{}
	var user string
	for l := range strings.Lines(string(compose)) {
		item, ok := strings.CutPrefix(strings.TrimSpace(l), "- ")
		switch {
		case !ok:
			user = ""
		case item == "--user":
			user = "?"
		case user == "?":
			user = item
		case user != "" && (item == `"on"` || item == `"off"` || strings.HasPrefix(item, `">`)):
		case user != "" && strings.HasPrefix(item, "--"):
			user = ""
		case user != "":
			users[user] = append(users[user], item)
		}
	}
	for _, u := range []string{"slammesh", "default"} {
		if !slices.Equal(users[u], rules) {
			t.Errorf("docker-compose.yml's %s user has %v, docs/security.md %v", u, users[u], rules)
		}
	}
	acl := []any{"ACL", "SETUSER", "slammesh", "reset", "on", ">pw-of-slammesh"}
	for _, r := range rules {
		acl = append(acl, r)
	}
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatalf("the documented ACL %v: %v", acl, err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "weak", "reset", "on", ">pw-of-weak", "~slammesh:*", "+@connection", "+@read", "+@string").Err(); err != nil {
		t.Fatal(err)
	}
	as := func(user, pw string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: user, Password: pw})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	if err := checkRedisACL(ctx, as("slammesh", "pw-of-slammesh"), "test"); err != nil {
		t.Fatalf("the documented ACL fails the check: %v", err)
	}
	if keys, err := admin.Keys(ctx, "*startcheck*").Result(); err != nil || len(keys) > 0 {
		t.Errorf("the check left keys %v (%v)", keys, err)
	}
	err = checkRedisACL(ctx, as("weak", "pw-of-weak"), "test")
	if err == nil || !strings.Contains(err.Error(), `user "weak"`) || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("got %v, want a NOPERM error naming the user", err)
	}
	if strings.Contains(err.Error(), "pw-of-weak") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// TestRedisACLCheckOnEmbeddedRedis: dev falls back to miniredis when
// redis-server is missing; the start check must pass there too.
func TestRedisACLCheckOnEmbeddedRedis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	if err := checkRedisACL(context.Background(), c, "test"); err != nil {
		t.Fatal(err)
	}
}

func TestLoosePermissionsOfSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tight, loose := filepath.Join(dir, "tight"), filepath.Join(dir, "loose")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{tight, 0o600}, {loose, 0o644}} {
		if err := os.WriteFile(f.path, []byte("secret\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if w := loosePermissions(securityConfig{authTokens: tight, redisPasswordFile: tight}); len(w) != 0 {
		t.Errorf("0600 files warned about: %v", w)
	}
	w := loosePermissions(securityConfig{authTokens: loose, redisPasswordFile: loose})
	if len(w) != 2 || !strings.Contains(w[0], "--auth-tokens") || !strings.Contains(w[1], "--redis-password-file") || !strings.Contains(w[0], "0644") {
		t.Errorf("0644 files: %v", w)
	}
}

// TestRedisPasswordFileIsReadAtEveryDial: a password rotated in
// REDIS_PASSWORD_FILE reaches the connections dialled after it, on a real
// Redis whose password changed and whose connections were cut (found by a
// review: the file was read once at start, and the mesh stayed down until
// every service restarted). A file emptied mid-rewrite keeps the last one.
func TestRedisPasswordFileIsReadAtEveryDial(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	admin := srv.Client(t)
	ctx := t.Context()
	rotate := func(pw string) {
		t.Helper()
		if err := admin.ConfigSet(ctx, "requirepass", pw).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.ClientKillByFilter(ctx, "TYPE", "normal").Err(); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "password")
	write := func(pw string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("old\n")
	rotate("old")
	opts, err := redisOptions(srv.URL, securityConfig{redisPasswordFile: file})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with the file's password: %v", err)
	}
	write("new\n")
	rotate("new")
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the password was rotated in the file and in Redis: %v", err)
	}
	write("")
	if err := admin.ClientKillByFilter(ctx, "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with the file emptied mid-rewrite: %v", err)
	}
}
