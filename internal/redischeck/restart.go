package redischeck

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// RestartPoll is how often WatchRestarts reads INFO by default: a restart
// is told within this long, at one small INFO per process.
const RestartPoll = 30 * time.Second

// Restart is a restart of Redis that WatchRestarts saw: the server's run_id
// changed between two reads.
type Restart struct {
	// AOFBefore is whether the server ran with AOF at the last read before
	// the restart. A restarted server loads what AOFNow says, its AOF or
	// its last RDB save: with both off, it came back from its last save
	// (everything, after a SHUTDOWN that saved; without the writes since,
	// after a crash or a kill), or empty, and what those writes undid (a
	// cancel, a deletion) may be undone itself, which no key shows
	// afterwards (found by a review: cancelled missions ran again to
	// COMPLETED); with the two different, it loaded a file the old
	// instance did not keep up. A server restarted between two reads with
	// another setting is not seen.
	AOFBefore bool
	// AOFNow is whether the restarted server runs with AOF.
	AOFNow bool
	// NOPERM is the restarted server's count of NOPERM errors no client's
	// refused command explains, at the first read after the restart: above
	// 0, it dropped writes of its AOF as it loaded it (AOFACLAdvice).
	NOPERM int64
}

// WatchRestarts reads the run_id of the single Redis rdb talks to every
// interval until ctx ends, and calls restarted when it changed. Reads that
// fail (Redis down) are skipped: readiness reports those. So are reads of
// a server still loading its dataset (INFO's loading:1), which reports
// aof_enabled:0 until its AOF is loaded, and has not yet met the NOPERM
// errors that loading it may raise (found by a review: every service
// logged an AOF change that was none after a restart with AOF). rdb must
// not be a Cluster client, whose INFO reaches any node.
func WatchRestarts(ctx context.Context, rdb redis.UniversalClient, interval time.Duration, restarted func(Restart)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last string
	var aof bool
	for {
		info, err := rdb.Info(ctx, "server", "persistence", "errorstats", "commandstats").Result()
		loading, _ := InfoField(info, "loading")
		if id, ok := InfoField(info, "run_id"); err == nil && ok && loading != "1" {
			v, _ := InfoField(info, "aof_enabled")
			now := v == "1"
			if last != "" && id != last {
				restarted(Restart{AOFBefore: aof, AOFNow: now, NOPERM: UnexplainedNOPERM(info)})
			}
			last, aof = id, now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
