// Package missionfmt renders missions and their progress events as text for
// people: slamctl and `slammesh dev --demo` print through it.
package missionfmt

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// State is a mission state without its enum prefix: COMPLETED.
func State(s orchestratorv1.MissionState) string {
	return strings.TrimPrefix(s.String(), "MISSION_STATE_")
}

// Mission writes a mission as an aligned block of lines.
func Mission(w io.Writer, m *orchestratorv1.Mission) {
	fmt.Fprintf(w, "mission   %s (saga %s)\n", m.GetMissionId(), m.GetSagaId())
	fmt.Fprintf(w, "state     %s\n", State(m.GetState()))
	fmt.Fprintf(w, "agents    %d\n", m.GetAgents())
	fmt.Fprintf(w, "trace     %s\n", m.GetTraceId())
	fmt.Fprintf(w, "stream    %s\n", m.GetProgressStream())
	switch {
	case m.GetMapId() != "" && m.GetMapVersion() > 0:
		fmt.Fprintf(w, "map       %s version %d, consistency %.3f\n", m.GetMapId(), m.GetMapVersion(), m.GetConsistency())
	case m.GetMapId() != "":
		// Version and consistency are the merge's (found by a review:
		// "version 0, consistency 0.000" read as a merge that measured 0).
		fmt.Fprintf(w, "map       %s, not merged\n", m.GetMapId())
	}
	poses(w, m.GetPoses())
	for i, s := range m.GetSteps() {
		label := "steps"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-9s %-16s %-20s attempts %d", label, s.GetName(),
			strings.TrimPrefix(s.GetState().String(), "STEP_STATE_"), s.GetAttempts())
		if s.GetCompensationAttempts() > 0 {
			fmt.Fprintf(w, ", compensations %d", s.GetCompensationAttempts())
		}
		fmt.Fprintln(w)
		// A step in flight after a failed attempt is retrying: say why, or
		// a step stuck on an unreachable service shows only its attempts
		// growing (found by a review). A compensation's first attempt
		// carries the action's error, which the mission's says; an ended
		// step's error is the mission's too.
		retrying := s.GetState() == orchestratorv1.StepState_STEP_STATE_RUNNING && s.GetAttempts() > 1 ||
			s.GetState() == orchestratorv1.StepState_STEP_STATE_COMPENSATING && s.GetCompensationAttempts() > 1
		if e := s.GetError(); e != nil && retrying {
			fmt.Fprintf(w, "%-9s %-16s retrying after %s: %s\n", "", "", strings.TrimSpace(e.GetCode()+" "+e.GetReason()), e.GetMessage())
		}
	}
	if e := m.GetError(); e != nil {
		fmt.Fprintf(w, "error     %s: %s\n", strings.TrimSpace(e.GetCode()+" "+e.GetReason()), e.GetMessage())
	}
	fmt.Fprintf(w, "created   %s\n", Stamp(m.GetCreatedAt()))
	if m.GetEndedAt() != nil {
		fmt.Fprintf(w, "ended     %s (%s)\n", Stamp(m.GetEndedAt()),
			m.GetEndedAt().AsTime().Sub(m.GetCreatedAt().AsTime()).Round(time.Millisecond))
	}
}

// poses writes the agents' map_from_agent, one line each under the label
// "poses": x and y in metres, the heading in degrees, and the match's
// score and ambiguity (an anchor's pose is given, not matched).
func poses(w io.Writer, ps []*typesv1.AgentPose) {
	width := 0
	for _, p := range ps {
		width = max(width, len(p.GetAgentId()))
	}
	for i, p := range ps {
		label := "poses"
		if i > 0 {
			label = ""
		}
		q := p.GetMapFromAgent()
		fmt.Fprintf(w, "%-9s %-*s x %8.3f m  y %8.3f m  θ %8.3f°", label, width, p.GetAgentId(), q.GetX(), q.GetY(), q.GetTheta()*180/math.Pi)
		if p.GetAnchor() {
			fmt.Fprintln(w, "  anchor (given)")
			continue
		}
		fmt.Fprintf(w, "  score %.3f, ambiguity %.3f\n", p.GetScore(), p.GetAmbiguity())
	}
}

// Event writes one event as a line, with a bar for step progress.
func Event(w io.Writer, ev *eventsv1.MissionEvent) {
	typ := strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_"))
	typ = strings.Replace(typ, "_", ".", 1)
	line := fmt.Sprintf("%s %-23s %-16s", ev.GetTs().AsTime().Local().Format("15:04:05.000"), typ, ev.GetStep())
	if ev.GetType() == eventsv1.EventType_EVENT_TYPE_STEP_PROGRESS {
		line += " " + Bar(ev.GetProgress())
	}
	// A step.retrying message names its attempt already ("attempt 2 in
	// 1.8ms after: …").
	if attempt := fmt.Sprintf("attempt %d", ev.GetAttempt()); ev.GetAttempt() > 1 && !strings.HasPrefix(ev.GetMessage(), attempt) {
		line += " " + attempt
	}
	if ev.GetMessage() != "" {
		line += " " + ev.GetMessage()
	}
	if ev.GetErrorCode() != "" {
		line += fmt.Sprintf(" [%s %s]", ev.GetErrorCode(), ev.GetErrorReason())
	}
	fmt.Fprintln(w, strings.TrimRight(line, " "))
}

// Bar draws a fraction in [0, 1] as a 20-character bar with a percentage.
func Bar(p float64) string {
	const width = 20
	p = min(max(p, 0), 1)
	n := int(p*width + 0.5)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", width-n), p*100)
}

// Stamp formats a timestamp in local time, "-" when unset.
func Stamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}
