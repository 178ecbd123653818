package redischeck

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// RestartPoll is how often WatchRestarts reads INFO by default: a restart
// is told within this long, at one small INFO per process.
const RestartPoll = 30 * time.Second

// WatchRestarts reads the run_id of the single Redis rdb talks to every
// interval until ctx ends, and calls restarted when it changed (the server
// restarted since the last read), with whether the server now runs with AOF.
// A Redis restarted without AOF came back from its last RDB snapshot, or
// empty: the writes since are lost, and what they undid (a cancel, a
// deletion) may be undone itself, which no key shows afterwards (found by a
// review: cancelled missions ran again to COMPLETED). Reads that fail (Redis
// down) are skipped: readiness reports those. rdb must not be a Cluster
// client, whose INFO reaches any node.
func WatchRestarts(ctx context.Context, rdb redis.UniversalClient, interval time.Duration, restarted func(aof bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		info, err := rdb.Info(ctx, "server", "persistence").Result()
		if id, ok := InfoField(info, "run_id"); err == nil && ok {
			if last != "" && id != last {
				aof, _ := InfoField(info, "aof_enabled")
				restarted(aof == "1")
			}
			last = id
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
