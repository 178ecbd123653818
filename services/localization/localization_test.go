package localization_test

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/localization"
)

const mapID = "map-test"

// mission builds a world of kind, seeds its map for mission m as the mapping
// service allocates it, and returns the world and a request localizing its
// agents.
func mission(t *testing.T, e *env, m string, kind world.Kind, data slamproto.AgentData) (*world.World, *localizationv1.LocalizeAgentsRequest) {
	t.Helper()
	w, _ := steptest.SeedWorld(t, e.Redis, m, mapID, world.Config{Seed: 7, Agents: 3, Kind: kind})
	return w, &localizationv1.LocalizeAgentsRequest{Saga: e.Saga(m), MapId: mapID, Agents: slamproto.WorldAgents(w, data)}
}

// missionKeys returns the keys of mission m that this service's
// compensation must remove (see steptest.Env.MissionKeys): all but the map
// the test seeded, which the mapping service owns.
func missionKeys(t *testing.T, e *env, m string) []string {
	t.Helper()
	return e.MissionKeys(t, m, mapstore.Key(m))
}

func TestLocalizeOffice(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{Parallelism: 2})
	for _, tc := range []struct {
		name string
		data slamproto.AgentData
	}{{"submaps", slamproto.Submaps}, {"scans", slamproto.Scans}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := "m-office-" + tc.name
			w, req := mission(t, e, m, world.Office, tc.data)
			ctx := steptest.Context(t)
			resp, err := e.client.LocalizeAgents(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetPoses()) != len(w.Agents) {
				t.Fatalf("%d poses, want %d", len(resp.GetPoses()), len(w.Agents))
			}
			for i, p := range resp.GetPoses() {
				truth := w.Agents[i].Truth
				got := slamproto.PoseFromProto(p.GetMapFromAgent())
				if p.GetAgentId() != slamproto.WorldAgentID(i) || p.GetAnchor() != (i == 0) {
					t.Errorf("pose %d = %v", i, p)
				}
				if d, a := math.Hypot(got.X-truth.X, got.Y-truth.Y), math.Abs(slam.AngleDiff(got.Theta, truth.Theta)); d > 0.1 || a > 2*math.Pi/180 {
					t.Errorf("%s: pose %v is %.3f m, %.2f° from the truth %v", p.GetAgentId(), got, d, a*180/math.Pi, truth)
				}
				if p.GetScore() <= 0 || p.GetScore() > 1 {
					t.Errorf("%s: score %g", p.GetAgentId(), p.GetScore())
				}
			}

			stored, err := e.Redis.HGetAll(ctx, "slammesh:{"+m+"}:localization").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != len(w.Agents) {
				t.Fatalf("stored %d poses, want %d", len(stored), len(w.Agents))
			}
			for _, p := range resp.GetPoses() {
				got := &typesv1.AgentPose{}
				if err := proto.Unmarshal([]byte(stored[p.GetAgentId()]), got); err != nil || !proto.Equal(got, p) {
					t.Errorf("stored pose of %s = %v (%v), want %v", p.GetAgentId(), got, err, p)
				}
			}

			progressed := e.EventsOf(t, m, progress.StepProgress)
			if len(progressed) < len(w.Agents) {
				t.Fatalf("%d step.progress events, want one per agent at least", len(progressed))
			}
			if last := progressed[len(progressed)-1]; last.Progress != 1 || last.Service != localization.ServiceName || last.Step != localization.Step {
				t.Errorf("last progress event %+v", last)
			}
			if n := len(e.EventsOf(t, m, progress.StepCompleted)); n != 1 {
				t.Errorf("%d step.completed events, want 1", n)
			}

			// A retry answers from the barrier without matching again: same
			// poses, no new progress, one effect.
			again, err := e.client.LocalizeAgents(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(again, resp) {
				t.Errorf("duplicate response differs:\n%v\nwant\n%v", again, resp)
			}
			if n := len(e.EventsOf(t, m, progress.StepProgress)); n != len(progressed) {
				t.Errorf("duplicate call reported %d more progress events: it matched again", n-len(progressed))
			}
			if got := e.Effects(t, m)["localize_agents:action"]; got != 1 {
				t.Errorf("localize_agents:action effects = %d, want 1", got)
			}

			rel, err := e.client.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: e.Saga(m)})
			if err != nil {
				t.Fatal(err)
			}
			if rel.GetReleased() != uint32(len(w.Agents)) {
				t.Errorf("released %d, want %d", rel.GetReleased(), len(w.Agents))
			}
			if keys := missionKeys(t, e, m); len(keys) != 0 {
				t.Errorf("keys left after release: %v", keys)
			}
			rel, err = e.client.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: e.Saga(m)})
			if err != nil || rel.GetReleased() != 0 {
				t.Errorf("repeated release = %v, %v; want nothing released", rel, err)
			}
			_, err = e.client.LocalizeAgents(ctx, req)
			steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
			if keys := missionKeys(t, e, m); len(keys) != 0 {
				t.Errorf("keys after hanging action: %v", keys)
			}
			eff := e.Effects(t, m)
			if eff["localize_agents:action"] != 1 || eff["localize_agents:compensation"] != 1 {
				t.Errorf("effects = %v", eff)
			}
		})
	}
}

func TestNullCompensation(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	const m = "m-null"
	_, req := mission(t, e, m, world.Office, slamproto.Submaps)
	ctx := steptest.Context(t)
	rel, err := e.client.ReleaseAgents(ctx, &localizationv1.ReleaseAgentsRequest{Saga: e.Saga(m)})
	if err != nil || rel.GetReleased() != 0 {
		t.Fatalf("null release = %v, %v", rel, err)
	}
	_, err = e.client.LocalizeAgents(ctx, req)
	steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	if keys := missionKeys(t, e, m); len(keys) != 0 {
		t.Errorf("keys: %v", keys)
	}
	if n := len(e.EventsOf(t, m, progress.StepProgress)); n != 0 {
		t.Errorf("a forbidden action matched agents (%d progress events)", n)
	}
	if eff := e.Effects(t, m); len(eff) != 0 {
		t.Errorf("effects = %v, want none", eff)
	}
}

func TestLocalizationFailures(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	tests := []struct {
		name   string
		kind   world.Kind
		mutate func(req *localizationv1.LocalizeAgentsRequest)
		reason string
		agents string
		scans  bool   // agents sent as scans, not submaps
		says   string // in the message, besides the agents
	}{
		{name: "sealed agent", kind: world.SealedAgent, reason: rpcerr.ReasonInsufficientOverlap, agents: "agent-2"},
		{name: "symmetric corridor", kind: world.SymmetricCorridor, reason: rpcerr.ReasonAmbiguousMatch, agents: "agent-1,agent-2"},
		{name: "empty submap", kind: world.Office, mutate: func(req *localizationv1.LocalizeAgentsRequest) {
			a := req.Agents[1]
			a.Submap = &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 40, Height: 40}, Data: make([]byte, 1600)}
		}, reason: rpcerr.ReasonInsufficientData, agents: "agent-1"},
		// An anchor that saw no wall (every reading a no-return beam) leaves
		// nothing to match against: a business failure naming it, not INTERNAL.
		{name: "empty anchor", kind: world.Office, mutate: func(req *localizationv1.LocalizeAgentsRequest) {
			a := req.Agents[0]
			a.Submap = &typesv1.OccupancyGrid{Meta: &typesv1.GridMeta{Resolution: 0.05, Width: 40, Height: 40}, Data: make([]byte, 1600)}
		}, reason: rpcerr.ReasonInsufficientData, agents: "agent-0"},
		// Scans none of whose beams returned say so (found by a review:
		// "0 occupied cells" alone left the cause to guess).
		{name: "scans without a return", kind: world.Office, scans: true, mutate: func(req *localizationv1.LocalizeAgentsRequest) {
			for _, f := range req.Agents[1].Scans {
				for i := range f.Scan.Ranges {
					f.Scan.Ranges[i] = float32(math.Inf(1))
				}
			}
		}, reason: rpcerr.ReasonInsufficientData, agents: "agent-1", says: "no beam of its"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := "m-fail-" + strings.ReplaceAll(tt.name, " ", "-")
			form := slamproto.Submaps
			if tt.scans {
				form = slamproto.Scans
			}
			_, req := mission(t, e, m, tt.kind, form)
			if tt.mutate != nil {
				tt.mutate(req)
			}
			_, err := e.client.LocalizeAgents(steptest.Context(t), req)
			steptest.WantStatus(t, err, codes.FailedPrecondition, tt.reason)
			if got := rpcerr.Info(err).GetMetadata()["agents"]; got != tt.agents {
				t.Errorf("agents = %q, want %q", got, tt.agents)
			}
			for _, id := range strings.Split(tt.agents, ",") {
				if !strings.Contains(err.Error(), id) {
					t.Errorf("message does not name %s: %v", id, err)
				}
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("message does not say %q: %v", tt.says, err)
			}
			if keys := missionKeys(t, e, m); len(keys) != 0 {
				t.Errorf("a failed localization stored %v", keys)
			}
			failed := e.EventsOf(t, m, progress.StepFailed)
			if len(failed) != 1 || failed[0].ErrorReason != tt.reason {
				t.Errorf("step.failed events %+v", failed)
			}
		})
	}
}

func TestMapNotFound(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	_, req := mission(t, e, "m-other", world.Office, slamproto.Submaps)
	tests := []struct {
		name   string
		mutate func(req *localizationv1.LocalizeAgentsRequest)
	}{
		{"no map for the mission", func(req *localizationv1.LocalizeAgentsRequest) { req.Saga.MissionId = "m-nomap" }},
		{"another map id", func(req *localizationv1.LocalizeAgentsRequest) { req.MapId = "map-else" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := proto.CloneOf(req)
			tt.mutate(r)
			_, err := e.client.LocalizeAgents(steptest.Context(t), r)
			steptest.WantStatus(t, err, codes.NotFound, rpcerr.ReasonMapNotFound)
		})
	}
}

func TestLocalizeInvalid(t *testing.T) {
	t.Parallel()
	e := start(t, localization.Config{})
	_, base := mission(t, e, "m-bad", world.Office, slamproto.Submaps)
	_, scans := mission(t, e, "m-bad-scans", world.Office, slamproto.Scans)
	tests := []struct {
		name   string
		mutate func(r *localizationv1.LocalizeAgentsRequest)
		field  string
	}{
		{"no saga", func(r *localizationv1.LocalizeAgentsRequest) { r.Saga = nil }, "saga"},
		{"bad saga id", func(r *localizationv1.LocalizeAgentsRequest) { r.Saga.SagaId = "s{1}" }, "saga.saga_id"},
		{"wrong step", func(r *localizationv1.LocalizeAgentsRequest) { r.Saga.Step = "allocate_map" }, "saga.step"},
		{"no map id", func(r *localizationv1.LocalizeAgentsRequest) { r.MapId = "" }, "map_id"},
		{"map_meta without resolution", func(r *localizationv1.LocalizeAgentsRequest) {
			r.MapMeta = &typesv1.GridMeta{Width: 40, Height: 40}
		}, "map_meta"},
		{"nan window", func(r *localizationv1.LocalizeAgentsRequest) { r.SearchWindowM = math.NaN() }, "search_window_m"},
		{"huge window", func(r *localizationv1.LocalizeAgentsRequest) { r.SearchWindowM = 1001 }, "search_window_m"},
		{"huge rotation window", func(r *localizationv1.LocalizeAgentsRequest) { r.SearchWindowRad = 4 }, "search_window_rad"},
		{"nan rotation window", func(r *localizationv1.LocalizeAgentsRequest) { r.SearchWindowRad = math.NaN() }, "search_window_rad"},
		{"anchor without guess", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[0].InitialGuess = nil }, "agents[0].initial_guess"},
		{"negative rotation window", func(r *localizationv1.LocalizeAgentsRequest) { r.SearchWindowRad = -0.1 }, "search_window_rad"},
		{"free conflict over 1", func(r *localizationv1.LocalizeAgentsRequest) { r.MaxFreeConflict = 1.5 }, "max_free_conflict"},
		{"nan free conflict", func(r *localizationv1.LocalizeAgentsRequest) { r.MaxFreeConflict = math.NaN() }, "max_free_conflict"},
		{"no agents", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents = nil }, "agents"},
		{"too many agents", func(r *localizationv1.LocalizeAgentsRequest) {
			for i := range 17 {
				a := proto.CloneOf(r.Agents[1])
				a.AgentId = "x" + string(rune('a'+i))
				r.Agents = append(r.Agents, a)
			}
		}, "agents"},
		{"duplicate id", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[2].AgentId = r.Agents[0].AgentId }, "agents[2].agent_id"},
		{"malformed id", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[1].AgentId = "robot 1" }, "agents[1].agent_id"},
		{"no anchor", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[0].Anchor = false }, "agents"},
		{"two anchors", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[2].Anchor = true }, "agents[2].anchor"},
		{"nan guess", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[1].InitialGuess.X = math.NaN() }, "agents[1].initial_guess"},
		{"zero resolution", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[2].Submap.Meta.Resolution = 0 }, "agents[2].submap.meta.resolution"},
		{"grid size mismatch", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[2].Submap.Meta.Width++ }, "agents[2].submap.data"},
		{"neither submap nor scans", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[1].Submap = nil }, "agents[1].submap"},
		{"submap and scans", func(r *localizationv1.LocalizeAgentsRequest) { r.Agents[1].Scans = scans.Agents[1].Scans }, "agents[1].submap"},
		{"inf scan pose", func(r *localizationv1.LocalizeAgentsRequest) {
			r.Agents[1] = proto.CloneOf(scans.Agents[1])
			r.Agents[1].Scans[4].OdomPose.Theta = math.Inf(-1)
		}, "agents[1].scans[4].odom_pose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := proto.CloneOf(base)
			tt.mutate(r)
			_, err := e.client.LocalizeAgents(steptest.Context(t), r)
			steptest.WantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
			if f := rpcerr.Field(err); f != tt.field {
				t.Errorf("field = %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
}
