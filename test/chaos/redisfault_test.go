//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

var flagRedis = flag.String("chaos.redis", os.Getenv("SLAMMESH_TEST_REDIS"),
	`"cluster": run on a 6-node Redis Cluster (3 masters, 3 replicas) and, in the middle of the missions, fail a master over (CLUSTER FAILOVER) and SIGKILL another; anything else: one redis-server (default: $SLAMMESH_TEST_REDIS)`)

// onCluster reports whether the run uses a Redis Cluster.
func onCluster() bool { return *flagRedis == "cluster" }

// quietRedis drops go-redis's own log lines: while a killed master is
// failed over, the test's cluster client logs every refused dial to it,
// which would bury the report; the test retries its reads itself.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// redisFault is a master failover or a master SIGKILL the test did.
type redisFault struct {
	kind string // "CLUSTER FAILOVER" or "SIGKILL master"
	// victim is the master hit, promoted its replica that took over.
	victim, promoted string
	at               time.Time
	// promotedIn is from the fault to the promoted replica serving in every
	// node's view with cluster_state:ok (the helper's wait).
	promotedIn time.Duration
	// meshRecovery is from the fault to the first mission event the mesh
	// wrote to the moved slots afterwards, by the stream entry id (the
	// millisecond Redis accepted it, on this machine's clock); affected
	// counts the missions whose keys live there; firstWrite is false when
	// none wrote after.
	meshRecovery time.Duration
	affected     int
	firstWrite   bool
}

// redisSettle is how long after a failover the next fault waits.
const redisSettle = 2 * time.Second

// redisFaultLoop fails a master over at 35% of the window and SIGKILLs
// another master at 70%, then restarts the killed node (it rejoins as a
// replica), so that both faults land while missions run.
func (m *mesh) redisFaultLoop(ctx context.Context, window time.Duration, begin time.Time, log *reporter) ([]*redisFault, error) {
	var faults []*redisFault
	for i, frac := range []float64{0.35, 0.7} {
		select {
		case <-time.After(time.Until(begin.Add(time.Duration(frac * float64(window))))):
		case <-ctx.Done():
			return faults, ctx.Err()
		}
		masters, err := m.cluster.Masters(ctx)
		if err != nil {
			return faults, err
		}
		m.faults.Lock()
		f := &redisFault{at: time.Now()}
		// The kill spares the master the failover promoted, so that the
		// slots measured for the failover stay where they went.
		var victim string
		for _, a := range masters {
			if len(faults) == 0 || a != faults[0].promoted {
				victim = a
				break
			}
		}
		f.victim = victim
		if i == 0 {
			f.kind = "CLUSTER FAILOVER"
			f.promoted, err = m.cluster.Failover(ctx, victim)
		} else {
			f.kind = "SIGKILL master"
			log.printf("redis: SIGKILL master %s (pid %d)", victim, m.cluster.PID(victim))
			f.promoted, err = m.cluster.KillMaster(ctx, victim)
		}
		f.promotedIn = time.Since(f.at)
		if err != nil {
			m.faults.Unlock()
			return faults, fmt.Errorf("%s of %s: %w", f.kind, victim, err)
		}
		// The services' clients learn the new topology on their next
		// MOVED reply or failed call; give them that before an orchestrator
		// kill may follow.
		time.Sleep(redisSettle)
		m.faults.Unlock()
		log.printf("redis: %s of %s: %s promoted, cluster ok after %s", f.kind, victim, f.promoted, f.promotedIn.Round(time.Millisecond))
		faults = append(faults, f)
		if i == 1 {
			if err := m.cluster.Restart(ctx, victim); err != nil {
				return faults, err
			}
			log.printf("redis: %s restarted, a replica again", victim)
		}
	}
	return faults, nil
}

// measureRedisRecovery fills in each fault's mesh recovery: the missions
// whose keys the promoted master serves now, and the earliest event any of
// them got after the fault.
func measureRedisRecovery(ctx context.Context, rdb redis.UniversalClient, faults []*redisFault, ids []string) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	cc.ReloadState(ctx)
	for _, f := range faults {
		var first time.Time
		for _, id := range ids {
			node, err := cc.MasterForKey(ctx, saga.RecordKey(id))
			if err != nil {
				return err
			}
			if node.Options().Addr != f.promoted {
				continue
			}
			f.affected++
			msgs, err := rdb.XRange(ctx, progress.MissionStream(id), strconv.FormatInt(f.at.UnixMilli(), 10), "+").Result()
			if err != nil {
				return err
			}
			if len(msgs) > 0 {
				ms, _, _ := strings.Cut(msgs[0].ID, "-")
				n, err := strconv.ParseInt(ms, 10, 64)
				if err != nil {
					return fmt.Errorf("stream id %q: %w", msgs[0].ID, err)
				}
				if at := time.UnixMilli(n); first.IsZero() || at.Before(first) {
					first = at
				}
			}
		}
		if !first.IsZero() {
			f.firstWrite, f.meshRecovery = true, first.Sub(f.at)
		}
	}
	return nil
}

// checkSlots adds a violation for every script or transaction the slot
// watch saw touch two slots, and appends the scripts it saw run to the
// script log of `make cluster` (redistest.EnvScriptLog).
func checkSlots(ctx context.Context, m *mesh, v *violations) error {
	if m.watch == nil {
		return nil
	}
	if err := m.watch.Sync(ctx); err != nil {
		return err
	}
	for _, s := range m.watch.Violations() {
		v.add("slots", "%s", s)
	}
	fmt.Printf("slot watch: %d scripts and transactions checked on the cluster's nodes, %d distinct scripts, %d touched two slots\n",
		m.watch.Checked(), len(m.watch.Seen()), len(m.watch.Violations()))
	return m.watch.AppendScriptLog()
}

// printRedisFaults prints the faults and their recovery times.
func printRedisFaults(faults []*redisFault) {
	if len(faults) == 0 {
		return
	}
	fmt.Printf("redis cluster faults:\n")
	for _, f := range faults {
		rec := "no mission wrote to the moved slots afterwards"
		if f.firstWrite {
			rec = fmt.Sprintf("first mission event in the moved slots %s after the fault", f.meshRecovery.Round(time.Millisecond))
		}
		fmt.Printf("  %-17s %s -> %s promoted; cluster ok after %s; %d missions on those slots; %s\n",
			f.kind, f.victim, f.promoted, f.promotedIn.Round(time.Millisecond), f.affected, rec)
	}
}
