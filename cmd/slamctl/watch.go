package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
)

// defaultReconnect is how long watch (and start --watch) keeps resuming a
// watch whose orchestrator became unreachable: longer than an orchestrator
// takes to drain and restart, or a client to reach another replica.
const defaultReconnect = time.Minute

// Resume backoff after a lost watch: the first retry comes quickly (another
// replica is usually there), later ones no more often than every
// maxResumeBackoff.
const (
	firstResumeBackoff = 100 * time.Millisecond
	maxResumeBackoff   = 2 * time.Second
)

func cmdWatch(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", "watch [flags] MISSION_ID", stderr)
	from := fs.String("from", "", "resume after this stream entry id")
	reconnect := fs.Duration("reconnect", defaultReconnect, "how long to keep resuming, from the last event seen, while the orchestrator is unreachable (0: fail at once)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reconnect < 0 {
		return fmt.Errorf("%w: --reconnect %v: want 0 or more", errUsage, *reconnect)
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	return watchMission(ctx, c, g, id, *from, *reconnect, stdout, stderr)
}

// watchMission prints one line per event, with a bar for progress, until the
// mission ends; it fails when the mission did not complete. A watch that
// ends UNAVAILABLE (its orchestrator draining or gone) is resumed after the
// last event printed, so no event is printed twice or lost, for up to
// reconnect from the first failure of an outage; the resumption is said on
// stderr.
func watchMission(ctx context.Context, c *clients, g global, id, from string, reconnect time.Duration, stdout, stderr io.Writer) error {
	var last eventsv1.EventType
	var lostAt time.Time // start of the current outage; zero while events arrive
	backoff := firstResumeBackoff
	for {
		got, err := followMission(ctx, c, g, id, &from, &last, stdout)
		if err == nil {
			break
		}
		if got {
			lostAt, backoff = time.Time{}, firstResumeBackoff
		}
		if status.Code(err) != codes.Unavailable || reconnect <= 0 || ctx.Err() != nil {
			return rpcError("watch mission", err)
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
			after := from
			if after == "" {
				after = "the mission's start"
			}
			fmt.Fprintf(stderr, "watch: %v; resuming after %s for up to %v (--reconnect)\n", rpcError("lost the orchestrator", err), after, reconnect)
		} else if time.Since(lostAt) >= reconnect {
			return fmt.Errorf("watch mission: the orchestrator was unreachable for %v (--reconnect): %w", reconnect, rpcError("last attempt", err))
		}
		select {
		case <-ctx.Done():
			return rpcError("watch mission", status.FromContextError(ctx.Err()).Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxResumeBackoff)
	}
	switch last {
	case eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED:
		return nil
	case eventsv1.EventType_EVENT_TYPE_MISSION_COMPENSATED:
		return endError(id, orchestratorv1.MissionState_MISSION_STATE_COMPENSATED)
	case eventsv1.EventType_EVENT_TYPE_MISSION_FAILED:
		return endError(id, orchestratorv1.MissionState_MISSION_STATE_FAILED)
	default:
		return fmt.Errorf("watch of mission %s ended before the mission did", id)
	}
}

// followMission runs one WatchMission call after *from, printing each event
// and advancing *from and *last past it, until the stream ends (nil) or
// fails. got reports whether any event arrived.
func followMission(ctx context.Context, c *clients, g global, id string, from *string, last *eventsv1.EventType, stdout io.Writer) (got bool, err error) {
	stream, err := c.orchestrator.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: id, FromStreamId: *from})
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = true
		ev := resp.GetEvent()
		*last = ev.GetType()
		if ev.GetStreamId() != "" {
			*from = ev.GetStreamId()
		}
		if g.json {
			if err := printJSON(stdout, ev); err != nil {
				return got, err
			}
			continue
		}
		missionfmt.Event(stdout, ev)
	}
}

// endError is what start --wait and --watch exit with for mission id
// ended in state s: nil when it completed, an error (exit status 1) when it
// was compensated or failed, so that `slamctl start --wait && …` stops at
// a mission that did not complete.
func endError(id string, s orchestratorv1.MissionState) error {
	switch s {
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
		return fmt.Errorf("mission %s was compensated", id)
	case orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return fmt.Errorf("mission %s failed: compensation incomplete, operator action needed", id)
	}
	return nil
}
