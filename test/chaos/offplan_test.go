//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// maxReruns bounds the clean runs judgeOffPlan makes: more missions off
// their plan than that is no longer the odd world.
const maxReruns = 10

// rerunTimeout bounds one clean run (started with wait).
const rerunTimeout = 60 * time.Second

// judgeOffPlan adds an outcome violation for each mission of off (ended
// otherwise than its faults dictate) unless its world, not the chaos,
// decided it. A generated world may be one the localization refuses
// whatever happens around it (FAILED_PRECONDITION AMBIGUOUS_MATCH when a
// corridor offers two poses that score alike): a mission planned to
// complete and compensated for such a refusal is started again once the
// run is over, without faults, as <id>-clean; when that run ends in the same
// state for the same reason, the world decided, and the mission is
// returned among worldRefused. It runs after every other check, so the
// clean runs count in none of them.
func (m *mesh) judgeOffPlan(ctx context.Context, off []offPlan, v *violations, log *reporter) (worldRefused []string) {
	for i, o := range off {
		p, ms := o.p, o.mission
		outcome := func(extra string) {
			v.add("outcome", "%s (%s): ended %s, its faults dictate %s (error %s %s)%s", p.id, p.category,
				stateName(ms.GetState()), stateName(p.want), ms.GetError().GetCode(), ms.GetError().GetReason(), extra)
		}
		if i >= maxReruns || !domainRefusal(p, ms) {
			outcome("")
			continue
		}
		clean, err := m.rerunClean(ctx, p)
		if err != nil {
			outcome(fmt.Sprintf("; its clean run: %v", err))
			continue
		}
		if clean.GetState() != ms.GetState() || clean.GetError().GetReason() != ms.GetError().GetReason() {
			outcome(fmt.Sprintf("; the same world without faults ended %s %s", stateName(clean.GetState()), clean.GetError().GetReason()))
			continue
		}
		log.printf("%s (%s): its world is refused without faults too (%s %s): not the chaos", p.id, p.category,
			clean.GetError().GetCode(), clean.GetError().GetReason())
		worldRefused = append(worldRefused, p.id)
	}
	return worldRefused
}

// domainRefusal reports whether mission ms, planned to complete, was
// compensated for a refusal of its data (FAILED_PRECONDITION) rather than
// for a fault.
func domainRefusal(p plan, ms *orchestratorv1.Mission) bool {
	return p.want == orchestratorv1.MissionState_MISSION_STATE_COMPLETED &&
		ms.GetState() == orchestratorv1.MissionState_MISSION_STATE_COMPENSATED &&
		ms.GetError().GetCode() == "FAILED_PRECONDITION"
}

// rerunClean runs p's scenario again as mission <id>-clean, without faults,
// on the surviving replica, and returns the mission as it ended.
func (m *mesh) rerunClean(ctx context.Context, p plan) (*orchestratorv1.Mission, error) {
	req := proto.Clone(p.req).(*orchestratorv1.StartMissionRequest)
	req.MissionId = p.id + "-clean"
	req.Faults = nil
	req.Wait = true
	cctx, cancel := context.WithTimeout(ctx, rerunTimeout)
	defer cancel()
	resp, err := m.replicas[1-victimIdx].rpc().StartMission(cctx, req)
	if err != nil {
		return nil, fmt.Errorf("StartMission %s: %w", req.GetMissionId(), err)
	}
	return resp.GetMission(), nil
}
