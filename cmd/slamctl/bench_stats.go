package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// redisCounters are the cumulative counters of one Redis server, from
// INFO stats and INFO commandstats.
//
// What the bench reports per mission from the difference of two snapshots:
//   - commands: Δtotal_commands_processed, every command the server ran.
//     A command a Lua script runs counts (Redis counts redis.call), and so
//     does each command queued in MULTI/EXEC and the WATCH, MULTI, EXEC,
//     EVALSHA around them: it is the work Redis does for a mission.
//   - round trips: Δtotal_reads_processed, the reads of client requests off
//     a socket. A client waits for the reply of one request batch before it
//     sends the next on a connection, so one read is one request-reply
//     exchange: a lone command, an EVALSHA, a pipeline or a MULTI…EXEC sent
//     in one write each count one. It is an upper bound: a request larger
//     than Redis's 16 KiB read buffer, or split by TCP, takes more reads.
//
// Both include whatever else talked to that Redis meanwhile (the mesh's
// background work such as the recovery scan and lease heartbeats is charged
// to the missions, which is fair; other clients are not, so measure on a
// Redis of the mesh's own).
type redisCounters struct {
	commands int64
	reads    int64
	// calls is cmdstat_<command>:calls=N by command name.
	calls map[string]int64
	// servers is how many servers' counters are summed (the masters of a
	// Cluster): each ran one INFO of the probe's per snapshot.
	servers int64
	// runIDs are the servers' run_id (INFO server), sorted: a server
	// that restarted has another, and its counters started again from 0.
	runIDs []string
	// restarted is set by sub when the run ids differ.
	restarted bool
}

// add sums o into c (a Cluster's masters).
func (c *redisCounters) add(o redisCounters) {
	c.commands += o.commands
	c.reads += o.reads
	c.servers += o.servers
	c.runIDs = append(c.runIDs, o.runIDs...)
	slices.Sort(c.runIDs)
	for name, n := range o.calls {
		c.calls[name] += n
	}
}

// parseRedisInfo reads the counters from the text of INFO stats
// commandstats; it fails when either total is missing (Redis before 6.0
// has no total_reads_processed).
func parseRedisInfo(info string) (redisCounters, error) {
	c := redisCounters{commands: -1, reads: -1, calls: map[string]int64{}, servers: 1}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		switch {
		case key == "total_commands_processed":
			c.commands, _ = strconv.ParseInt(val, 10, 64)
		case key == "total_reads_processed":
			c.reads, _ = strconv.ParseInt(val, 10, 64)
		case key == "run_id":
			c.runIDs = []string{val}
		case strings.HasPrefix(key, "cmdstat_"):
			calls, _, _ := strings.Cut(strings.TrimPrefix(val, "calls="), ",")
			if n, err := strconv.ParseInt(calls, 10, 64); err == nil && strings.HasPrefix(val, "calls=") {
				c.calls[strings.TrimPrefix(key, "cmdstat_")] = n
			}
		}
	}
	if c.commands < 0 || c.reads < 0 {
		return c, errors.New("INFO has no total_commands_processed or total_reads_processed (Redis 6.0 or later has both)")
	}
	return c, nil
}

// sub returns the counters from before to c, less the probe's own
// traffic: the INFO of the first snapshot is counted by the second, and
// the read of the second INFO by itself (on each server summed).
func (c redisCounters) sub(before redisCounters) redisCounters {
	own := max(c.servers, 1)
	d := redisCounters{commands: c.commands - before.commands - own, reads: c.reads - before.reads - own, calls: map[string]int64{}, servers: c.servers,
		restarted: !slices.Equal(c.runIDs, before.runIDs)}
	for name, n := range c.calls {
		if n -= before.calls[name]; name == "info" {
			n -= own
		}
		if n > 0 {
			d.calls[name] = n
		}
	}
	return d
}

// printRedisDelta prints delta per mission, with the commands that cost
// the most.
func printRedisDelta(w io.Writer, delta redisCounters, missions int) {
	if missions == 0 {
		fmt.Fprintln(w, "redis    no completed mission to charge commands to")
		return
	}
	if delta.restarted {
		fmt.Fprintln(w, "redis    Redis restarted (or a Cluster failed over) during the bench: its counters started again, no counts per mission")
		return
	}
	if delta.commands < 0 || delta.reads < 0 {
		fmt.Fprintln(w, "redis    the counters went back (CONFIG RESETSTAT during the bench): no counts per mission")
		return
	}
	per := func(n int64) float64 { return float64(n) / float64(missions) }
	fmt.Fprintf(w, "redis    per mission %.1f commands  %.1f round trips  (Δtotal_commands_processed %d, Δtotal_reads_processed %d, %d completed missions)\n",
		per(delta.commands), per(delta.reads), delta.commands, delta.reads, missions)
	names := make([]string, 0, len(delta.calls))
	for name := range delta.calls {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := delta.calls[b] - delta.calls[a]; d != 0 {
			return int(min(max(d, -1), 1))
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for _, name := range names[:min(len(names), 10)] {
		fmt.Fprintf(&b, "  %s %.1f", name, per(delta.calls[name]))
	}
	fmt.Fprintf(w, "redis    commands per mission:%s\n", b.String())
}

// stepTime is how long one step of a mission took.
type stepTime struct {
	step string
	d    time.Duration
}

// missionTimes is what one mission's events say about its time: from
// mission.started to mission.completed, and per step from its first
// step.started to its last step.completed (retries included), in the order
// the steps started.
type missionTimes struct {
	total time.Duration
	steps []stepTime
}

// timesFromEvents reads the times of a completed mission from its events;
// ok is false unless the events hold its start and its completion.
func timesFromEvents(events []*eventsv1.MissionEvent) (mt missionTimes, ok bool) {
	var started, ended time.Time
	stepStart := map[string]time.Time{}
	stepEnd := map[string]time.Time{}
	var order []string
	for _, ev := range events {
		ts := ev.GetTs().AsTime()
		switch ev.GetType() {
		case eventsv1.EventType_EVENT_TYPE_MISSION_STARTED:
			if started.IsZero() {
				started = ts
			}
		case eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED:
			ended = ts
		case eventsv1.EventType_EVENT_TYPE_STEP_STARTED:
			if _, seen := stepStart[ev.GetStep()]; !seen {
				stepStart[ev.GetStep()] = ts
				order = append(order, ev.GetStep())
			}
		case eventsv1.EventType_EVENT_TYPE_STEP_COMPLETED:
			stepEnd[ev.GetStep()] = ts
		}
	}
	if started.IsZero() || ended.IsZero() {
		return mt, false
	}
	mt.total = ended.Sub(started)
	for _, s := range order {
		if end, done := stepEnd[s]; done {
			mt.steps = append(mt.steps, stepTime{step: s, d: end.Sub(stepStart[s])})
		}
	}
	return mt, true
}

// stepTimes watches each mission of ids (completed ones: the watch replays
// their events and ends) and returns the times their events give, skipping
// missions whose events cannot be read.
func stepTimes(ctx context.Context, c *clients, ids []string) []missionTimes {
	var mu sync.Mutex
	var out []missionTimes
	g := new(errgroup.Group)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			stream, err := c.orchestrator.WatchMission(wctx, &orchestratorv1.WatchMissionRequest{MissionId: id})
			if err != nil {
				return nil
			}
			var events []*eventsv1.MissionEvent
			for {
				resp, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil
				}
				events = append(events, resp.GetEvent())
			}
			if mt, ok := timesFromEvents(events); ok {
				mu.Lock()
				out = append(out, mt)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // a mission whose events cannot be read is left out
	return out
}

// printStepTimes prints p50 and p90 per step, of the whole mission and of
// the time outside the steps (the orchestrator's own: records, events,
// calls on the wire).
func printStepTimes(w io.Writer, times []missionTimes) {
	if len(times) == 0 {
		fmt.Fprintln(w, "steps    no mission's events could be read")
		return
	}
	byStep := map[string][]time.Duration{}
	var order []string
	var total, outside []time.Duration
	for _, mt := range times {
		total = append(total, mt.total)
		in := time.Duration(0)
		for _, s := range mt.steps {
			if _, seen := byStep[s.step]; !seen {
				order = append(order, s.step)
			}
			byStep[s.step] = append(byStep[s.step], s.d)
			in += s.d
		}
		outside = append(outside, mt.total-in)
	}
	q := func(ds []time.Duration) string {
		slices.Sort(ds)
		return fmt.Sprintf("%s/%s", roundDur(percentile(ds, 0.5)), roundDur(percentile(ds, 0.9)))
	}
	var b strings.Builder
	for _, s := range order {
		fmt.Fprintf(&b, "  %s %s", s, q(byStep[s]))
	}
	fmt.Fprintf(w, "steps    p50/p90 from the events of %d missions:%s  outside steps %s  mission %s\n", len(times), b.String(), q(outside), q(total))
}
