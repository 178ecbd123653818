package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/auth/authtest"
	"github.com/slammesh/slammesh/internal/console"
	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
	"github.com/slammesh/slammesh/internal/redistest"
)

// freeAddrs returns n distinct loopback addresses whose ports were free a
// moment ago (all held at once, so no two are the same port).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// runServiceT runs `slammesh <args>` in this process until the test ends.
func runServiceT(t *testing.T, args ...string) {
	t.Helper()
	runServiceLogT(t, io.Discard, args...)
}

// runServiceLogT is runServiceT with the service's log written to logw.
func runServiceLogT(t *testing.T, logw io.Writer, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, io.Discard, logw) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("slammesh %s: %v", args[0], err)
			}
		case <-time.After(time.Minute):
			t.Errorf("slammesh %s did not stop within a minute", args[0])
		}
	})
}

// TestConsoleWithTLSAndTokens runs the four services as production starts
// them (mutual TLS between them, the orchestrator with a token file) on a
// real Redis, and checks that the console served on the orchestrator's HTTP
// port reaches its own TLS gRPC port (whose certificate names
// orchestrator.internal, not 127.0.0.1) and applies the user's role: no
// token → 401 and the login page, viewer → the list, viewer Cancel → 403
// naming the role, operator Cancel → done, operator Resume → 403 naming
// admin; the login form sets an HttpOnly, SameSite=Strict cookie.
func TestConsoleWithTLSAndTokens(t *testing.T) {
	const viewerTok, operatorTok = "tok-viewer-0123456789abcdefghij", "tok-operator-0123456789abcdefghij"
	rs := redistest.Start(t)
	dir := t.TempDir()
	ca, err := meshtlstest.NewCA(dir, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	orchCert, err := ca.Issue("orchestrator.internal", meshtlstest.Server|meshtlstest.Client)
	if err != nil {
		t.Fatal(err)
	}
	stepCert, err := ca.Issue("steps", meshtlstest.Server|meshtlstest.Client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := authtest.WriteTokenFile(tokens, map[string]string{"viewer": viewerTok, "operator": operatorTok, "admin": "tok-admin-0123456789abcdefghij"}); err != nil {
		t.Fatal(err)
	}
	tlsArgs := func(c meshtlstest.Cert) []string {
		return []string{"--tls-cert", c.CertFile, "--tls-key", c.KeyFile, "--tls-ca", ca.CertFile, "--redis-url", rs.URL}
	}
	addrs := freeAddrs(t, 8)
	steps := map[string]string{}
	for i, svc := range []string{"mapping", "localization", "merge"} {
		steps[svc] = addrs[2*i]
		runServiceT(t, append([]string{svc, "--grpc-addr", steps[svc], "--http-addr", addrs[2*i+1]}, tlsArgs(stepCert)...)...)
	}
	orchGRPC, orchHTTP := addrs[6], addrs[7]
	var orchLog devOutput
	runServiceLogT(t, &orchLog, append([]string{"orchestrator", "--grpc-addr", orchGRPC, "--http-addr", orchHTTP,
		"--auth-tokens", tokens, "--mapping-addr", steps["mapping"], "--localization-addr", steps["localization"],
		"--merge-addr", steps["merge"]}, tlsArgs(orchCert)...)...)
	base := "http://" + orchHTTP

	waitHealthy(t, base+"/healthz")

	// A completed mission, started by an operator over TLS.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(orchGRPC, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "orchestrator.internal"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	orch := orchestratorv1.NewOrchestratorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+operatorTok)
	resp, err := orch.StartMission(opCtx, &orchestratorv1.StartMissionRequest{MissionId: "m-auth", Wait: true, Scenario: &typesv1.Scenario{Seed: 7, Agents: 2}})
	if err != nil {
		t.Fatalf("StartMission: %v", err)
	}
	if s := resp.GetMission().GetState(); s != orchestratorv1.MissionState_MISSION_STATE_COMPLETED {
		t.Fatalf("m-auth ended %s", s)
	}

	client := &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, token string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if strings.HasPrefix(token, "cookie:") {
			req.AddCookie(&http.Cookie{Name: console.TokenCookie, Value: strings.TrimPrefix(token, "cookie:")})
		} else if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(b)
	}
	expect := func(method, path, token string, form url.Values, code int, has ...string) *http.Response {
		t.Helper()
		res, body := do(method, path, token, form)
		if res.StatusCode != code {
			t.Errorf("%s %s (token %q): %d, want %d\n%s", method, path, token, res.StatusCode, code, body)
		}
		for _, h := range has {
			if !strings.Contains(body, h) {
				t.Errorf("%s %s (token %q): no %q in\n%s", method, path, token, h, body)
			}
		}
		if code == http.StatusUnauthorized && (strings.Contains(body, "COMPLETED") || strings.Contains(body, `data-id=`)) {
			t.Errorf("%s %s without a valid token shows mission data:\n%s", method, path, body)
		}
		return res
	}

	for _, p := range []string{"/", "/missions/m-auth", "/fleet", "/missions/m-auth/map.png", "/events/missions", "/events/missions/m-auth"} {
		expect("GET", p, "", nil, http.StatusUnauthorized)
		expect("GET", p, "not-a-token", nil, http.StatusUnauthorized)
	}
	expect("GET", "/", "", nil, http.StatusUnauthorized, `action="/login"`)
	expect("GET", "/static/console.css", "", nil, http.StatusOK)
	expect("GET", "/", viewerTok, nil, http.StatusOK, `data-id="m-auth"`)
	expect("GET", "/missions/m-auth", "cookie:"+viewerTok, nil, http.StatusOK, "m-auth")
	// The page offers a viewer no Tear down, and says why; an operator
	// gets the button (found by a review: it was offered, and answered
	// 403).
	if _, body := do("GET", "/missions/m-auth", viewerTok, nil); strings.Contains(body, `id="cancel"`) ||
		!strings.Contains(body, "Tearing down needs role operator; you are viewer.") {
		t.Errorf("a viewer's mission page:\n%s", body)
	}
	if _, body := do("GET", "/missions/m-auth", operatorTok, nil); !strings.Contains(body, `id="cancel"`) || strings.Contains(body, "needs role") {
		t.Errorf("an operator's mission page:\n%s", body)
	}
	expect("GET", "/missions/m-auth/map.png", viewerTok, nil, http.StatusOK)
	expect("POST", "/missions/m-auth/cancel", viewerTok, nil, http.StatusForbidden, "needs role operator")
	expect("POST", "/missions/m-auth/resume", operatorTok, nil, http.StatusForbidden, "needs role admin")

	// The login form: a bad token is refused, a good one becomes the cookie.
	expect("POST", "/login", "", url.Values{"token": {"nope"}, "next": {"/fleet"}}, http.StatusUnauthorized, "Token refused")
	res := expect("POST", "/login", "", url.Values{"token": {viewerTok}, "next": {"//evil.example/"}}, http.StatusSeeOther)
	if loc := res.Header.Get("Location"); loc != "/" {
		t.Errorf("login redirects to %q, want / (never another host)", loc)
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == console.TokenCookie {
			ck = c
		}
	}
	if ck == nil || ck.Value != viewerTok || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure {
		t.Errorf("login cookie %+v: want the token, HttpOnly, SameSite=Strict, not Secure over plain HTTP", ck)
	}

	// The operator cancels (tears down) the completed mission from the console.
	res = expect("POST", "/missions/m-auth/cancel", "cookie:"+operatorTok, nil, http.StatusSeeOther)
	if loc := res.Header.Get("Location"); loc != "/missions/m-auth" {
		t.Errorf("cancel redirects to %q", loc)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		g, err := orch.GetMission(opCtx, &orchestratorv1.GetMissionRequest{MissionId: "m-auth"})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetMission().GetState() == orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("m-auth still %s a minute after the console's cancel", g.GetMission().GetState())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The gRPC access lines name the caller, a refused one too.
	want := map[string]string{"StartMission/OK": "token:operator:", "CancelMission/PermissionDenied": "token:viewer:", "CancelMission/OK": "token:operator:"}
	for _, line := range strings.Split(orchLog.String(), "\n") {
		var l struct {
			Msg       string `json:"msg"`
			Method    string `json:"grpc.method"`
			Code      string `json:"grpc.code"`
			Principal string `json:"principal"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "finished call" {
			continue
		}
		if prefix, ok := want[l.Method+"/"+l.Code]; ok && strings.HasPrefix(l.Principal, prefix) {
			delete(want, l.Method+"/"+l.Code)
		}
	}
	for call, prefix := range want {
		t.Errorf("no %s access line naming principal %s…", call, prefix)
	}
}

// waitHealthy waits up to two minutes for url to answer 200.
func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get(url)
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 2m (last error %v)", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWarnExposureNamesThePlainConsole: an orchestrator with tokens whose
// HTTP port (the console) is off loopback says that tokens typed there
// cross the network in the clear; on loopback it does not.
func TestWarnExposureNamesThePlainConsole(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{":9091": true, "127.0.0.1:9091": false} {
		cfg, err := parseServiceConfig("orchestrator", []string{"--auth-tokens", "t", "--http-addr", addr}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		warnExposure(&b, cfg)
		if got := strings.Contains(b.String(), "PLAIN HTTP"); got != want {
			t.Errorf("--http-addr %s: warned %v, want %v:\n%s", addr, got, want, b.String())
		}
	}
}
