package orchestrator

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// definitionName is the saga definition name stored in every mission record;
// an engine refuses to run a record of another definition.
const definitionName = "mission"

// The saga steps. Their names are API: events, SagaContext.step and fault
// plans use them (docs/architecture.md, "Saga steps").
const (
	stepAllocateMap    = "allocate_map"
	stepLocalizeAgents = "localize_agents"
	stepMergeMaps      = "merge_maps"
)

// mission holds what the saga's steps call: one client per step service and
// the scenario cache. Its step functions take everything else from the saga
// record (the input is the normalized StartMissionRequest, outputs are the
// step responses), so any orchestrator can run or resume any mission.
type mission struct {
	mapping      mappingv1.MappingServiceClient
	localization localizationv1.LocalizationServiceClient
	merge        mergev1.MergeServiceClient
	scenarios    *scenarioAgents
}

// definition returns the mission saga: allocate the map, localize the agents
// against it, merge their submaps into it; each undone by its compensation.
func (m *mission) definition(policy saga.Policy) *saga.Definition {
	return &saga.Definition{
		Name: definitionName,
		Steps: []saga.Step{
			{Name: stepAllocateMap, Action: m.allocateMap, Compensate: m.releaseMap},
			{Name: stepLocalizeAgents, Action: m.localizeAgents, Compensate: m.releaseAgents},
			{Name: stepMergeMaps, Action: m.mergeMaps, Compensate: m.revertMerge},
		},
		Classify: classify,
		Describe: describe,
		Policy:   policy,
	}
}

// The step functions pass ctx, which carries the engine's span of the step
// attempt, straight to the client, so that the RPC's client span (and with
// it the step service's spans) joins the mission's trace.

func (m *mission) allocateMap(ctx context.Context, x *saga.Exec) error {
	in, sc, err := begin(x)
	if err != nil {
		return err
	}
	resp, err := m.mapping.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: sc, Spec: in.GetMap()})
	if err != nil {
		return err
	}
	return setOutput(x, resp)
}

func (m *mission) releaseMap(ctx context.Context, x *saga.Exec) error {
	_, sc, err := begin(x)
	if err != nil {
		return err
	}
	_, err = m.mapping.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: sc})
	return err
}

func (m *mission) localizeAgents(ctx context.Context, x *saga.Exec) error {
	in, sc, err := begin(x)
	if err != nil {
		return err
	}
	var alloc mappingv1.AllocateMapResponse
	if err := decodeOutput(x, stepAllocateMap, &alloc); err != nil {
		return err
	}
	agents, err := m.agents(ctx, in)
	if err != nil {
		return err
	}
	resp, err := m.localization.LocalizeAgents(ctx, &localizationv1.LocalizeAgentsRequest{
		Saga:            sc,
		MapId:           alloc.GetMapId(),
		Agents:          agents,
		SearchWindowM:   in.GetSearchWindowM(),
		SearchWindowRad: in.GetSearchWindowRad(),
		MaxFreeConflict: in.GetMaxFreeConflict(),
		MapMeta:         alloc.GetMeta(),
	})
	if err != nil {
		return err
	}
	return setOutput(x, resp)
}

func (m *mission) releaseAgents(ctx context.Context, x *saga.Exec) error {
	_, sc, err := begin(x)
	if err != nil {
		return err
	}
	_, err = m.localization.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: sc})
	return err
}

func (m *mission) mergeMaps(ctx context.Context, x *saga.Exec) error {
	in, sc, err := begin(x)
	if err != nil {
		return err
	}
	var alloc mappingv1.AllocateMapResponse
	if err := decodeOutput(x, stepAllocateMap, &alloc); err != nil {
		return err
	}
	var loc localizationv1.LocalizeAgentsResponse
	if err := decodeOutput(x, stepLocalizeAgents, &loc); err != nil {
		return err
	}
	agents, err := m.agents(ctx, in)
	if err != nil {
		return err
	}
	resp, err := m.merge.MergeMaps(ctx, &mergev1.MergeMapsRequest{
		Saga:            sc,
		MapId:           alloc.GetMapId(),
		Agents:          agents,
		Poses:           loc.GetPoses(),
		MapMeta:         alloc.GetMeta(),
		MaxChangedShare: in.GetMaxChangedShare(),
		MinConsistency:  in.GetMinConsistency(),
	})
	if err != nil {
		return err
	}
	return setOutput(x, resp)
}

func (m *mission) revertMerge(ctx context.Context, x *saga.Exec) error {
	_, sc, err := begin(x)
	if err != nil {
		return err
	}
	_, err = m.merge.RevertMerge(ctx, &mergev1.RevertMergeRequest{Saga: sc})
	return err
}

// agents returns the mission's agents: given in the request, or rebuilt from
// the scenario's seed, waiting (until ctx ends) for the submaps of a world
// StartMission began.
func (m *mission) agents(ctx context.Context, in *orchestratorv1.StartMissionRequest) ([]*typesv1.Agent, error) {
	if in.GetScenario() == nil {
		return in.GetAgents(), nil
	}
	agents, err := m.scenarios.Agents(ctx, in.GetScenario())
	switch {
	case err == nil:
		return agents, nil
	case ctx.Err() != nil:
		return nil, err
	default:
		// The scenario passed validation when the mission started, so the
		// generator refusing it now cannot be fixed by a retry.
		return nil, fmt.Errorf("%w: scenario: %w", errCorruptInput, err)
	}
}

// begin decodes the mission's input and returns it with the SagaContext of
// the call x is making: the barrier keys on saga id and step, the step service
// reports to the mission's stream, and the fault plan travels along (the
// services ignore it unless they allow faults).
func begin(x *saga.Exec) (*orchestratorv1.StartMissionRequest, *typesv1.SagaContext, error) {
	in, err := decodeInput(x.Input())
	if err != nil {
		return nil, nil, err
	}
	return in, &typesv1.SagaContext{
		MissionId:      x.Key(),
		SagaId:         x.SagaID(),
		Step:           x.Step(),
		Attempt:        uint32(x.Attempt()),
		ProgressStream: progress.MissionStream(x.Key()),
		Faults:         in.GetFaults(),
	}, nil
}

func decodeInput(b []byte) (*orchestratorv1.StartMissionRequest, error) {
	in := new(orchestratorv1.StartMissionRequest)
	if err := proto.Unmarshal(b, in); err != nil {
		return nil, fmt.Errorf("%w: input: %w", errCorruptInput, err)
	}
	return in, nil
}

func decodeOutput(x *saga.Exec, step string, dst proto.Message) error {
	b := x.Output(step)
	if b == nil {
		return fmt.Errorf("%w: no output of step %s", errCorruptInput, step)
	}
	if err := proto.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("%w: output of step %s: %w", errCorruptInput, step, err)
	}
	return nil
}

func setOutput(x *saga.Exec, resp proto.Message) error {
	b, err := proto.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode %s output: %w", x.Step(), err)
	}
	x.SetOutput(b)
	return nil
}
