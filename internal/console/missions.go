package console

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/auth"
	"github.com/slammesh/slammesh/internal/progress"
)

// states lists the mission states a list may be filtered by, in saga order.
var states = []string{"PENDING", "RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED"}

// stateName is a mission state without its enum prefix: COMPLETED.
func stateName(s orchestratorv1.MissionState) string {
	return strings.TrimPrefix(s.String(), "MISSION_STATE_")
}

// stepStateName is a step state without its enum prefix: SUCCEEDED.
func stepStateName(s orchestratorv1.StepState) string {
	return strings.TrimPrefix(s.String(), "STEP_STATE_")
}

// listRow is one mission in the list, as rendered and as sent to live list pages
// (JSON). Times are Unix milliseconds so the script can tick ages.
type listRow struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Agents      uint32 `json:"agents"`
	CreatedMs   int64  `json:"created_ms"`
	EndedMs     int64  `json:"ended_ms,omitempty"`
	CurrentStep string `json:"step"`
	Error       string `json:"error"`
	// Age and Duration are pre-formatted for the first render.
	Age      string `json:"-"`
	Duration string `json:"-"`
}

// rowOf summarizes m for the list at time now.
func rowOf(m *orchestratorv1.Mission, now time.Time) listRow {
	r := listRow{
		ID:        m.GetMissionId(),
		State:     stateName(m.GetState()),
		Agents:    m.GetAgents(),
		CreatedMs: m.GetCreatedAt().AsTime().UnixMilli(),
	}
	created := m.GetCreatedAt().AsTime()
	end := now
	if m.GetEndedAt() != nil {
		end = m.GetEndedAt().AsTime()
		r.EndedMs = end.UnixMilli()
	}
	r.Age = humanDuration(now.Sub(created))
	r.Duration = humanDuration(end.Sub(created))
	r.CurrentStep = currentStep(m)
	if e := m.GetError(); e != nil {
		r.Error = e.GetReason()
		if r.Error == "" {
			r.Error = e.GetCode()
		}
	}
	return r
}

// currentStep names the step a mission is at: the one running or
// compensating, else for a mission still going the first not yet done.
func currentStep(m *orchestratorv1.Mission) string {
	for _, s := range m.GetSteps() {
		switch s.GetState() {
		case orchestratorv1.StepState_STEP_STATE_RUNNING:
			return s.GetName()
		case orchestratorv1.StepState_STEP_STATE_COMPENSATING:
			return s.GetName() + " (undo)"
		}
	}
	switch m.GetState() {
	case orchestratorv1.MissionState_MISSION_STATE_PENDING, orchestratorv1.MissionState_MISSION_STATE_RUNNING:
		for _, s := range m.GetSteps() {
			if s.GetState() == orchestratorv1.StepState_STEP_STATE_PENDING {
				return s.GetName()
			}
		}
	}
	return ""
}

// humanDuration rounds d for people: 850ms, 4.2s, 3m05s, 2h10m.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// listPage is the data of the missions list.
type listPage struct {
	Nav    string
	Filter string
	States []string
	Rows   []listRow
	More   bool
}

func (c *Console) serveList(w http.ResponseWriter, r *http.Request) {
	filter := strings.ToUpper(r.URL.Query().Get("state"))
	req := &orchestratorv1.ListMissionsRequest{PageSize: uint32(c.limits.ListPageSize)}
	if filter != "" {
		v, ok := orchestratorv1.MissionState_value["MISSION_STATE_"+filter]
		if !ok || v == 0 {
			c.renderError(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("unknown state %q; one of %s", filter, strings.Join(states, ", ")))
			return
		}
		req.State = orchestratorv1.MissionState(v)
	}
	ctx, cancel := c.call(r)
	defer cancel()
	resp, err := c.deps.Orchestrator.ListMissions(ctx, req)
	if err != nil {
		c.renderRPCError(w, r, "ListMissions", err)
		return
	}
	now := c.now()
	page := listPage{Nav: "missions", Filter: filter, States: states, More: resp.GetNextPageToken() != ""}
	for _, m := range resp.GetMissions() {
		page.Rows = append(page.Rows, rowOf(m, now))
	}
	c.render(w, r, http.StatusOK, "list", "", page)
}

// missionPage is the data of a mission page.
type missionPage struct {
	Nav      string
	ID       string
	Row      listRow
	Mission  *orchestratorv1.Mission
	Steps    []stepView
	Timeline timeline
	Events   []eventView
	Poses    []poseView
	TraceURL string
	HasMap   bool
	// CanCancel and CanResume say which buttons the state and the user's
	// role allow; the RPCs decide in the end. Role is the user's role as
	// the orchestrator returned it ("" when it did not), and CancelNeeds
	// and ResumeNeeds the role a button the state allows but the role does
	// not would need.
	CanCancel                bool
	CanResume                bool
	Role                     string
	CancelNeeds, ResumeNeeds string
	// EventsError says why the event stream could not be read, if so.
	EventsError string
}

// stepView is one step of the mission record.
type stepView struct {
	Name, State          string
	Attempts, CompAttmps uint32
	Error                string
}

// poseView is one agent's estimated pose with its match quality.
type poseView struct {
	Agent                 string
	Colour                template.CSS
	X, Y, ThetaDeg        float64
	Score, Inliers, Ambig float64
	Iterations            uint32
	Anchor                bool
}

func (c *Console) serveMission(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := c.call(r)
	defer cancel()
	var header metadata.MD
	resp, err := c.deps.Orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id}, grpc.Header(&header))
	if err != nil {
		c.renderRPCError(w, r, "mission "+id, err)
		return
	}
	m := resp.GetMission()
	page := missionPage{Nav: "missions", ID: m.GetMissionId(), Mission: m, Row: rowOf(m, c.now())}
	for _, s := range m.GetSteps() {
		v := stepView{Name: s.GetName(), State: stepStateName(s.GetState()), Attempts: s.GetAttempts(), CompAttmps: s.GetCompensationAttempts()}
		if e := s.GetError(); e != nil {
			v.Error = strings.TrimSpace(e.GetCode() + " " + e.GetReason())
		}
		page.Steps = append(page.Steps, v)
	}
	events, err := progress.Range(ctx, c.deps.Redis, progress.MissionStream(m.GetMissionId()))
	if err != nil {
		page.EventsError = "events unavailable: " + err.Error()
	}
	page.Timeline = buildTimeline(events, c.now())
	for _, e := range events {
		page.Events = append(page.Events, viewOf(e))
	}
	colours := agentColours(m.GetPoses(), nil)
	for _, p := range m.GetPoses() {
		col := colours[p.GetAgentId()]
		page.Poses = append(page.Poses, poseView{
			Agent:      p.GetAgentId(),
			Colour:     template.CSS(fmt.Sprintf("#%02x%02x%02x", col.R, col.G, col.B)),
			X:          p.GetMapFromAgent().GetX(),
			Y:          p.GetMapFromAgent().GetY(),
			ThetaDeg:   p.GetMapFromAgent().GetTheta() * 180 / math.Pi,
			Score:      p.GetScore(),
			Inliers:    p.GetInlierRatio(),
			Ambig:      p.GetAmbiguity(),
			Iterations: p.GetIterations(),
			Anchor:     p.GetAnchor(),
		})
	}
	if c.deps.JaegerURL != "" && m.GetTraceId() != "" {
		page.TraceURL = c.deps.JaegerURL + "/trace/" + url.PathEscape(m.GetTraceId())
	}
	// A compensated mission's map was released (or its merge reverted):
	// there is nothing left to draw.
	page.HasMap = c.deps.Maps != nil && m.GetMapId() != "" && m.GetMapVersion() > 0 &&
		m.GetState() != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED
	switch m.GetState() {
	case orchestratorv1.MissionState_MISSION_STATE_PENDING, orchestratorv1.MissionState_MISSION_STATE_RUNNING,
		orchestratorv1.MissionState_MISSION_STATE_COMPLETED:
		page.CanCancel = true
	case orchestratorv1.MissionState_MISSION_STATE_FAILED:
		page.CanResume = true
	}
	c.applyRole(&page, header)
	block := ""
	if r.URL.Query().Get("part") == "live" {
		block = "live"
	}
	c.render(w, r, http.StatusOK, "mission", block, page)
}

// applyRole leaves out of page the buttons that the user's role, returned
// by the orchestrator in header, may not use (found by a review: a viewer
// was offered Cancel and Tear down, which answered 403).
func (c *Console) applyRole(page *missionPage, header metadata.MD) {
	v := header.Get(auth.RoleHeader)
	if len(v) != 1 || c.deps.MethodRoles == nil {
		return
	}
	role, err := auth.ParseRole(v[0])
	if err != nil {
		return
	}
	page.Role = role.String()
	if need, ok := c.deps.MethodRoles[orchestratorv1.OrchestratorService_CancelMission_FullMethodName]; ok && page.CanCancel && role < need {
		page.CanCancel, page.CancelNeeds = false, need.String()
	}
	if need, ok := c.deps.MethodRoles[orchestratorv1.OrchestratorService_ResumeMission_FullMethodName]; ok && page.CanResume && role < need {
		page.CanResume, page.ResumeNeeds = false, need.String()
	}
}

// serveCancel cancels a running mission (or tears down a completed one)
// through CancelMission and returns to the mission page, which follows the
// compensation live.
func (c *Console) serveCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := c.call(r)
	defer cancel()
	if _, err := c.deps.Orchestrator.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{MissionId: id, Reason: "cancelled from the console"}); err != nil {
		c.renderRPCError(w, r, "cancel mission "+id, err)
		return
	}
	http.Redirect(w, r, "/missions/"+url.PathEscape(id), http.StatusSeeOther)
}

// serveResume resumes a FAILED mission's compensation through ResumeMission;
// one that resumed nothing (already compensating) is 409.
func (c *Console) serveResume(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := c.call(r)
	defer cancel()
	resp, err := c.deps.Orchestrator.ResumeMission(ctx, &orchestratorv1.ResumeMissionRequest{MissionId: id})
	if err != nil {
		c.renderRPCError(w, r, "resume mission "+id, err)
		return
	}
	if !resp.GetResumed() {
		// Another call resumed it first (two operators, two tabs): say so
		// rather than redirect as if this click had done it.
		c.renderError(w, r, http.StatusConflict, "Nothing to resume", fmt.Sprintf(
			"mission %s is already %s: its compensation was resumed by another call, or it needed none",
			id, stateName(resp.GetMission().GetState())))
		return
	}
	http.Redirect(w, r, "/missions/"+url.PathEscape(id), http.StatusSeeOther)
}
