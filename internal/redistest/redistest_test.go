package redistest

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartServesCommands(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	c := srv.Universal(t)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(t.Context(), "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
}

func TestServersAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share %s", a.Addr)
	}
	if err := a.Universal(t).Set(t.Context(), "only-a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := b.Universal(t).Exists(t.Context(), "only-a").Result()
	if err != nil || n != 0 {
		t.Fatalf("key leaked across servers: exists=%d err=%v", n, err)
	}
}

// TestClusterRefusesCrossSlotScripts pins what the project's one-slot
// check rests on: on the cluster, a script touching a key of another slot
// than its declared ones fails (whichever node serves that slot), and
// ScriptLog tells those runs apart from clean ones.
func TestClusterRefusesCrossSlotScripts(t *testing.T) {
	srv := StartCluster(t)
	if !srv.IsCluster() || len(srv.Env()) != 1 || !strings.HasPrefix(srv.Env()[0], "REDIS_CLUSTER_URL=redis://") {
		t.Fatalf("StartCluster: IsCluster %v, Env %v", srv.IsCluster(), srv.Env())
	}
	c := srv.Universal(t)
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("Universal on a cluster is %T, want *redis.ClusterClient", c)
	}
	log := RecordScripts(c)
	ctx := t.Context()
	one := redis.NewScript(`redis.call('SET', KEYS[1], 1); return redis.call('INCR', KEYS[2])`)
	if err := one.Run(ctx, c, []string{"slammesh:{m1}:a", "slammesh:{m1}:b"}).Err(); err != nil {
		t.Fatalf("one-slot script: %v", err)
	}
	if err := one.Run(ctx, c, []string{"slammesh:{m1}:a", "slammesh:{m2}:b"}).Err(); !IsCrossSlot(err) {
		t.Fatalf("declared keys of two slots: %v, want CROSSSLOT", err)
	}
	// Undeclared keys on another node are refused (on the same node they
	// are not: TestSlotWatch).
	sneaky := redis.NewScript(`redis.call('SET', KEYS[1], 1); return redis.call('SET', ARGV[1], 1)`)
	home, err := c.(*redis.ClusterClient).MasterForKey(ctx, "slammesh:{m1}:a")
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range 200 {
		other := "slammesh:{x" + strconv.Itoa(i) + "}:k"
		n, err := c.(*redis.ClusterClient).MasterForKey(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == home.Options().Addr {
			continue
		}
		if err := sneaky.Run(ctx, c, []string{"slammesh:{m1}:a"}, other).Err(); !IsCrossSlot(err) {
			t.Fatalf("undeclared key %s on another node: %v, want a cross-slot error", other, err)
		}
		refused++
	}
	if refused == 0 || log.Ran(one) != 1 || log.Ran(sneaky) != 0 || len(log.CrossSlot()) != 2 {
		t.Fatalf("ScriptLog: one ran %d, sneaky ran %d, cross-slot %v", log.Ran(one), log.Ran(sneaky), log.CrossSlot())
	}
	// Pipelined scripts are recorded too.
	pipe := c.Pipeline()
	one.Run(ctx, pipe, []string{"slammesh:{m3}:a", "slammesh:{m3}:b"})
	if _, err := pipe.Exec(ctx); err != nil && !strings.Contains(err.Error(), "NOSCRIPT") {
		t.Fatal(err)
	}
	if err := one.Run(ctx, c, []string{"slammesh:{m3}:a", "slammesh:{m3}:b"}).Err(); err != nil {
		t.Fatal(err)
	}
	if log.Ran(one) < 2 {
		t.Fatalf("pipelined run not recorded: %d", log.Ran(one))
	}
}

// TestSharedClusterMode runs Start as the cluster suites do: a cluster,
// emptied for each test, reused by the next.
func TestSharedClusterMode(t *testing.T) {
	t.Setenv(EnvMode, "cluster")
	var first string
	for i := range 2 {
		t.Run("use"+strconv.Itoa(i), func(t *testing.T) {
			srv := Start(t)
			if !srv.IsCluster() {
				t.Fatal("Start in cluster mode gave one server")
			}
			if first == "" {
				first = srv.URL
			} else if srv.URL != first {
				t.Fatalf("second test got another cluster %s, want the idle %s reused", srv.URL, first)
			}
			c := srv.Universal(t)
			if n, err := c.DBSize(t.Context()).Result(); err != nil || n != 0 {
				t.Fatalf("DBSIZE at Start = %d, %v; want an empty cluster", n, err)
			}
			if err := c.Set(t.Context(), "left-behind", 1, 0).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSlotWatch: a script touching an undeclared key of another slot on
// the same node, which Redis lets through, and a transaction across slots
// sent to one node are both reported; one-slot ones are not.
func TestSlotWatch(t *testing.T) {
	srv := StartCluster(t)
	c := srv.Universal(t).(*redis.ClusterClient)
	w := WatchSlots(t, srv)
	ctx := t.Context()
	clean := redis.NewScript(`redis.call('SET', KEYS[1], 1); return redis.call('XADD', 'slammesh:{m1}:events', '*', 'f', 'v')`)
	if err := clean.Run(ctx, c, []string{"slammesh:{m1}:a"}).Err(); err != nil {
		t.Fatal(err)
	}
	// Find a key of another slot that the node serving {m1} also serves.
	m1 := c.ClusterKeySlot(ctx, "slammesh:{m1}:a").Val()
	node, err := c.MasterForKey(ctx, "slammesh:{m1}:a")
	if err != nil {
		t.Fatal(err)
	}
	other := ""
	for i := range 1000 {
		k := "slammesh:{y" + strconv.Itoa(i) + "}:k"
		n, err := c.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if c.ClusterKeySlot(ctx, k).Val() != m1 && n.Options().Addr == node.Options().Addr {
			other = k
			break
		}
	}
	if other == "" {
		t.Fatal("no key of another slot on the same node")
	}
	sneaky := redis.NewScript(`redis.call('SET', KEYS[1], 1); return redis.call('SET', ARGV[1], 1)`)
	if err := sneaky.Run(ctx, c, []string{"slammesh:{m1}:a"}, other).Err(); err != nil {
		t.Fatalf("Redis 7 lets a shebang-less script touch %s on the same node; got %v", other, err)
	}
	// A transaction across slots is refused, by the node and, before it,
	// by the cluster client.
	nc := redis.NewClient(&redis.Options{Addr: node.Options().Addr})
	defer nc.Close()
	for _, rc := range []redis.UniversalClient{nc, c} {
		_, err = rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "slammesh:{m1}:tx", 1, 0)
			p.Set(ctx, other, 2, 0)
			return nil
		})
		if !IsCrossSlot(err) {
			t.Fatalf("%T: MULTI across slots: %v, want CROSSSLOT", rc, err)
		}
	}
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "slammesh:{m2}:a", 1, 0)
		p.Expire(ctx, "slammesh:{m2}:a", time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	v := w.Violations()
	if len(v) != 1 || !strings.Contains(v[0], other) || w.Checked() < 3 {
		t.Fatalf("checked %d, violations %q; want the sneaky script only", w.Checked(), v)
	}
	// KeySlot agrees with CLUSTER KEYSLOT, hash tags included.
	for _, key := range []string{"", "123456789", "foo", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{", "}{", "slammesh:{a{b}:x", "slammesh:{a:b}}:x", "slammesh:{}:x", "\xff\x00"} {
		if got, want := KeySlot(key), c.ClusterKeySlot(ctx, key).Val(); got != int(want) {
			t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
}
