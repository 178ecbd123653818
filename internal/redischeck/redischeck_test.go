package redischeck_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/redischeck"
	"github.com/slammesh/slammesh/internal/redisproc"
	"github.com/slammesh/slammesh/internal/redistest"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want redischeck.Version
		err  bool
	}{
		{in: "7.0.15", want: redischeck.Version{Major: 7, Minor: 0, Patch: 15}},
		{in: "6.2", want: redischeck.Version{Major: 6, Minor: 2}},
		{in: "7.2.4-rc1", want: redischeck.Version{Major: 7, Minor: 2, Patch: 4}},
		{in: "255.255.255", want: redischeck.Version{Major: 255, Minor: 255, Patch: 255}},
		{in: "7", err: true},
		{in: "x.2.0", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := redischeck.ParseVersion(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// infoServer is the start of a real INFO server reply.
func infoServer(version string) string {
	return "# Server\r\nredis_version:" + version + "\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n"
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		info string
		ok   bool
	}{
		{info: infoServer("5.0.14")},
		{info: infoServer("6.0.16")},
		{info: infoServer("6.2.0"), ok: true},
		{info: infoServer("6.2.14"), ok: true},
		{info: infoServer("7.0.15"), ok: true},
		{info: infoServer("10.0.0"), ok: true},
		{info: "# Server\r\nredis_mode:standalone\r\n"},
	}
	for _, tt := range tests {
		_, err := redischeck.CheckVersion(tt.info)
		if (err == nil) != tt.ok {
			t.Errorf("CheckVersion(%q) = %v, want ok %v", tt.info, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "6.2") {
			t.Errorf("CheckVersion(%q): message %q does not name the version needed", tt.info, err)
		}
	}
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	if err := redischeck.CheckPolicy("noeviction"); err != nil {
		t.Errorf("noeviction refused: %v", err)
	}
	for _, p := range []string{"allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-ttl", "volatile-random"} {
		err := redischeck.CheckPolicy(p)
		if err == nil {
			t.Errorf("%s accepted", p)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "maxmemory-policy is "+p) || !strings.Contains(msg, "maxmemory-policy noeviction") {
			t.Errorf("%s: message %q names neither the setting nor the fix", p, msg)
		}
	}
}

func TestCheckRealServer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := t.Context()
	r, err := redischeck.Check(ctx, rdb)
	if err != nil {
		t.Fatalf("default redis-server refused: %v", err)
	}
	if r.Policy != "noeviction" || r.PolicyFrom != "INFO memory" || r.Version.Less(redischeck.MinVersion) {
		t.Errorf("result %+v", r)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := redischeck.Check(ctx, rdb); err == nil || !strings.Contains(err.Error(), "maxmemory-policy is volatile-lru") {
		t.Errorf("volatile-lru: %v", err)
	}
}

// spawn starts redis-server with extra arguments on a free port, for the
// settings redistest does not make (a policy given on the command line, a
// renamed CONFIG).
func spawn(t *testing.T, args ...string) *redis.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)
	cmd := exec.Command("redis-server", all...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (make deps installs it)", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = rdb.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for rdb.Ping(t.Context()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server %v did not answer", all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rdb
}

func TestCheckRefusesEvictingServer(t *testing.T) {
	t.Parallel()
	rdb := spawn(t, "--maxmemory-policy", "allkeys-lru")
	_, err := redischeck.Check(context.WithoutCancel(t.Context()), rdb)
	if err == nil {
		t.Fatal("redis-server --maxmemory-policy allkeys-lru accepted")
	}
	if msg := err.Error(); !strings.Contains(msg, "maxmemory-policy is allkeys-lru") || !strings.Contains(msg, "maxmemory-policy noeviction") {
		t.Errorf("message %q names neither the setting nor the fix", msg)
	}
}

func TestCheckWithoutConfigCommand(t *testing.T) {
	t.Parallel()
	// Managed Redis disables CONFIG: the policy is read from INFO memory.
	for _, tt := range []struct {
		policy string
		ok     bool
	}{{policy: "noeviction", ok: true}, {policy: "allkeys-lfu"}} {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			rdb := spawn(t, "--maxmemory-policy", tt.policy, "--rename-command", "CONFIG", "")
			r, err := redischeck.Check(t.Context(), rdb)
			if (err == nil) != tt.ok {
				t.Fatalf("Check: %v, want ok %v", err, tt.ok)
			}
			if r.PolicyFrom != "INFO memory" || r.Policy != tt.policy {
				t.Errorf("policy %q read from %q, want %q from INFO memory", r.Policy, r.PolicyFrom, tt.policy)
			}
		})
	}
}

// TestWatchRestarts restarts a real redis-server on its port, from no AOF
// to AOF and back: the watch tells each restart once, with the setting the
// server ran with before (which decides what the restart kept) and now,
// and says nothing while the server stays up or is down.
func TestWatchRestarts(t *testing.T) {
	t.Parallel()
	srv := startRestartable(t)
	rdb := srv.rdb
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seen := make(chan redischeck.Restart, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		redischeck.WatchRestarts(ctx, rdb, 20*time.Millisecond, func(r redischeck.Restart) { seen <- r })
	}()
	time.Sleep(100 * time.Millisecond) // several reads of the same server
	select {
	case r := <-seen:
		t.Fatalf("a restart (%+v) told while the server stayed up", r)
	default:
	}
	for _, want := range []redischeck.Restart{{AOFBefore: false, AOFNow: true}, {AOFBefore: true, AOFNow: false}} {
		srv.restart(60*time.Millisecond, "--appendonly", map[bool]string{false: "no", true: "yes"}[want.AOFNow]) // reads fail while it is down
		select {
		case got := <-seen:
			if got != want {
				t.Errorf("restart told as %+v, want %+v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("restart to %+v not told", want)
		}
	}
	cancel()
	<-done
	if len(seen) != 0 {
		t.Errorf("%d more restarts told than made", len(seen))
	}
}

// TestWatchRestartsWaitsForTheLoad restarts a real redis-server with AOF
// from its AOF, loading slowly: while it loads it reports aof_enabled:0,
// and the watch must not tell that as a change of the setting (found by a
// review: every service logged that the AOF had been turned off).
func TestWatchRestartsWaitsForTheLoad(t *testing.T) {
	t.Parallel()
	srv := startRestartable(t, "--appendonly", "yes")
	rdb := srv.rdb
	ctx := t.Context()
	// Keys in the AOF's RDB base, which --key-load-delay slows per key;
	// --loading-process-events-interval-bytes lets INFO through as it loads.
	const keys = 10000
	if err := rdb.Eval(ctx, "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'k' .. i, 'v') end return 1", nil, keys).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info := rdb.Info(ctx, "persistence").Val()
		if v, _ := redischeck.InfoField(info, "aof_rewrite_in_progress"); v == "0" {
			if v, _ := redischeck.InfoField(info, "aof_rewrite_scheduled"); v == "0" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the AOF rewrite did not end within 10 s")
		}
	}
	seen := make(chan redischeck.Restart, 4)
	loading := make(chan bool, 1)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		redischeck.WatchRestarts(wctx, rdb, 10*time.Millisecond, func(r redischeck.Restart) { seen <- r })
	}()
	go func() { // whether a read saw the load, so that the test tests it
		for wctx.Err() == nil {
			if v, _ := redischeck.InfoField(rdb.Info(wctx, "persistence").Val(), "loading"); v == "1" {
				loading <- true
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	srv.restart(0, "--appendonly", "yes", "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
	select {
	case got := <-seen:
		if want := (redischeck.Restart{AOFBefore: true, AOFNow: true}); got != want {
			t.Errorf("restart told as %+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("restart not told")
	}
	select {
	case <-loading:
	default:
		t.Error("no read saw the server loading: the load was too quick to test the watch")
	}
	if n := rdb.DBSize(ctx).Val(); n != keys {
		t.Errorf("%d keys after the restart, want %d", n, keys)
	}
	cancel()
	<-done
}

// restartable is a redis-server of the test's own, which restart starts
// again on the same port, and a client that follows it across restarts.
type restartable struct {
	t    *testing.T
	dir  string
	port int
	p    *redisproc.Process
	rdb  *redis.Client
}

// startRestartable starts a server with extra redis-server arguments; the
// test's cleanup stops it.
func startRestartable(t *testing.T, extra ...string) *restartable {
	t.Helper()
	r := &restartable{t: t, dir: t.TempDir()}
	p, err := redisproc.StartArgs(r.dir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	t.Cleanup(func() { r.p.Stop() })
	_, portText, _ := net.SplitHostPort(p.Addr)
	r.port, _ = strconv.Atoi(portText)
	r.rdb = redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	t.Cleanup(func() { r.rdb.Close() })
	return r
}

// restart kills the server (SIGKILL), leaves it down for down, and starts
// it again on its port with extra; it returns once the server answers.
func (r *restartable) restart(down time.Duration, extra ...string) {
	r.t.Helper()
	r.p.Stop()
	time.Sleep(down)
	p, err := redisproc.StartOn(r.dir, r.port, extra...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.p = p
}

// A Redis run as docs/security.md has it (its default user off but allowed
// slammesh's writes) keeps a script's writes across a restart from its
// AOF; with the default user off and allowed nothing, as the docs had it,
// Redis drops them as it loads the AOF (redis/redis#14541), and Check
// counts the NOPERM errors that tell it (found by a review: saga records
// half written, ListMissions down).
func TestAOFRestartKeepsScriptWritesWithTheDocumentedACL(t *testing.T) {
	t.Parallel()
	const password = "aof-acl-test-password"
	for _, tc := range []struct {
		name        string
		defaultUser []string
		kept        int64
	}{
		{"documented", append([]string{"off"}, redisproc.SlammeshACL...), 2},
		{"default user allowed nothing", []string{"off"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := append(append([]string{"--appendonly", "yes", "--appendfsync", "always", "--user", "default"}, tc.defaultUser...),
				append([]string{"--user", "slammesh", "on", ">" + password}, redisproc.SlammeshACL...)...)
			// The restart reads the AOF in dir, on a free port of its own.
			start := func() (*redisproc.Process, *redis.Client) {
				p, err := redisproc.StartAs(dir, "slammesh", password, args...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Stop)
				rdb := redis.NewClient(&redis.Options{Addr: p.Addr, Username: "slammesh", Password: password, MaxRetries: -1})
				t.Cleanup(func() { rdb.Close() })
				return p, rdb
			}
			p, rdb := start()
			ctx := t.Context()
			// Two writes: the AOF stores the script's effects as MULTI…EXEC.
			if err := rdb.Eval(ctx, `redis.call('SET', KEYS[1], 'a'); redis.call('HSET', KEYS[2], 'f', 'v'); return 1`,
				[]string{"slammesh:{m}:a", "slammesh:{m}:b"}).Err(); err != nil {
				t.Fatal(err)
			}
			p.Stop()
			_, rdb = start()
			if n, err := rdb.Exists(ctx, "slammesh:{m}:a", "slammesh:{m}:b").Result(); err != nil || n != tc.kept {
				t.Errorf("after the restart %d of the script's 2 keys exist (%v), want %d", n, err, tc.kept)
			}
			// The ACL refuses the slammesh user CONFIG and KEYS: such a
			// client's refusal is not the AOF's, however often it comes
			// (found by a review: each start's CONFIG GET raised the alarm
			// for every service after it).
			for range 3 {
				_ = rdb.ConfigGet(ctx, "maxmemory-policy").Err()
				_ = rdb.Keys(ctx, "slammesh:*").Err()
				res, err := redischeck.Check(ctx, rdb)
				if err != nil {
					t.Fatal(err)
				}
				if dropped := tc.kept == 0; (res.NOPERM > 0) != dropped {
					t.Errorf("Check counted %d unexplained NOPERM errors; writes dropped at load: %v", res.NOPERM, dropped)
				}
			}
		})
	}
}

func TestUnexplainedNOPERM(t *testing.T) {
	for info, want := range map[string]int64{
		// Redis's AOF client refused 975 writes at load: no command counts them.
		"# Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_NOPERM:count=975\r\n# Commandstats\r\ncmdstat_get:calls=5,usec=1,usec_per_call=0.20,rejected_calls=0,failed_calls=0\r\n": 975,
		// A client refused CONFIG GET twice: explained.
		"errorstat_NOPERM:count=2\r\ncmdstat_config|get:calls=0,usec=0,usec_per_call=0.00,rejected_calls=2,failed_calls=0\r\n": 0,
		"errorstat_NOPERM:count=5\r\ncmdstat_keys:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n":       4,
		"# Errorstats\r\nerrorstat_ERR:count=3\r\n": 0,
		"errorstat_NOPERM:count=x\r\n":              0,
	} {
		if got := redischeck.UnexplainedNOPERM(info); got != want {
			t.Errorf("UnexplainedNOPERM(%q) = %d, want %d", info, got, want)
		}
	}
}

// On a Redis Cluster the unexplained NOPERM errors are counted on every
// master (found by a review: the Cluster client's INFO missed them). A
// transaction whose EXEC the ACL refuses after it was queued makes one,
// as Redis's AOF client does at load.
func TestClusterNOPERMIsCountedOnEveryMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := redistest.StartCluster(t).Cluster
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	if res, err := redischeck.Check(ctx, cc); err != nil || res.NOPERM != 0 {
		t.Fatalf("a fresh Cluster: NOPERM %d, %v; want 0", res.NOPERM, err)
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := masters[len(masters)-1]
	admin := redis.NewClient(&redis.Options{Addr: last})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "tool", "on", ">tool-pw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	tool := redis.NewClient(&redis.Options{Addr: last, Username: "tool", Password: "tool-pw", PoolSize: 1})
	defer tool.Close()
	conn := tool.Conn()
	defer conn.Close()
	if err := conn.Do(ctx, "MULTI").Err(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Do(ctx, "PING").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "tool", "-ping").Err(); err != nil {
		t.Fatal(err)
	}
	_ = conn.Do(ctx, "EXEC").Err() // its PING refused at EXEC
	res, err := redischeck.Check(ctx, cc)
	if err != nil || res.NOPERM != 1 {
		t.Errorf("after an EXEC refused on one master: NOPERM %d, %v; want 1", res.NOPERM, err)
	}
}
