//go:build cluster

package cluster

import (
	"bufio"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/missionkeys"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/services/localization"
	"github.com/slammesh/slammesh/services/mapping"
	"github.com/slammesh/slammesh/services/merge"
)

var flagScripts = flag.String("cluster.scripts", os.Getenv(redistest.EnvScriptLog),
	"the script log the cluster suites wrote (SLAMMESH_TEST_SCRIPT_LOG)")

// TestMain runs every test on a Redis Cluster: redistest.Start gives the
// binary's shared cluster, whose every script and MULTI is checked to touch
// one slot, and whose scripts go to the script log.
func TestMain(m *testing.M) {
	if err := os.Setenv(redistest.EnvMode, "cluster"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// steps are the saga's steps, each with its barrier mark.
var steps = []string{mapping.Step, localization.Step, merge.Step}

// TestMissionKeysOneSlot: a mission's keys hash to one slot, so one script
// or MULTI may touch them all, for ids with "{", "}" and ":" too — except
// ids that begin with "}": "slammesh:{}…" has an empty hash tag, so each key
// hashes whole. No request can create those: the API refuses "{" and "}"
// in any id (rpcerr.CheckID), which this test asserts as well.
func TestMissionKeysOneSlot(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Universal(t)
	ctx := t.Context()
	for _, id := range []string{"}", "}{", "}m:1"} {
		if rpcerr.CheckID("mission_id", id) == nil {
			t.Errorf("mission id %q splits its keys over slots but the API accepts it", id)
		}
	}
	for _, id := range []string{"m-1", "a{b", "a}b", "x:y", "{m}", "m:{1}:z", "a{}b", "{", ":", "{{}}", "{}", "slammesh:{x}:saga", ":}"} {
		keys := append(missionkeys.All(id, steps), saga.RecordKey(id), barrier.EffectsKey(id), mapstore.Key(id), missionkeys.Localization(id))
		for _, s := range steps {
			keys = append(keys, barrier.Key(id, s))
		}
		want, err := rdb.ClusterKeySlot(ctx, keys[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			got, err := rdb.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("mission %q: key %q is in slot %d, %q in slot %d", id, k, got, keys[0], want)
			}
			if redistest.KeySlot(k) != int(got) {
				t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT %d", k, redistest.KeySlot(k), got)
			}
		}
		// The cluster itself agrees: one MULTI writes them all.
		_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Set(ctx, k, id, 0)
			}
			return nil
		})
		if err != nil {
			t.Errorf("mission %q: one MULTI over its keys: %v", id, err)
		}
	}
}

// TestCapacityAccountingOnCluster drives the mapping capacity accounting
// (internal/mapstore: one {mapping} slot, apart from the missions' slots)
// through every script on the cluster: charges, a retained map, a dropped
// one, and a recount that agrees with the counters.
func TestCapacityAccountingOnCluster(t *testing.T) {
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	now := time.Now()
	charge := func(m string) mapstore.Charge { return mapstore.Charge{MissionID: m, SagaID: "s"} }
	for i, id := range []string{"cap{1", "cap:2", "cap}3"} {
		r, err := mapstore.Reserve(ctx, rdb, charge(id), uint64(100*(i+1)), 1000, now)
		if err != nil || !r.New {
			t.Fatalf("Reserve %s = %+v, %v", id, r, err)
		}
		if r, err := mapstore.Reserve(ctx, rdb, charge(id), uint64(100*(i+1)), 1000, now); err != nil || r.New {
			t.Fatalf("repeat Reserve %s = %+v, %v; want charged already", id, r, err)
		}
	}
	if _, err := mapstore.Reserve(ctx, rdb, charge("cap-4"), 500, 1000, now); !errors.Is(err, mapstore.ErrFull) {
		t.Fatalf("Reserve past the budget = %v, want ErrFull", err)
	}
	if n, err := mapstore.Retain(ctx, rdb, charge("cap{1"), now); err != nil || n != 100 {
		t.Fatalf("Retain = %d, %v; want 100", n, err)
	}
	if n, err := mapstore.Drop(ctx, rdb, charge("cap:2")); err != nil || n != 200 {
		t.Fatalf("Drop = %d, %v; want 200", n, err)
	}
	want := mapstore.Usage{Held: 400, Retained: 100}
	if u, err := mapstore.ReadUsage(ctx, rdb); err != nil || u != want {
		t.Fatalf("ReadUsage = %+v, %v; want %+v", u, err, want)
	}
	if u, err := mapstore.Recount(ctx, rdb); err != nil || u != want {
		t.Fatalf("Recount = %+v, %v; want %+v", u, err, want)
	}
}

// scriptPackages are the packages that declare Lua scripts, by directory
// from the repository root, with their Scripts().
var scriptPackages = map[string]func() []*redis.Script{
	"internal/saga":     saga.Scripts,
	"internal/barrier":  barrier.Scripts,
	"internal/mapstore": mapstore.Scripts,
	"internal/progress": progress.Scripts,
}

// TestEveryScriptListed counts the redis.NewScript calls in the non-test
// Go files of the repository: each package that has any is in
// scriptPackages, and its Scripts() lists as many distinct scripts.
func TestEveryScriptListed(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	counts := map[string]int{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "gen" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if n := strings.Count(string(b), "redis.NewScript("); n > 0 {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			counts[filepath.ToSlash(rel)] += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, n := range counts {
		list, ok := scriptPackages[dir]
		if !ok {
			t.Errorf("%s declares %d Lua scripts but is not in scriptPackages (export Scripts() and add it)", dir, n)
			continue
		}
		shas := map[string]bool{}
		for _, s := range list() {
			shas[s.Hash()] = true
		}
		if len(shas) != n {
			t.Errorf("%s declares %d Lua scripts; its Scripts() lists %d distinct ones", dir, n, len(shas))
		}
	}
	for dir := range scriptPackages {
		if counts[dir] == 0 {
			t.Errorf("scriptPackages names %s, which declares no script", dir)
		}
	}
}

// TestEveryScriptRanOnACluster reads the script log of the suites run
// before in cluster mode: every script in every Scripts() ran there (and
// redistest failed those suites had any touched two slots).
func TestEveryScriptRanOnACluster(t *testing.T) {
	if *flagScripts == "" {
		t.Fatalf("no script log: run through `make cluster`, or pass -cluster.scripts (%s of the cluster suites)", redistest.EnvScriptLog)
	}
	f, err := os.Open(*flagScripts)
	if err != nil {
		t.Fatalf("script log: %v (run the cluster suites first: make cluster)", err)
	}
	defer f.Close()
	ran := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ran[strings.TrimSpace(sc.Text())] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for dir, list := range scriptPackages {
		for i, s := range list() {
			total++
			if !ran[s.Hash()] {
				t.Errorf("%s: Scripts()[%d] (sha1 %s) never ran on the cluster in the cluster suites", dir, i, s.Hash())
			}
		}
	}
	t.Logf("%d scripts listed, %d distinct scripts seen running on the cluster", total, len(ran))
}
