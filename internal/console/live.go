package console

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/progress"
)

// eventBatch is how many stream entries one read of a live feed returns.
const eventBatch = 256

// eventBlock bounds each blocking read of a live feed, so it notices the
// end of its request within about this long.
const eventBlock = time.Second

// listHub polls the mission index for every open list page at once, while
// at least one is open, and sends each the rows that changed. One poll per
// interval whatever the number of pages keeps the console's load on the
// orchestrator flat.
type listHub struct {
	orch   Orchestrator
	limits Limits
	log    *slog.Logger
	// token is forwarded on the polls: each user's list is read with the
	// user's own token, so nobody sees rows through another's role.
	token string

	mu      sync.Mutex
	subs    map[*listSub]struct{}
	running bool
	// rows is the last poll's rows, newest first, for pages that join; nil
	// before the first poll.
	rows []listRow
	// seen is the signature of each row of the last poll.
	seen map[string]string
	// failing is set while polls fail, so a failure streak is logged once.
	failing bool
}

// hubs keeps one listHub per token (one for all pages when no token is
// used), dropped with its last page so that tokens never seen again leave
// nothing behind.
type hubs struct {
	orch    Orchestrator
	limits  Limits
	log     *slog.Logger
	mu      sync.Mutex
	byToken map[string]*hubRef
}

type hubRef struct {
	hub  *listHub
	refs int
}

// acquire returns the hub of token and a func that releases it.
func (hs *hubs) acquire(token string) (*listHub, func()) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	ref := hs.byToken[token]
	if ref == nil {
		ref = &hubRef{hub: newListHub(hs.orch, hs.limits, hs.log)}
		ref.hub.token = token
		hs.byToken[token] = ref
	}
	ref.refs++
	var once sync.Once
	return ref.hub, func() {
		once.Do(func() {
			hs.mu.Lock()
			defer hs.mu.Unlock()
			if ref.refs--; ref.refs == 0 {
				delete(hs.byToken, token)
			}
		})
	}
}

// listSub is one open list page. ch is closed when the page fell too far
// behind; the browser then reconnects and starts from a full snapshot.
type listSub struct {
	ch chan listUpdate
}

// listUpdate is what one poll changed: rows new or changed, and the ids of
// missions that vanished (their data expired or was deleted).
type listUpdate struct {
	rows []listRow
	gone []string
}

func newListHub(orch Orchestrator, limits Limits, log *slog.Logger) *listHub {
	return &listHub{orch: orch, limits: limits, log: log, subs: make(map[*listSub]struct{})}
}

// subscribe registers a page and returns the rows known so far (nil before
// the first poll, whose rows then all reach the page as changes).
func (h *listHub) subscribe() (*listSub, []listRow) {
	s := &listSub{ch: make(chan listUpdate, 8)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	if !h.running {
		h.running = true
		go h.loop()
	}
	return s, append([]listRow(nil), h.rows...)
}

func (h *listHub) unsubscribe(s *listSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// loop polls until no page is left.
func (h *listHub) loop() {
	t := time.NewTicker(h.limits.PollInterval)
	defer t.Stop()
	for {
		rows, err := h.poll()
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.running, h.rows, h.seen = false, nil, nil
			h.mu.Unlock()
			return
		}
		switch {
		case err == nil:
			h.publish(rows)
		case isAuthError(err):
			// The token expired or was revoked: end the feeds; their
			// reconnects meet the token check and get 401.
			for s := range h.subs {
				close(s.ch)
				delete(h.subs, s)
			}
		}
		h.mu.Unlock()
		<-t.C
	}
}

// poll reads the newest missions, bounded by CallTimeout.
func (h *listHub) poll() ([]listRow, error) {
	ctx, cancel := context.WithTimeout(withToken(context.Background(), h.token), h.limits.CallTimeout)
	defer cancel()
	resp, err := h.orch.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: uint32(h.limits.ListPageSize)})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if !h.failing {
			h.log.Warn("console: mission list poll failed; retrying", slog.String("error", err.Error()))
		}
		h.failing = true
		return nil, err
	}
	h.failing = false
	now := time.Now()
	rows := make([]listRow, 0, len(resp.GetMissions()))
	for _, m := range resp.GetMissions() {
		rows = append(rows, rowOf(m, now))
	}
	return rows, nil
}

// publish sends the rows that changed since the last poll to every page,
// and the ids of the missions that vanished: in the last poll, missing from
// this one although it covers their creation time (it is not full, or
// holds an older mission), so they did not merely fall off the page's
// window. Called with h.mu held.
func (h *listHub) publish(rows []listRow) {
	seen := make(map[string]string, len(rows))
	var changed []listRow
	for _, r := range rows {
		sig := fmt.Sprintf("%s|%s|%s|%d|%d", r.State, r.CurrentStep, r.Error, r.EndedMs, r.Agents)
		seen[r.ID] = sig
		if h.seen[r.ID] != sig {
			changed = append(changed, r)
		}
	}
	var gone []string
	covered := func(int64) bool { return true }
	if len(rows) >= h.limits.ListPageSize && len(rows) > 0 {
		oldest := rows[len(rows)-1].CreatedMs
		covered = func(created int64) bool { return created > oldest }
	}
	for _, r := range h.rows {
		if _, ok := seen[r.ID]; !ok && covered(r.CreatedMs) {
			gone = append(gone, r.ID)
		}
	}
	h.rows, h.seen = rows, seen
	if len(changed) == 0 && len(gone) == 0 {
		return
	}
	for s := range h.subs {
		select {
		case s.ch <- listUpdate{rows: changed, gone: gone}:
		default:
			close(s.ch)
			delete(h.subs, s)
		}
	}
}

// sse writes Server-Sent Events.
type sse struct {
	w http.ResponseWriter
	f *http.ResponseController
}

// startSSE sends the headers of an event stream. retry tells the browser
// how soon to reconnect after the stream ends.
func startSSE(w http.ResponseWriter, retry time.Duration) (*sse, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, f: http.NewResponseController(w)}
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", retry.Milliseconds()); err != nil {
		return nil, err
	}
	return s, s.f.Flush()
}

// send writes one event; data is encoded as JSON on one line.
func (s *sse) send(id, event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if id != "" {
		if _, err := fmt.Fprintf(s.w, "id: %s\n", id); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.f.Flush()
}

func (s *sse) ping() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.f.Flush()
}

// streamSlot reserves a live-feed slot for r's token or answers 503.
func (c *Console) streamSlot(w http.ResponseWriter, r *http.Request) (func(), bool) {
	release, ok := c.acquireStream(tokenOf(r))
	if !ok {
		w.Header().Set("Retry-After", "2")
		http.Error(w, "too many live feeds open; retry", http.StatusServiceUnavailable)
	}
	return release, ok
}

// serveListEvents feeds an open list page: a "rows" event with the rows
// known so far, then one with the rows that changed after each poll, and a
// "gone" event with the ids of missions whose data expired or was deleted.
func (c *Console) serveListEvents(w http.ResponseWriter, r *http.Request) {
	token := tokenOf(r)
	if c.deps.RequireToken {
		// Check the token before holding a feed open on it: the hub's
		// polls would only fail, quietly, until the feed's lifetime ends.
		ctx, cancel := c.call(r)
		_, err := c.deps.Orchestrator.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: 1})
		cancel()
		if err != nil {
			c.renderRPCError(w, r, "ListMissions", err)
			return
		}
	}
	release, ok := c.streamSlot(w, r)
	if !ok {
		return
	}
	defer release()
	hub, releaseHub := c.hubs.acquire(token)
	defer releaseHub()
	ctx, cancel := context.WithTimeout(r.Context(), c.limits.StreamLifetime)
	defer cancel()
	out, err := startSSE(w, time.Second)
	if err != nil {
		return
	}
	sub, rows := hub.subscribe()
	defer hub.unsubscribe(sub)
	if len(rows) > 0 {
		if err := out.send("", "rows", rows); err != nil {
			return
		}
	}
	beat := time.NewTicker(c.limits.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if err := out.ping(); err != nil {
				return
			}
		case up, ok := <-sub.ch:
			if !ok {
				return
			}
			if len(up.rows) > 0 {
				if err := out.send("", "rows", up.rows); err != nil {
					return
				}
			}
			if len(up.gone) > 0 {
				if err := out.send("", "gone", up.gone); err != nil {
					return
				}
			}
		}
	}
}

// serveMissionEvents feeds an open mission page with the mission's events
// after Last-Event-ID (a reconnect) or ?after= (the last event the page was
// rendered with), read from the mission's stream. It follows the stream past
// a terminal event too, as a completed mission may still be torn down, until
// the browser leaves or the feed's lifetime ends.
func (c *Console) serveMissionEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	if after == "" {
		after = "0"
	}
	if !isStreamID(after) {
		http.Error(w, "after: not a stream entry id such as 1700000000000-0", http.StatusBadRequest)
		return
	}
	{
		ctx, cancel := c.call(r)
		_, err := c.deps.Orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
		cancel()
		if err != nil {
			c.renderRPCError(w, r, "mission "+id, err)
			return
		}
	}
	release, ok := c.streamSlot(w, r)
	if !ok {
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), c.limits.StreamLifetime)
	defer cancel()
	out, err := startSSE(w, time.Second)
	if err != nil {
		return
	}
	stream := progress.MissionStream(id)
	lastWrite := time.Now()
	troubled := false // a problem was sent and not yet cleared
	for ctx.Err() == nil {
		events, err := progress.Read(ctx, c.deps.Redis, stream, after, eventBatch, eventBlock)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.WarnContext(ctx, "console: read mission events", slog.String("mission_id", id), slog.String("error", err.Error()))
			troubled = true
			if err := out.send("", "problem", "events unavailable; retrying"); err != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(eventBlock):
			}
			continue
		}
		if troubled {
			// The page shows the problem until told it is over (found by a
			// review: it showed it on after Redis came back).
			troubled = false
			if err := out.send("", "ok", "live"); err != nil {
				return
			}
		}
		for _, e := range events {
			if err := out.send(e.ID, "ev", viewOf(e)); err != nil {
				return
			}
			after, lastWrite = e.ID, time.Now()
		}
		if time.Since(lastWrite) > c.limits.Heartbeat {
			// An idle feed looks for its mission now and then: one deleted
			// (or expired) took its stream with it, and the page would
			// otherwise wait for events that never come (found by a
			// review: it learnt it only at its reconnect, by a 410).
			if gone, err := c.missionGone(r, id); err == nil && gone {
				_ = out.send("", "gone", "this mission's data expired or was deleted")
				return
			}
			if err := out.ping(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
	}
}

// missionGone reports whether mission id is gone (NOT_FOUND), asking the
// orchestrator with the request's credentials.
func (c *Console) missionGone(r *http.Request, id string) (bool, error) {
	ctx, cancel := c.call(r)
	defer cancel()
	_, err := c.deps.Orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
	if status.Code(err) == codes.NotFound {
		return true, nil
	}
	return false, err
}

// isAuthError reports a call refused for its token or role.
func isAuthError(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// isStreamID accepts Redis stream ids: "<ms>" or "<ms>-<seq>".
func isStreamID(id string) bool {
	ms, seq, hasSeq := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if hasSeq {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}
