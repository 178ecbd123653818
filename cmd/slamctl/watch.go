package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"time"

	"google.golang.org/grpc"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
)

// streamID is a Redis stream entry id: milliseconds, optionally "-" and a
// sequence number.
var streamID = regexp.MustCompile(`^[0-9]{1,20}(-[0-9]{1,20})?$`)

func cmdWatch(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", "watch [flags] MISSION_ID", stderr)
	from := fs.String("from", "", "resume after this stream entry id")
	reconnect := fs.Duration("reconnect", defaultReconnect, reconnectFlagHelp+"the watch resumes after the last event printed (0: fail at once)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reconnect < 0 {
		return fmt.Errorf("%w: --reconnect %v: want 0 or more", errUsage, *reconnect)
	}
	if *from != "" && !streamID.MatchString(*from) {
		return fmt.Errorf("%w: --from %q: want a stream entry id such as 1700000000000-0 (an event's streamId)", errUsage, *from)
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
	o := outage{reconnect: reconnect, stderr: stderr, plaintextTo: g.plaintextAddr()}
	for {
		a, opt := o.begin()
		got, err := followMission(ctx, c, g, id, &from, &last, stdout, opt)
		if err == nil {
			break
		}
		if got {
			o.over()
		}
		after := from
		if after == "" {
			after = "the mission's start"
		}
		if err := o.retry(ctx, "watch mission", err, "resuming after "+after, a); err != nil {
			return err
		}
	}
	switch last {
	case eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED:
		return nil
	case eventsv1.EventType_EVENT_TYPE_MISSION_COMPENSATED:
		return endError(id, orchestratorv1.MissionState_MISSION_STATE_COMPENSATED)
	case eventsv1.EventType_EVENT_TYPE_MISSION_FAILED:
		return endError(id, orchestratorv1.MissionState_MISSION_STATE_FAILED)
	}
	// The stream ended with no terminal event: the mission had ended
	// before the entry the watch resumed after (watch --from its last
	// event), or a replica ended the stream early. The record says which.
	var resp *orchestratorv1.GetMissionResponse
	for {
		a, opt := o.begin()
		var err error
		if resp, err = c.orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id}, opt); err == nil {
			break
		}
		if err := o.retry(ctx, "get mission", err, "asking again", a); err != nil {
			return err
		}
	}
	st := resp.GetMission().GetState()
	switch st {
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED, orchestratorv1.MissionState_MISSION_STATE_COMPENSATED, orchestratorv1.MissionState_MISSION_STATE_FAILED:
		if !g.json && from != "" {
			fmt.Fprintf(stdout, "(no events after %s: the mission ended %s)\n", from, missionfmt.State(st))
		}
		return endError(id, st)
	}
	return fmt.Errorf("watch of mission %s ended before the mission did (it is %s)", id, missionfmt.State(st))
}

// followMission runs one WatchMission call after *from, printing each event
// and advancing *from and *last past it, until the stream ends (nil) or
// fails. got reports whether any event arrived.
func followMission(ctx context.Context, c *clients, g global, id string, from *string, last *eventsv1.EventType, stdout io.Writer, opts ...grpc.CallOption) (got bool, err error) {
	stream, err := c.orchestrator.WatchMission(ctx, &orchestratorv1.WatchMissionRequest{MissionId: id, FromStreamId: *from}, opts...)
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
