package orchestrator_test

import (
	"slices"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
)

// traceSpans returns the ended spans of trace id.
func traceSpans(st *stack, id string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range st.spans.Ended() {
		if s.SpanContext().TraceID().String() == id {
			out = append(out, s)
		}
	}
	return out
}

func serviceOf(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

// findSpan returns the span of service named name with kind, or nil.
func findSpan(spans []sdktrace.ReadOnlySpan, service, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if serviceOf(s) == service && s.Name() == name && s.SpanKind() == kind {
			return s
		}
	}
	return nil
}

func TestMissionIsOneTrace(t *testing.T) {
	st := startStack(t, stackConfig{})
	tests := []struct {
		name     string
		scenario *typesv1.Scenario
		state    orchestratorv1.MissionState
		// want lists spans as service, kind, name.
		want [][3]string
	}{
		{
			name:     "completed",
			scenario: &typesv1.Scenario{Seed: 7, Agents: 3},
			state:    orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
			want: [][3]string{
				{"orchestrator", "client", "slammesh.mapping.v1.MappingService/AllocateMap"},
				{"mapping", "server", "slammesh.mapping.v1.MappingService/AllocateMap"},
				{"localization", "server", "slammesh.localization.v1.LocalizationService/LocalizeAgents"},
				{"merge", "server", "slammesh.merge.v1.MergeService/MergeMaps"},
			},
		},
		{
			// The merge fails its consistency gate: every step ran, so the
			// one failed trace holds the spans of all four services and of
			// the three compensations.
			name:     "compensated",
			scenario: &typesv1.Scenario{Seed: 7, Agents: 3, Kind: typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD},
			state:    orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
			want: [][3]string{
				{"merge", "server", "slammesh.merge.v1.MergeService/MergeMaps"},
				{"orchestrator", "internal", "compensate merge_maps attempt 1"},
				{"orchestrator", "internal", "compensate localize_agents attempt 1"},
				{"orchestrator", "internal", "compensate allocate_map attempt 1"},
				{"orchestrator", "client", "slammesh.merge.v1.MergeService/RevertMerge"},
				{"merge", "server", "slammesh.merge.v1.MergeService/RevertMerge"},
				{"localization", "server", "slammesh.localization.v1.LocalizationService/ReleaseAgents"},
				{"mapping", "server", "slammesh.mapping.v1.MappingService/ReleaseMap"},
			},
		},
	}
	kinds := map[string]trace.SpanKind{"client": trace.SpanKindClient, "server": trace.SpanKindServer, "internal": trace.SpanKindInternal}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := st.start(t, &orchestratorv1.StartMissionRequest{Scenario: tt.scenario, Wait: true}).GetMission()
			if m.GetState() != tt.state {
				t.Fatalf("state = %v, want %v", m.GetState(), tt.state)
			}
			var spans []sdktrace.ReadOnlySpan
			await(t, "the mission's spans", func() bool {
				spans = traceSpans(st, m.GetTraceId())
				for _, w := range tt.want {
					if findSpan(spans, w[0], w[2], kinds[w[1]]) == nil {
						return false
					}
				}
				return true
			})
			services := map[string]bool{}
			for _, s := range spans {
				services[serviceOf(s)] = true
			}
			for _, svc := range []string{"orchestrator", "mapping", "localization", "merge"} {
				if !services[svc] {
					t.Errorf("trace %s has no span of %s; services: %v", m.GetTraceId(), svc, services)
				}
			}

			// The step RPCs hang under the engine's spans: mission → step
			// attempt (or compensation) → client call → server call.
			mission := findSpan(spans, "orchestrator", "mission "+m.GetMissionId(), trace.SpanKindInternal)
			if mission == nil {
				t.Fatalf("no mission span among %v", spanNames(spans))
			}
			checkCallChain(t, spans, mission, "step allocate_map attempt 1", "mapping", "slammesh.mapping.v1.MappingService/AllocateMap")
			if tt.state == orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
				checkCallChain(t, spans, mission, "compensate merge_maps attempt 1", "merge", "slammesh.merge.v1.MergeService/RevertMerge")
				checkCallChain(t, spans, mission, "compensate allocate_map attempt 1", "mapping", "slammesh.mapping.v1.MappingService/ReleaseMap")
			}
		})
	}
}

// checkCallChain fails unless the engine span named attempt (a step attempt
// or a compensation) is a child of the mission span, the orchestrator's
// client span of method a child of it, and service's server span of method
// a child of that.
func checkCallChain(t *testing.T, spans []sdktrace.ReadOnlySpan, mission sdktrace.ReadOnlySpan, attempt, service, method string) {
	t.Helper()
	eng := findSpan(spans, "orchestrator", attempt, trace.SpanKindInternal)
	client := findSpan(spans, "orchestrator", method, trace.SpanKindClient)
	server := findSpan(spans, service, method, trace.SpanKindServer)
	switch {
	case eng == nil || client == nil || server == nil:
		t.Fatalf("spans of %s (%s) missing among %v", attempt, method, spanNames(spans))
	case eng.Parent().SpanID() != mission.SpanContext().SpanID():
		t.Errorf("%s: parent is %s, want the mission span", attempt, eng.Parent().SpanID())
	case client.Parent().SpanID() != eng.SpanContext().SpanID():
		t.Errorf("%s client span's parent is %s, want %s", method, client.Parent().SpanID(), attempt)
	case server.Parent().SpanID() != client.SpanContext().SpanID():
		t.Errorf("%s server span's parent is %s, want the client span", method, server.Parent().SpanID())
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = serviceOf(s) + ":" + s.Name()
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
