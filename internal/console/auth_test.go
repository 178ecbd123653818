package console_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/console"
	"github.com/slammesh/slammesh/internal/redistest"
)

// tokenOrch is fakeOrch behind a token check: only "Bearer good" (and
// the tokens also accepts, when set) passes, until revoked.
type tokenOrch struct {
	*fakeOrch
	also    func(token string) bool
	revoked atomic.Bool
}

func (o *tokenOrch) check(ctx context.Context) error {
	md, _ := metadata.FromOutgoingContext(ctx)
	v := md.Get("authorization")
	if len(v) != 1 || (v[0] != "Bearer good" && (o.also == nil || !o.also(strings.TrimPrefix(v[0], "Bearer ")))) || o.revoked.Load() {
		return status.Error(codes.Unauthenticated, "invalid token")
	}
	return nil
}

func (o *tokenOrch) ListMissions(ctx context.Context, in *orchestratorv1.ListMissionsRequest, opts ...grpc.CallOption) (*orchestratorv1.ListMissionsResponse, error) {
	if err := o.check(ctx); err != nil {
		return nil, err
	}
	return o.fakeOrch.ListMissions(ctx, in, opts...)
}

// tokenConsole serves a console that requires tokens, over o and a real
// Redis.
func tokenConsole(t *testing.T, o *tokenOrch, limits console.Limits) *httptest.Server {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	c, err := console.New(console.Deps{Orchestrator: o, Redis: rdb, RequireToken: true, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

// TestListFeedEndsWhenTheTokenIsRevoked: the list's live feed polls with
// the user's token; once the orchestrator refuses it, the feed ends, and
// the browser's reconnect gets 401.
func TestListFeedEndsWhenTheTokenIsRevoked(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	o := &tokenOrch{fakeOrch: &fakeOrch{}}
	o.add(mission("m-1", orchestratorv1.MissionState_MISSION_STATE_RUNNING))
	c, err := console.New(console.Deps{Orchestrator: o, Redis: rdb, RequireToken: true, Limits: console.Limits{PollInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(token string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events/missions", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(&http.Cookie{Name: console.TokenCookie, Value: token})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := open("bad"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("feed with a refused token = %d, want 401", resp.StatusCode)
	}
	resp := open("good")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with a good token = %d", resp.StatusCode)
	}
	feed := &sseReader{sc: bufio.NewScanner(resp.Body)}
	if ev, data, err := feed.next(); err != nil || ev != "rows" || !strings.Contains(data, `"m-1"`) {
		t.Fatalf("first event %q %s, %v", ev, data, err)
	}
	o.revoked.Store(true)
	for {
		_, _, err := feed.next()
		if errors.Is(err, io.EOF) {
			break // the feed ended
		}
		if err != nil {
			t.Fatalf("feed after revocation: %v, want its end", err)
		}
	}
	if resp := open("good"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnect with the revoked token = %d, want 401", resp.StatusCode)
	}
}

// TestLogout: with tokens on, pages carry a Log out button, but not the
// pages shown to whoever has no token (the login page, a 404); POST
// /logout deletes the token cookie.
func TestLogout(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	o := &tokenOrch{fakeOrch: &fakeOrch{}}
	c, err := console.New(console.Deps{Orchestrator: o, Redis: rdb, RequireToken: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer good")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/logout"`) {
		t.Fatalf("GET / = %d, %v; want the list with a Log out button:\n%s", resp.StatusCode, err, body)
	}
	for path, login := range map[string]bool{"/": true, "/login": true, "/no-such-page": false} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || strings.Contains(string(body), `action="/login"`) != login || strings.Contains(string(body), `action="/logout"`) {
			t.Errorf("GET %s without a token = %d, %v; want a page without Log out (the login form: %v):\n%s", path, resp.StatusCode, err, login, body)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = client.PostForm(srv.URL+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cleared bool
	for _, ck := range resp.Cookies() {
		cleared = cleared || (ck.Name == console.TokenCookie && ck.MaxAge < 0)
	}
	if resp.StatusCode != http.StatusSeeOther || !cleared {
		t.Fatalf("POST /logout = %d, cookies %v; want a redirect deleting the token cookie", resp.StatusCode, resp.Cookies())
	}
}

// TestLoginCookieBehindABasicAuthProxy: a reverse proxy that asks its
// users for HTTP Basic credentials makes their browsers send an
// Authorization header of that scheme with every request; the console's
// login cookie still counts, and a Bearer header still wins over it.
func TestLoginCookieBehindABasicAuthProxy(t *testing.T) {
	srv := tokenConsole(t, &tokenOrch{fakeOrch: &fakeOrch{}}, console.Limits{})
	for _, tc := range []struct {
		name, authorization, cookie string
		want                        int
	}{
		{"basic header and the cookie", "Basic Zm9vOmJhcg==", "good", http.StatusOK},
		{"basic header alone", "Basic Zm9vOmJhcg==", "", http.StatusUnauthorized},
		{"a bearer header wins over the cookie", "Bearer bad", "good", http.StatusUnauthorized},
		{"the cookie alone", "", "good", http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.authorization != "" {
			req.Header.Set("Authorization", tc.authorization)
		}
		if tc.cookie != "" {
			req.AddCookie(&http.Cookie{Name: console.TokenCookie, Value: tc.cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: GET / = %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

// TestUnknownPathIsNotFoundWithTokensOn: with tokens on, a path the console
// has no page for answers 404 without a token, as the HTTP port would
// without the console (e.g. /debug/pprof/ when pprof is off), while its
// pages still ask for a token.
func TestUnknownPathIsNotFoundWithTokensOn(t *testing.T) {
	srv := tokenConsole(t, &tokenOrch{fakeOrch: &fakeOrch{}}, console.Limits{})
	for path, want := range map[string]int{"/debug/pprof/": http.StatusNotFound, "/nope": http.StatusNotFound, "/": http.StatusUnauthorized, "/fleet": http.StatusUnauthorized} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestOneTokenHoldsItsShareOfTheLiveFeeds: with tokens required, one
// token's feeds stop at MaxStreamsPerToken while another user's still
// open, and a closed feed gives its slot back.
func TestOneTokenHoldsItsShareOfTheLiveFeeds(t *testing.T) {
	// A JWT's header names its alg (RFC 7515 §4.1.1); its claims and
	// signature are opaque here, where the orchestrator verifies it.
	jwtSigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + ".p"
	others := func(token string) bool { return token == "other" || strings.HasPrefix(token, jwtSigned+".sig") }
	srv := tokenConsole(t, &tokenOrch{fakeOrch: &fakeOrch{}, also: others},
		console.Limits{MaxStreams: 8, MaxStreamsPerToken: 2, PollInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(token string) *http.Response {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events/missions", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	first := open("good")
	if second := open("good"); first.StatusCode != http.StatusOK || second.StatusCode != http.StatusOK {
		t.Fatalf("a token's first two feeds: %d, %d; want 200", first.StatusCode, second.StatusCode)
	}
	if third := open("good"); third.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a token's third feed: %d, want 503", third.StatusCode)
	}
	if other := open("other"); other.StatusCode != http.StatusOK {
		t.Errorf("another token's feed beside them: %d, want 200", other.StatusCode)
	}
	// A JWT counts by its signed part: other spellings of its signature
	// (which verify alike) are the same token.
	for i, jwt := range []string{jwtSigned + ".sigA", jwtSigned + ".sigB", jwtSigned + ".sigC"} {
		want := http.StatusOK
		if i == 2 {
			want = http.StatusServiceUnavailable
		}
		if got := open(jwt); got.StatusCode != want {
			t.Errorf("feed %d of one JWT spelled %q: %d, want %d", i+1, jwt, got.StatusCode, want)
		}
	}
	first.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		again := open("good")
		again.Body.Close()
		if again.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed feed never gave its slot back: %d", again.StatusCode)
		}
	}
}
