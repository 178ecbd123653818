package orchestrator

import (
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

var missionStates = map[saga.State]orchestratorv1.MissionState{
	saga.Pending:      orchestratorv1.MissionState_MISSION_STATE_PENDING,
	saga.Running:      orchestratorv1.MissionState_MISSION_STATE_RUNNING,
	saga.Compensating: orchestratorv1.MissionState_MISSION_STATE_COMPENSATING,
	saga.Completed:    orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
	saga.Compensated:  orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
	saga.Failed:       orchestratorv1.MissionState_MISSION_STATE_FAILED,
}

var stepStates = map[saga.StepState]orchestratorv1.StepState{
	saga.StepPending:            orchestratorv1.StepState_STEP_STATE_PENDING,
	saga.StepRunning:            orchestratorv1.StepState_STEP_STATE_RUNNING,
	saga.StepSucceeded:          orchestratorv1.StepState_STEP_STATE_SUCCEEDED,
	saga.StepFailed:             orchestratorv1.StepState_STEP_STATE_FAILED,
	saga.StepCompensating:       orchestratorv1.StepState_STEP_STATE_COMPENSATING,
	saga.StepCompensated:        orchestratorv1.StepState_STEP_STATE_COMPENSATED,
	saga.StepCompensationFailed: orchestratorv1.StepState_STEP_STATE_COMPENSATION_FAILED,
}

// missionStateOf is the inverse of missionStates, for ListMissions' filter.
func missionStateOf(s orchestratorv1.MissionState) (saga.State, bool) {
	for k, v := range missionStates {
		if v == s {
			return k, true
		}
	}
	return "", false
}

// toMission presents a saga record as the API's Mission. Step outputs are the
// step responses; one that does not decode is left out rather than failing
// the read, since the record's state is still worth showing.
func toMission(rec *saga.Record) *orchestratorv1.Mission {
	m := &orchestratorv1.Mission{
		MissionId:      rec.Key,
		SagaId:         rec.SagaID,
		State:          missionStates[rec.State],
		Steps:          make([]*orchestratorv1.Step, len(rec.Steps)),
		TraceId:        traceID(rec.TraceParent),
		ProgressStream: progress.MissionStream(rec.Key),
		Error:          missionError(rec.Error),
		CreatedAt:      timestamp(rec.CreatedAt),
		UpdatedAt:      timestamp(rec.UpdatedAt),
		EndedAt:        timestamp(rec.EndedAt),
		Agents:         agentCount(rec.Input),
		Cancelled:      rec.Cancelled,
	}
	for i, s := range rec.Steps {
		m.Steps[i] = &orchestratorv1.Step{
			Name:                 s.Name,
			State:                stepStates[s.State],
			Attempts:             uint32(s.Attempts),
			CompensationAttempts: uint32(s.CompAttempts),
			Error:                missionError(s.Error),
		}
	}
	var alloc mappingv1.AllocateMapResponse
	if proto.Unmarshal(rec.Outputs[stepAllocateMap], &alloc) == nil {
		m.MapId = alloc.GetMapId()
	}
	var loc localizationv1.LocalizeAgentsResponse
	if proto.Unmarshal(rec.Outputs[stepLocalizeAgents], &loc) == nil {
		m.Poses = loc.GetPoses()
	}
	var merged mergev1.MergeMapsResponse
	if proto.Unmarshal(rec.Outputs[stepMergeMaps], &merged) == nil {
		m.MapVersion = merged.GetVersion()
		m.Consistency = merged.GetConsistency()
	}
	return m
}

func missionError(f saga.Failure) *orchestratorv1.MissionError {
	if f.IsZero() {
		return nil
	}
	return &orchestratorv1.MissionError{Code: f.Code, Reason: f.Reason, Message: f.Message}
}

// timestamp is a record time as the API gives it: in milliseconds, the
// precision the record is stored with, so that the reply of the call that
// started a mission and every later read give the same instant.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t.Truncate(time.Millisecond))
}

// traceID extracts the trace id from a W3C traceparent
// ("00-<32 hex trace id>-<16 hex span id>-<flags>").
func traceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

// agentCount reads the number of agents from a stored StartMissionRequest
// without decoding it: a mission started with real agent data holds
// megabytes of submaps that a GetMission or ListMissions has no use for. It
// skips over the top-level fields, reading only the scenario's agent count
// or counting the agents.
func agentCount(input []byte) uint32 {
	const (
		fieldScenario = 2 // StartMissionRequest.scenario
		fieldAgents   = 3 // StartMissionRequest.agents
	)
	var agents uint32
	for len(input) > 0 {
		num, typ, n := protowire.ConsumeTag(input)
		if n < 0 {
			return 0
		}
		input = input[n:]
		switch {
		case num == fieldAgents && typ == protowire.BytesType:
			agents++
		case num == fieldScenario && typ == protowire.BytesType:
			sc, m := protowire.ConsumeBytes(input)
			if m < 0 {
				return 0
			}
			var s typesv1.Scenario
			if proto.Unmarshal(sc, &s) != nil {
				return 0
			}
			return s.GetAgents()
		}
		m := protowire.ConsumeFieldValue(num, typ, input)
		if m < 0 {
			return 0
		}
		input = input[m:]
	}
	return agents
}
