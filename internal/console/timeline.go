package console

import (
	"time"

	"github.com/slammesh/slammesh/internal/progress"
)

// eventView is one progress event as the feed shows it, and as live pages
// receive it (JSON).
type eventView struct {
	ID       string  `json:"id"`
	Time     string  `json:"time"`
	Type     string  `json:"type"`
	Step     string  `json:"step"`
	Service  string  `json:"service"`
	Attempt  int     `json:"attempt"`
	Progress float64 `json:"progress"`
	Message  string  `json:"message"`
	Code     string  `json:"code"`
	Reason   string  `json:"reason"`
}

func viewOf(e progress.Event) eventView {
	return eventView{
		ID:       e.ID,
		Time:     e.Time.UTC().Format("15:04:05.000"),
		Type:     string(e.Type),
		Step:     e.Step,
		Service:  e.Service,
		Attempt:  e.Attempt,
		Progress: e.Progress,
		Message:  e.Message,
		Code:     e.ErrorCode,
		Reason:   e.ErrorReason,
	}
}

// span is one attempt of a step's action or compensation on the timeline.
// LeftPct and WidthPct place its bar on the mission's time axis.
type span struct {
	Phase    string // "action" or "compensation"
	Step     string
	Attempt  int
	Outcome  string // "ok", "failed" or "running"
	Code     string
	Reason   string
	Offset   string // from the mission's first event
	Duration string
	LeftPct  float64
	WidthPct float64

	start, end time.Time
}

// retry is a step the orchestrator retried, with the code that made it.
type retry struct {
	Step    string
	Attempt int
	Code    string
	Reason  string
	Message string
}

// compensation is one finished compensation attempt, in the order it ended.
type compensation struct {
	Step     string
	Attempt  int
	Outcome  string // "completed" or "failed"
	Code     string
	Reason   string
	Duration string
}

// timeline is a mission's history rebuilt from its event stream.
type timeline struct {
	Spans         []span
	Retries       []retry
	Compensations []compensation
	Total         string
}

// buildTimeline rebuilds a mission's attempts from its events, oldest
// first. The step services write step.started/completed/failed for their
// attempts and the orchestrator the compensations and retries; an attempt
// with no end event yet is running until now (or until the mission's last
// event, once it ended).
func buildTimeline(events []progress.Event, now time.Time) timeline {
	var t timeline
	if len(events) == 0 {
		return t
	}
	type key struct {
		phase, step string
		attempt     int
	}
	open := make(map[key]int) // index into t.Spans
	begin := events[0].Time
	last := events[len(events)-1].Time
	ended := false // after the last event (a step's late event after the end keeps it ended)
	for _, e := range events {
		ended = progress.Ended(ended, e.Type)
	}
	spanAt := func(k key, at time.Time) int {
		if i, ok := open[k]; ok {
			return i
		}
		t.Spans = append(t.Spans, span{Phase: k.phase, Step: k.step, Attempt: k.attempt, Outcome: "running", start: at})
		open[k] = len(t.Spans) - 1
		return len(t.Spans) - 1
	}
	closeSpan := func(k key, e progress.Event, outcome string) *span {
		i := spanAt(k, e.Time)
		delete(open, k)
		s := &t.Spans[i]
		s.Outcome, s.end, s.Code, s.Reason = outcome, e.Time, e.ErrorCode, e.ErrorReason
		return s
	}
	for _, e := range events {
		action := key{"action", e.Step, e.Attempt}
		comp := key{"compensation", e.Step, e.Attempt}
		switch e.Type {
		case progress.StepStarted:
			spanAt(action, e.Time)
		case progress.StepCompleted:
			closeSpan(action, e, "ok")
		case progress.StepFailed:
			closeSpan(action, e, "failed")
		case progress.StepRetrying:
			// The attempt that failed ends here if its service could not
			// say so (a stall past the deadline, a lost reply).
			if i, ok := open[key{"action", e.Step, e.Attempt - 1}]; ok && e.Attempt > 1 {
				s := &t.Spans[i]
				delete(open, key{"action", e.Step, e.Attempt - 1})
				s.Outcome, s.end, s.Code, s.Reason = "failed", e.Time, e.ErrorCode, e.ErrorReason
			}
			t.Retries = append(t.Retries, retry{Step: e.Step, Attempt: e.Attempt, Code: e.ErrorCode, Reason: e.ErrorReason, Message: e.Message})
		case progress.CompensationStarted:
			spanAt(comp, e.Time)
		case progress.CompensationCompleted, progress.CompensationFailed:
			outcome, spanOutcome := "completed", "ok"
			if e.Type == progress.CompensationFailed {
				outcome, spanOutcome = "failed", "failed"
			}
			s := closeSpan(comp, e, spanOutcome)
			t.Compensations = append(t.Compensations, compensation{
				Step: e.Step, Attempt: e.Attempt, Outcome: outcome, Code: e.ErrorCode, Reason: e.ErrorReason,
				Duration: humanDuration(s.end.Sub(s.start)),
			})
		}
	}
	stop := now
	if ended {
		stop = last
	}
	total := stop.Sub(begin)
	t.Total = humanDuration(total)
	for i := range t.Spans {
		s := &t.Spans[i]
		if s.end.IsZero() {
			s.end = stop
		}
		s.Offset = "+" + humanDuration(s.start.Sub(begin))
		s.Duration = humanDuration(s.end.Sub(s.start))
		if total > 0 {
			s.LeftPct = pct(s.start.Sub(begin), total)
			s.WidthPct = max(pct(s.end.Sub(s.start), total), 0.5)
			s.WidthPct = min(s.WidthPct, 100-s.LeftPct)
		}
	}
	return t
}

// pct is d as a percentage of total, clamped to [0, 100].
func pct(d, total time.Duration) float64 {
	return min(max(100*float64(d)/float64(total), 0), 100)
}
