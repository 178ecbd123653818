package merge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/slammesh/slammesh/internal/slam/fuse"
)

// survey is what a refused merge needs to accept every agent. A refusal
// names the first agent the gates refuse; the next run, with that agent's
// figures as the gates, would refuse the next one, and a large mission
// costs seconds a run (found on an 8-agent Freiburg log). So the merge goes
// on adding the inputs after the refused one — a Merger adds a refused
// input too, as the rerun with looser gates would — and records each
// refusal.
type survey struct {
	// refused are the ids of the agents the gates refused, in order.
	refused []string
	// share is the largest changed share among the refusals of the share
	// gate, rounded up to 1e-4, or 0 when none failed it; consistency the
	// lowest consistency among the refusals of the floor, rounded down to
	// 1e-3, or 0 when none failed it. Given as max_changed_share and
	// min_consistency, they let every agent through.
	share, consistency float64
	// complete: every input was added; a survey cut short (an invalid
	// input, a cancelled call) gives no advice.
	complete bool
}

// surveyRest adds the inputs after in[k] to m, whose last input, in[k],
// the gates refused with first, and returns the survey; name names input i.
func surveyRest(ctx context.Context, m *fuse.Merger, in []fuse.Input, k int, name func(int) string, first *fuse.InconsistencyError) survey {
	var s survey
	s.note(name(k), first)
	for i := k + 1; i < len(in); i++ {
		if ctx.Err() != nil {
			return s
		}
		_, err := m.Add(in[i])
		var inc *fuse.InconsistencyError
		switch {
		case errors.As(err, &inc):
			s.note(name(i), inc)
		case err != nil:
			return s
		}
	}
	s.complete = true
	return s
}

// note records the refusal e of agent id.
func (s *survey) note(id string, e *fuse.InconsistencyError) {
	s.refused = append(s.refused, id)
	if e.ChangedShare > e.MaxChangedShare {
		s.share = max(s.share, math.Ceil(e.ChangedShare*1e4)/1e4)
	}
	if e.Consistency < e.Threshold {
		c := math.Floor(e.Consistency*1e3) / 1e3
		if s.consistency == 0 || c < s.consistency {
			s.consistency = c
		}
	}
}

// metadata is the survey's ErrorInfo metadata: the gates it found accept
// every agent, accepting_max_changed_share and accepting_min_consistency,
// each only when it refused some agent and the survey is complete.
func (s survey) metadata() []string {
	var md []string
	if s.complete && s.share > 0 {
		md = append(md, "accepting_max_changed_share", exact(s.share))
	}
	if s.complete && s.consistency > 0 {
		md = append(md, "accepting_min_consistency", exact(s.consistency))
	}
	return md
}

// advice is the survey's sentence for the refusal, of a merge of total
// agents: which of them the gates refuse, and the gates that accept them
// all; "" when it has none to give.
func (s survey) advice(total int) string {
	if !s.complete || s.share == 0 && s.consistency == 0 {
		return ""
	}
	var gates []string
	if s.share > 0 {
		gates = append(gates, "max_changed_share "+exact(s.share))
	}
	if s.consistency > 0 {
		gates = append(gates, "min_consistency "+exact(s.consistency))
	}
	who := fmt.Sprintf("it is the only one of the %d agents they refuse", total)
	if len(s.refused) > 1 {
		who = fmt.Sprintf("they refuse %d of the %d agents (%s)", len(s.refused), total, strings.Join(s.refused, ", "))
	}
	return fmt.Sprintf("; with every agent added at these gates, %s: %s accept them all", who, strings.Join(gates, " and "))
}
