//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// recordView is what the test reads of a saga record: the fields recovery
// changes.
type recordView struct {
	state, owner, epoch string
}

func (v recordView) terminal() bool { return saga.State(v.state).Terminal() }

// readRecords reads the records of ids in one pipelined round trip; missions
// without a record yet are left out. On a Redis Cluster a read that fails
// while a master is failed over (CLUSTERDOWN, a dead node) is retried for up
// to redisFaultRetry.
func readRecords(ctx context.Context, rdb redis.UniversalClient, ids []string) (map[string]recordView, error) {
	deadline := time.Now().Add(redisFaultRetry)
	for {
		out, err := readRecordsOnce(ctx, rdb, ids)
		if _, cluster := rdb.(*redis.ClusterClient); err == nil || !cluster || ctx.Err() != nil || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// redisFaultRetry bounds the retries of the test's own reads across a Redis
// Cluster failover, which takes a few seconds (cluster-node-timeout 3 s plus
// the election).
const redisFaultRetry = 30 * time.Second

func readRecordsOnce(ctx context.Context, rdb redis.UniversalClient, ids []string) (map[string]recordView, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, saga.RecordKey(id), "state", "owner", "epoch")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read saga records: %w", err)
	}
	out := make(map[string]recordView, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if s, _ := v[0].(string); s != "" {
			o, _ := v[1].(string)
			e, _ := v[2].(string)
			out[ids[i]] = recordView{state: s, owner: o, epoch: e}
		}
	}
	return out, nil
}

// kill is one SIGKILL of the victim orchestrator and what followed.
type kill struct {
	n         int
	at        time.Time
	offset    time.Duration // since the first burst
	victimPID int
	victim    string // the killed incarnation's saga owner name
	learned   bool   // victim was read from a record, not assumed
	// failover: the victim was restarted only once its orphans were
	// claimed; otherwise at once.
	failover bool
	// waitedForWork is how long the kill waited, after its random moment,
	// for the victim to drive sagas mid-step.
	waitedForWork time.Duration
	orphans       []*orphan
	restartPID    int
	restartInc    int
	healthyIn     time.Duration
	// moved is set when the restart found the victim's port taken and
	// moved to another (see replica).
	moved *move

	// recovery is the kill-to-last-resume time, set by measureRecovery.
	recovery time.Duration
}

func (kl *kill) mode() string {
	if kl.failover {
		return "failover: restart once the orphans are claimed"
	}
	return "race: restart at once"
}

// orphan is an unfinished saga the killed incarnation owned.
type orphan struct {
	id    string
	state string // at the kill
	// resumedAt is the time of the first resumption event after the kill,
	// and message its message; zero when there was none.
	resumedAt time.Time
	message   string
	// resumer is the owner the message names ("resumed by <owner>, …"),
	// or "" when it names none.
	resumer string
}

// resumerOf returns the owner a resumption message names ("resumed by
// <owner>, epoch <N>[, lease of <previous owner> expired <d> ago]", see
// docs/architecture.md "Event flow"), or "".
func resumerOf(message string) string {
	rest, ok := strings.CutPrefix(message, saga.MessageResumedPrefix)
	if !ok {
		return ""
	}
	owner, _, _ := strings.Cut(rest, ",")
	return owner
}

// killLoop kills the victim replica n times at random moments spread over
// window (counted from begin), each time once the victim drives at least
// orphans sagas mid-step (or after ownedWorkWait), then restarts it on the
// same gRPC address (see replica for when it cannot) and waits until it is
// healthy before the next kill.
//
// Odd kills are failovers: the victim stays down until the survivor has
// claimed every orphan (or bound has passed), so the survivor's recovery is
// what is measured. Even kills restart the victim at once, so the restarted
// process, whose first recovery scan comes right away, races the survivor
// for the orphans — it usually wins, since a saga created just before the
// kill has its lease expire one lease TTL later, a multiple of the scan
// interval after the restart.
func (m *mesh) killLoop(ctx context.Context, r *rand.Rand, victimIdx int, ids []string, n, orphans int, window, bound time.Duration, begin time.Time, log *reporter) ([]*kill, error) {
	victim := m.replicas[victimIdx]
	seg := window / time.Duration(n)
	var kills []*kill
	holding := false // m.faults, released on every return
	defer func() {
		if holding {
			m.faults.Unlock()
			holding = false
		}
	}()
	for k := range n {
		at := begin.Add(time.Duration(k)*seg + time.Duration(float64(seg)*(0.25+0.5*r.Float64())))
		if err := sleepUntil(ctx, at); err != nil {
			return kills, err
		}
		p, inc := victim.current()
		kl := &kill{n: k + 1, victimPID: p.PID(), failover: k%2 == 0}
		kl.victim, kl.learned = victim.owner(inc)
		waitStart := time.Now()
		if err := awaitOwnedWork(ctx, m.rdb, ids, kl.victim, orphans); err != nil {
			return kills, fmt.Errorf("kill %d: %w", kl.n, err)
		}
		kl.waitedForWork = time.Since(waitStart)
		// The owner name may have been learned while waiting.
		kl.victim, kl.learned = victim.owner(inc)

		// A kill and its recovery do not overlap a Redis master failover
		// (on a cluster), so that each recovery is measured on its own.
		m.faults.Lock()
		holding = true
		kl.at = time.Now()
		kl.offset = kl.at.Sub(begin)
		if err := p.Kill(); err != nil {
			return kills, err
		}
		recs, err := readRecords(ctx, m.rdb, ids)
		if err != nil {
			return kills, err
		}
		for id, v := range recs {
			if !v.terminal() && v.owner == kl.victim {
				kl.orphans = append(kl.orphans, &orphan{id: id, state: v.state})
			}
		}
		slices.SortFunc(kl.orphans, func(a, b *orphan) int { return strings.Compare(a.id, b.id) })
		kills = append(kills, kl)
		log.printf("kill %d (%s): SIGKILL %s pid %d (owner %s) %.1fs into the workload (%.2fs after its random moment, waiting for sagas mid-step): %d unfinished sagas orphaned",
			kl.n, kl.mode(), victim.name, kl.victimPID, kl.victim, kl.offset.Seconds(), kl.waitedForWork.Seconds(), len(kl.orphans))

		if kl.failover {
			if err := awaitClaimed(ctx, m.rdb, kl, bound+time.Second); err != nil {
				return kills, fmt.Errorf("kill %d: %w", kl.n, err)
			}
		}
		restartAt := time.Now()
		mv, err := victim.start(ctx)
		kl.moved = mv
		if mv != nil {
			log.printf("kill %d: %s could not rebind %s (%v); restarted on %s", kl.n, victim.name, mv.from, mv.why, mv.to)
		}
		if err != nil {
			return kills, fmt.Errorf("restart after kill %d: %w", kl.n, err)
		}
		if err := victim.waitHealthy(ctx); err != nil {
			return kills, fmt.Errorf("restart after kill %d: %w", kl.n, err)
		}
		np, ninc := victim.current()
		kl.restartPID, kl.restartInc, kl.healthyIn = np.PID(), ninc, time.Since(restartAt)
		m.faults.Unlock()
		holding = false
		log.printf("kill %d: %s restarted as pid %d at %s, healthy in %.2fs", kl.n, victim.name, kl.restartPID, victim.addr(), kl.healthyIn.Seconds())
	}
	return kills, nil
}

// awaitClaimed waits until every orphan of kl names another owner, or
// timeout passes (checkRecovery then reports the ones never resumed).
func awaitClaimed(ctx context.Context, rdb redis.UniversalClient, kl *kill, timeout time.Duration) error {
	ids := make([]string, len(kl.orphans))
	for i, o := range kl.orphans {
		ids[i] = o.id
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		recs, err := readRecords(wctx, rdb, ids)
		if err != nil {
			if wctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if !slices.ContainsFunc(ids, func(id string) bool { return recs[id].owner == kl.victim }) {
			return nil
		}
		select {
		case <-wctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// awaitOwnedWork waits until owner drives at least want sagas that are
// running or compensating (not merely just created), so that a kill orphans
// several in the middle of a step. After ownedWorkWait it returns nil
// anyway: the kill then orphans fewer, or nothing, which checkRecovery
// reports.
func awaitOwnedWork(ctx context.Context, rdb redis.UniversalClient, ids []string, owner string, want int) error {
	wctx, cancel := context.WithTimeout(ctx, ownedWorkWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		recs, err := readRecords(wctx, rdb, ids)
		if err != nil {
			if wctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		n := 0
		for _, v := range recs {
			if v.owner == owner && (v.state == string(saga.Running) || v.state == string(saga.Compensating)) {
				n++
			}
		}
		if n >= want {
			return nil
		}
		select {
		case <-wctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// ownedWorkWait bounds how long a kill waits for the victim to have work.
const ownedWorkWait = 15 * time.Second

// measureRecovery reads each orphan's events for the first resumption (a
// mission.started "resumed by …") written after the kill, and sets the
// kill's recovery time: from the kill to the last of those.
func measureRecovery(ctx context.Context, rdb redis.UniversalClient, kills []*kill) error {
	for _, kl := range kills {
		for _, o := range kl.orphans {
			events, err := progress.Range(ctx, rdb, progress.MissionStream(o.id))
			if err != nil {
				return err
			}
			for _, e := range events {
				// The victim's own resumption of an earlier orphan, written in
				// the instant between kl.at and its death, does not count.
				if e.Type == progress.MissionStarted && strings.HasPrefix(e.Message, saga.MessageResumedPrefix) &&
					e.Time.After(kl.at) && resumerOf(e.Message) != kl.victim {
					o.resumedAt, o.message, o.resumer = e.Time, e.Message, resumerOf(e.Message)
					kl.recovery = max(kl.recovery, e.Time.Sub(kl.at))
					break
				}
			}
		}
	}
	return nil
}

func sleepUntil(ctx context.Context, at time.Time) error {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
