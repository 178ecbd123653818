//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
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
	// meshRecovery is from the fault to the first write the mesh made to
	// the moved slots on the new master: the first mission stream entry
	// there whose id (the millisecond Redis accepted it, on this machine's
	// clock) is past the moment the promotion was seen in every node's
	// view (so it cannot be a write the old master took before the
	// fault); affected counts the missions whose keys live there; writes is
	// false when none of them wrote after the promotion.
	meshRecovery time.Duration
	affected     int
	writes       bool
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

// measureRedisRecovery fills in each fault's mesh recovery: over the
// missions whose keys the promoted master serves now, the first write
// after the promotion.
func measureRedisRecovery(ctx context.Context, rdb redis.UniversalClient, faults []*redisFault, ids []string) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	cc.ReloadState(ctx)
	for _, f := range faults {
		// Writes from a little before the fault to well after it.
		from, to := f.at.Add(-2*time.Second), f.at.Add(f.promotedIn+30*time.Second)
		var stamps []int64
		for _, id := range ids {
			node, err := cc.MasterForKey(ctx, saga.RecordKey(id))
			if err != nil {
				return err
			}
			if node.Options().Addr != f.promoted {
				continue
			}
			f.affected++
			msgs, err := rdb.XRange(ctx, progress.MissionStream(id), strconv.FormatInt(from.UnixMilli(), 10), strconv.FormatInt(to.UnixMilli(), 10)).Result()
			if err != nil {
				return err
			}
			for _, msg := range msgs {
				ms, _, _ := strings.Cut(msg.ID, "-")
				n, err := strconv.ParseInt(ms, 10, 64)
				if err != nil {
					return fmt.Errorf("stream id %q: %w", msg.ID, err)
				}
				stamps = append(stamps, n)
			}
		}
		promoted := f.at.Add(f.promotedIn).UnixMilli()
		slices.Sort(stamps)
		if k, _ := slices.BinarySearch(stamps, promoted); k < len(stamps) {
			f.writes, f.meshRecovery = true, time.UnixMilli(stamps[k]).Sub(f.at)
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
		if f.writes {
			rec = fmt.Sprintf("the mesh wrote to the moved slots on the new master %s after the fault", f.meshRecovery.Round(time.Millisecond))
		}
		fmt.Printf("  %-17s %s -> %s promoted; cluster ok after %s; %d missions on those slots; %s\n",
			f.kind, f.victim, f.promoted, f.promotedIn.Round(time.Millisecond), f.affected, rec)
	}
}
