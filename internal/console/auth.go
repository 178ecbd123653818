package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// TokenCookie is the cookie the login form sets: it holds the user's bearer
// token, HttpOnly (no script reads it), SameSite=Strict (no other site's
// page sends it) and Secure when the console is reached over HTTPS.
const TokenCookie = "slammesh_token"

// tokenCookieLifetime is how long a browser keeps the token cookie; the
// token's own expiry (a JWT's exp) still applies at the orchestrator.
const tokenCookieLifetime = 12 * time.Hour

// maxTokenBytes bounds a token the console accepts from a form, a header
// or a cookie before it forwards it (a JWT with a few claims is well under).
const maxTokenBytes = 8 << 10

// tokenOf returns the bearer token of r: a Bearer Authorization header
// (RFC 6750 §2.1) first, else the login cookie; "" when there is none. An
// Authorization header of another scheme is not ours: a reverse proxy in
// front of the console may use Basic auth (RFC 7617) with its users, whose
// browsers then send it with every request, cookie included.
func tokenOf(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			return validToken(tok)
		}
	}
	if ck, err := r.Cookie(TokenCookie); err == nil {
		return validToken(ck.Value)
	}
	return ""
}

// validToken trims tok and refuses what cannot be a bearer token (RFC 6750
// b64token: no spaces or control characters) or is oversized, so a token is
// never forwarded as malformed gRPC metadata.
func validToken(tok string) string {
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > maxTokenBytes {
		return ""
	}
	for _, ch := range tok {
		if ch <= ' ' || ch >= 0x7f {
			return ""
		}
	}
	return tok
}

// withToken returns ctx carrying token as the outgoing "authorization"
// metadata of the console's gRPC calls, so the orchestrator checks the
// user's role exactly as for any client.
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// loginPage is the data of the login page.
type loginPage struct {
	Nav     string
	Message string
	// Next is the console path to return to after logging in.
	Next string
}

// requireToken answers 401 with the login page (or, for live feeds, a
// plain 401 an EventSource gives up on) when authentication is on and r
// carries no token. The login page and the static files stay open: they
// hold no data.
func (c *Console) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A path the console has no page for is a 404 to everyone, as it
		// would be without the console: the port's other paths (pprof
		// when disabled) must not turn into a login prompt.
		_, pattern := c.mux.Handler(r)
		if !c.deps.RequireToken || tokenOf(r) != "" || r.URL.Path == "/login" || r.URL.Path == "/logout" ||
			strings.HasPrefix(r.URL.Path, "/static/") || pattern == "/" {
			h.ServeHTTP(w, r)
			return
		}
		c.renderLogin(w, r, "This console needs a token: log in, or send an Authorization: Bearer header.")
	})
}

// renderLogin answers 401 with the login page, or plain text for a live
// feed or a map image, whose clients do not show pages.
func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="slammesh"`)
	if plainPath(r) {
		http.Error(w, msg, http.StatusUnauthorized)
		return
	}
	next := "/"
	if r.Method == http.MethodGet && r.URL.Path != "/login" {
		next = r.URL.RequestURI()
	}
	c.render(w, r, http.StatusUnauthorized, "login", "", loginPage{Message: msg, Next: next})
}

func (c *Console) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", "", loginPage{Next: safeNext(r.URL.Query().Get("next"))})
}

// serveLogin checks the submitted token with a ListMissions call (any
// role may list) and sets it as the token cookie.
func (c *Console) serveLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxTokenBytes)
	token := validToken(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	if token == "" {
		c.render(w, r, http.StatusUnauthorized, "login", "", loginPage{Message: "Enter a token.", Next: next})
		return
	}
	ctx, cancel := context.WithTimeout(withToken(r.Context(), token), c.limits.CallTimeout)
	defer cancel()
	if _, err := c.deps.Orchestrator.ListMissions(ctx, &orchestratorv1.ListMissionsRequest{PageSize: 1}); err != nil {
		st := status.Convert(err)
		if st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied {
			c.render(w, r, http.StatusUnauthorized, "login", "", loginPage{Message: "Token refused: " + st.Message(), Next: next})
			return
		}
		c.renderRPCError(w, r, "log in", err)
		return
	}
	http.SetCookie(w, c.tokenCookie(r, token, tokenCookieLifetime))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// serveLogout clears the token cookie.
func (c *Console) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, c.tokenCookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// tokenCookie is the login cookie holding token; a negative maxAge
// deletes it. It is Secure when r came over TLS, directly or through a
// proxy that says so (X-Forwarded-Proto: setting Secure more often only
// keeps the cookie off plaintext).
func (c *Console) tokenCookie(r *http.Request, token string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{
		Name:     TokenCookie,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
		MaxAge:   int(maxAge.Seconds()),
	}
	if maxAge < 0 {
		ck.MaxAge = -1
	}
	return ck
}

// safeNext keeps a post-login redirect on this console: a path, never
// another host ("//evil.example", "/\evil.example", or "/\t/evil.example",
// which browsers read as "//evil.example" as they drop tabs and newlines).
func safeNext(next string) string {
	bad := func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsFunc(next, bad) {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}
