// Package console is slammesh's mission console: server-rendered web pages,
// served by the orchestrator process on its HTTP port, that show which
// missions run now, each mission's steps as a timeline (attempts, retries
// with their codes, compensations, durations), its live event feed, its
// agents' poses and merged map, and a fleet view of rates, states and step
// latencies. Cancel and Resume buttons call the orchestrator's own RPCs.
//
// The console never drives a mission itself. It reads missions through the
// orchestrator's gRPC API (GetMission, ListMissions), so it sees them as any
// client does and its calls obey the same validation; it reads event streams
// from Redis with internal/progress on a client of its own (so a browser
// holding a live feed never takes a connection the saga writes need); and it
// bounds every call in time and the number of live feeds. Pages are rendered
// with html/template, which escapes every string (mission ids, messages,
// error reasons); live updates arrive as Server-Sent Events and are applied
// by a small embedded script through textContent, never as markup — except
// for fragments of the same html/template pages. No build step, no CDN.
//
// Routes (all under the HTTP port's root, beside /metrics and /healthz):
//
//	GET  /                          missions, newest first (?state=RUNNING filters)
//	GET  /missions/{id}             one mission (?part=live: its live section only)
//	GET  /missions/{id}/map.png     the merged map, each cell tinted by the agent that decided it, poses marked
//	POST /missions/{id}/cancel      CancelMission, then back to the mission page
//	POST /missions/{id}/resume      ResumeMission, then back to the mission page
//	GET  /fleet                     rates, states over the last hour, latency percentiles
//	GET  /events/missions           SSE: changed rows of the mission list
//	GET  /events/missions/{id}      SSE: the mission's events, from the start or Last-Event-ID
//	GET  /static/...                the stylesheet and script
//
// POSTs are refused across origins (http.CrossOriginProtection: Sec-Fetch-Site
// and Origin), so another site cannot make a browser cancel missions.
package console

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/auth"
	"github.com/slammesh/slammesh/internal/rpcerr"
)

// Orchestrator is the part of the orchestrator's gRPC API the console calls;
// an orchestratorv1.OrchestratorServiceClient satisfies it. Cancel and
// Resume go through the RPCs so the buttons follow the same rules.
type Orchestrator interface {
	GetMission(ctx context.Context, in *orchestratorv1.GetMissionRequest, opts ...grpc.CallOption) (*orchestratorv1.GetMissionResponse, error)
	ListMissions(ctx context.Context, in *orchestratorv1.ListMissionsRequest, opts ...grpc.CallOption) (*orchestratorv1.ListMissionsResponse, error)
	CancelMission(ctx context.Context, in *orchestratorv1.CancelMissionRequest, opts ...grpc.CallOption) (*orchestratorv1.CancelMissionResponse, error)
	ResumeMission(ctx context.Context, in *orchestratorv1.ResumeMissionRequest, opts ...grpc.CallOption) (*orchestratorv1.ResumeMissionResponse, error)
}

// Maps reads merged maps; a mappingv1.MappingServiceClient satisfies it.
type Maps interface {
	GetMap(ctx context.Context, in *mappingv1.GetMapRequest, opts ...grpc.CallOption) (*mappingv1.GetMapResponse, error)
}

// Deps are what the console reads from. Orchestrator and Redis are required.
type Deps struct {
	// Orchestrator serves the missions; usually a client of the console's own
	// orchestrator process.
	Orchestrator Orchestrator
	// Redis is read for the missions' event streams (XRANGE and bounded
	// XREAD only). Give the console its own client: a live feed holds a
	// connection for up to a second per read.
	Redis redis.UniversalClient
	// Maps serves merged maps; nil hides the map image.
	Maps Maps
	// Metrics is the orchestrator's /metrics handler, read in-process for the
	// fleet view's latency percentiles and totals; nil leaves them out.
	Metrics http.Handler
	// JaegerURL is the Jaeger UI's base URL (env JAEGER_UI_URL), e.g.
	// http://localhost:16686; a mission page links its trace there when set.
	JaegerURL string
	// Logger receives failures no page shows; default discards.
	Logger *slog.Logger
	// Limits bound the console's load; zero fields take the defaults.
	Limits Limits
	// RequireToken is set when the orchestrator authenticates its callers:
	// then every page and feed needs the user's bearer token (an
	// Authorization header or the login form's cookie), which the console
	// forwards on its calls, and a request without one gets 401 and the
	// login page. Unset (dev mode), pages are open and calls carry a token
	// only when the user sent one.
	RequireToken bool
	// LoopbackHosts, set when the console takes no tokens and listens on
	// loopback (the demo modes), serves only requests whose Host names a
	// loopback host (localhost, *.localhost, 127.0.0.0/8, ::1). A page on
	// any site can make a browser reach a loopback port under its own
	// name (DNS rebinding), and to the browser that page is then the
	// console's origin: the Host it sends is the one thing left that tells
	// it from a user's own tab.
	LoopbackHosts bool
	// ExtraHosts are Host names LoopbackHosts lets in besides loopback
	// ones (a forwarded port's name in a remote dev environment).
	ExtraHosts []string
	// MethodRoles is the orchestrator's least role per RPC (full method
	// name). With it, a mission page leaves out the buttons whose RPC the
	// user's role, which the orchestrator returns in auth.RoleHeader, may
	// not call, and says which role they need; nil, or no role returned
	// (authentication off), offers what the mission's state allows.
	MethodRoles map[string]auth.Role
}

// Limits bound what the console asks of the orchestrator and Redis.
type Limits struct {
	// CallTimeout bounds each gRPC call and Redis read of a page (default 5s).
	CallTimeout time.Duration
	// ListPageSize is how many of the newest missions the list shows and
	// watches (default 100).
	ListPageSize int
	// PollInterval is how often the list's live feed reads the mission
	// index while a browser watches it (default 500ms); one poll serves every
	// open list page.
	PollInterval time.Duration
	// MaxStreams bounds the live feeds (SSE connections) open at once
	// (default 64); past it a feed is refused with 503 and the browser
	// retries.
	MaxStreams int
	// MaxStreamsPerToken bounds the live feeds one token holds at once when
	// tokens are required (default a quarter of MaxStreams), so that one
	// user's tabs, or one script, cannot take every slot from the others.
	MaxStreamsPerToken int
	// StreamLifetime ends a live feed after this long (default 5m); the
	// browser reconnects where it left off, so a feed never pins resources
	// forever.
	StreamLifetime time.Duration
	// FleetMissions bounds how many missions the fleet view reads from the
	// index for the last hour (default 2000).
	FleetMissions int
	// Heartbeat is how long a live feed stays silent before it writes a
	// comment (default 15s), which keeps proxies from closing it and lets
	// it notice a browser that left; a mission's idle feed then also looks
	// whether its mission is still there, and says "gone" when not.
	Heartbeat time.Duration
}

func (l Limits) withDefaults() Limits {
	set := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	seti := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.CallTimeout, 5*time.Second)
	set(&l.PollInterval, 500*time.Millisecond)
	set(&l.StreamLifetime, 5*time.Minute)
	set(&l.Heartbeat, 15*time.Second)
	seti(&l.ListPageSize, 100)
	seti(&l.MaxStreams, 64)
	seti(&l.MaxStreamsPerToken, max(1, l.MaxStreams/4))
	seti(&l.FleetMissions, 2000)
	return l
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console is the console's http.Handler.
type Console struct {
	deps   Deps
	limits Limits
	log    *slog.Logger
	pages  map[string]*template.Template
	// anonPages are pages for a request without a token: no Log out.
	anonPages map[string]*template.Template
	mux       *http.ServeMux
	handler   http.Handler
	streams   chan struct{} // a slot per open live feed
	// byToken counts the live feeds each token holds (tokens required).
	mu      sync.Mutex
	byToken map[string]int
	hubs    *hubs
	now     func() time.Time
}

// New builds the console over deps. It returns an error when a required
// dependency is missing or a template does not parse.
func New(deps Deps) (*Console, error) {
	if deps.Orchestrator == nil || deps.Redis == nil {
		return nil, errors.New("console: Deps.Orchestrator and Deps.Redis are required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limits := deps.Limits.withDefaults()
	c := &Console{
		deps:    deps,
		limits:  limits,
		log:     log,
		mux:     http.NewServeMux(),
		streams: make(chan struct{}, limits.MaxStreams),
		byToken: make(map[string]int),
		now:     time.Now,
	}
	c.deps.JaegerURL = strings.TrimRight(deps.JaegerURL, "/")
	var err error
	if c.pages, err = parsePages(deps.RequireToken); err != nil {
		return nil, err
	}
	if c.anonPages, err = parsePages(false); err != nil {
		return nil, err
	}
	c.hubs = &hubs{orch: deps.Orchestrator, limits: limits, log: log, byToken: make(map[string]*hubRef)}

	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.mux.HandleFunc("GET /{$}", c.serveList)
	c.mux.HandleFunc("GET /missions/{id}", c.knownID(c.serveMission))
	c.mux.HandleFunc("GET /missions/{id}/map.png", c.knownID(c.serveMap))
	c.mux.HandleFunc("POST /missions/{id}/cancel", c.knownID(c.serveCancel))
	c.mux.HandleFunc("POST /missions/{id}/resume", c.knownID(c.serveResume))
	c.mux.HandleFunc("GET /fleet", c.serveFleet)
	c.mux.HandleFunc("GET /events/missions", c.serveListEvents)
	c.mux.HandleFunc("GET /events/missions/{id}", c.knownID(c.serveMissionEvents))
	c.mux.HandleFunc("GET /login", c.serveLoginForm)
	c.mux.HandleFunc("POST /login", c.serveLogin)
	c.mux.HandleFunc("POST /logout", c.serveLogout)
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", noListing(http.FileServerFS(static))))
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("no page at %s", r.URL.Path))
	})
	c.handler = http.NewCrossOriginProtection().Handler(securityHeaders(c.requireToken(c.mux)))
	if deps.LoopbackHosts {
		c.handler = loopbackHostsOnly(c.handler, deps.ExtraHosts)
	}
	return c, nil
}

// ServeHTTP serves the console's routes (see the package doc).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handler.ServeHTTP(w, r)
}

// feedKey is what the live feeds of a token are counted by: a JWT's signed
// part (header and claims), without its signature, whose base64url text
// has spellings that verify alike (the unused bits of its last character),
// so that one JWT cannot pass for many users; any other token as it is. A
// JWT is told by its header, a JSON object naming its "alg" (RFC 7515
// §4.1.1), not by its dots alone: static tokens "team.a.<hex1>" and
// "team.a.<hex2>" would share a key (found by a review).
func feedKey(token string) string {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || strings.Count(token, ".") != 2 {
		return token
	}
	raw, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	var header struct {
		Alg string `json:"alg"`
	}
	if err != nil || json.Unmarshal(raw, &header) != nil || header.Alg == "" {
		return token
	}
	return token[:i]
}

// knownID answers 404 for a mission id that is not UTF-8 text or holds a
// control or format character (a right-to-left override), which no
// mission has and which the orchestrator's
// client cannot even send when not UTF-8 (found by reviews: it answered
// 502 with the raw bytes echoed in the page, a NUL echoed as it was), and
// otherwise calls h.
func (c *Console) knownID(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
			c.renderError(w, r, http.StatusNotFound, "Not found", "no mission has that id: it is not printable UTF-8 text")
			return
		}
		h(w, r)
	}
}

// noListing answers 404 for a directory, so that the static files are
// served one by one and never listed.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHostsOnly answers 403 to a request whose Host is neither a
// loopback name nor one of extra (Deps.LoopbackHosts).
func loopbackHostsOnly(h http.Handler, extra []string) http.Handler {
	allowed := make(map[string]bool, len(extra))
	for _, e := range extra {
		allowed[hostName(e)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host := hostName(r.Host); !isLoopbackHost(host) && !allowed[host] {
			http.Error(w, fmt.Sprintf("this console answers only to localhost, not %q: a page of another site may be reaching it through your browser (DNS rebinding). If that is your own name for it, add it with slammesh --console-hosts", r.Host), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostName is the host of hostport (a Host header, or a name), lower
// case, without port, brackets or a final dot.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}

// isLoopbackHost reports whether host (a hostName) names this machine's
// loopback: localhost and its subdomains (RFC 6761 §6.3), or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// securityHeaders keeps the pages to their own scripts and out of frames.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// parsePages parses each page template together with the layout; logout
// shows the layout's Log out button, on every page but the login page,
// which is shown to whoever is not logged in (found by a review: it
// offered them a Log out).
func parsePages(logout bool) (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template)
	for _, name := range []string{"list", "mission", "fleet", "error", "login"} {
		show := logout && name != "login"
		authOn := template.FuncMap{"authOn": func() bool { return show }}
		t, err := template.New(name).Funcs(funcs).Funcs(authOn).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render executes page's template (or one of its blocks) into w. A template
// error after the first byte cannot change the status any more; it is
// logged.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page, block string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if block == "" {
		block = "layout"
	}
	pages := c.pages
	if tokenOf(r) == "" {
		pages = c.anonPages // no Log out for who has no token (a review: a 404 offered one)
	}
	if err := pages[page].ExecuteTemplate(w, block, data); err != nil {
		c.log.ErrorContext(r.Context(), "console: render", slog.String("page", page), slog.String("error", err.Error()))
	}
}

// errorPage is the data of the error page.
type errorPage struct {
	Nav     string
	Title   string
	Message string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, code int, title, msg string) {
	if plainPath(r) {
		http.Error(w, title+": "+msg, code)
		return
	}
	c.render(w, r, code, "error", "", errorPage{Title: title, Message: msg})
}

// plainPath reports whether r is for a live feed or a map image, whose
// clients (an EventSource, an img) show no page: their errors are plain
// text.
func plainPath(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/events/") || strings.HasSuffix(r.URL.Path, "/map.png")
}

// renderRPCError answers a failed call with the HTTP status closest to its
// gRPC code: an unknown or malformed mission id is 404, as a page that
// cannot exist; a mission whose data expired or was deleted
// (MISSION_EXPIRED) is 410 with the orchestrator's reason.
func (c *Console) renderRPCError(w http.ResponseWriter, r *http.Request, what string, err error) {
	st := status.Convert(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.NotFound, codes.InvalidArgument:
		code = http.StatusNotFound
		if rpcerr.Reason(err) == rpcerr.ReasonMissionExpired {
			// The mission existed: its data expired after its retention
			// or was deleted. Say so, rather than "no such mission".
			code = http.StatusGone
		}
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		code = http.StatusConflict
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		code = http.StatusGatewayTimeout
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.DataLoss:
		// The orchestrator answered: the mission's record is damaged
		// (RECORD_DAMAGED), which its message explains.
		code = http.StatusInternalServerError
	case codes.Unauthenticated:
		c.renderLogin(w, r, "Token refused: "+st.Message())
		return
	}
	if code == http.StatusBadGateway {
		c.log.WarnContext(r.Context(), "console: orchestrator call failed", slog.String("call", what), slog.String("error", err.Error()))
	}
	c.renderError(w, r, code, http.StatusText(code), fmt.Sprintf("%s: %s: %s", what, st.Code(), st.Message()))
}

// call bounds one call of a page in time and carries the user's token.
func (c *Console) call(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(withToken(r.Context(), tokenOf(r)), c.limits.CallTimeout)
}

// acquireStream reserves a live-feed slot for token, or reports that all
// are taken, or (tokens required) that token holds its share.
func (c *Console) acquireStream(token string) (release func(), ok bool) {
	token = feedKey(token)
	perToken := c.deps.RequireToken
	if perToken {
		c.mu.Lock()
		if c.byToken[token] >= c.limits.MaxStreamsPerToken {
			c.mu.Unlock()
			return nil, false
		}
		c.byToken[token]++
		c.mu.Unlock()
	}
	untoken := func() {
		if !perToken {
			return
		}
		c.mu.Lock()
		if c.byToken[token]--; c.byToken[token] == 0 {
			delete(c.byToken, token)
		}
		c.mu.Unlock()
	}
	select {
	case c.streams <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-c.streams; untoken() }) }, true
	default:
		untoken()
		return nil, false
	}
}
