package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/slammesh/slammesh/internal/auth"
	"github.com/slammesh/slammesh/internal/auth/authtest"
)

func TestParseRole(t *testing.T) {
	for s, want := range map[string]auth.Role{"viewer": auth.RoleViewer, "Operator": auth.RoleOperator, "ADMIN": auth.RoleAdmin} {
		if got, err := auth.ParseRole(s); err != nil || got != want {
			t.Errorf("ParseRole(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "none", "root"} {
		if _, err := auth.ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# comment\n\nviewer  view-0123456789abcdefghijkl\nadmin adm-0123456789abcdefghijklm # trailing\n")
	var reloadErr error
	tf, err := auth.NewTokenFile(path, func(err error) { reloadErr = err })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm")
	if err != nil || p.Role != auth.RoleAdmin {
		t.Fatalf("admin token: %v %v", p, err)
	}
	for _, bad := range []string{"", "adm-0123456789abcdefghijkl", "adm-0123456789abcdefghijklmn", "view"} {
		if _, err := tf.Verify(ctx, bad); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(%q) = %v, want ErrInvalidToken", bad, err)
		}
	}

	// reread lets a change be seen: the file is looked at once a second at
	// most, and a change applied when a second read, 100 ms on, agrees.
	reread := func() {
		time.Sleep(1100 * time.Millisecond)
		_, _ = tf.Verify(ctx, "probe")
		time.Sleep(150 * time.Millisecond)
		_, _ = tf.Verify(ctx, "probe")
	}

	// Revoking a token is editing the file.
	write("viewer view-0123456789abcdefghijkl\n")
	reread()
	if _, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err == nil {
		t.Error("a token removed from the file still works")
	}
	// A reload puts exactly the valid lines in force: a broken line
	// grants nothing and is reported, the others stay (found by a review:
	// one broken line kept every revoked token).
	write("superuser view-0123456789abcdefghijkl\nadmin adm-0123456789abcdefghijklm\n")
	reread()
	if _, err := tf.Verify(ctx, "view-0123456789abcdefghijkl"); err == nil {
		t.Error("a token on a broken line still works")
	}
	if p, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err != nil || p.Role != auth.RoleAdmin {
		t.Errorf("a valid line beside a broken one: %v %v", p, err)
	}
	if reloadErr == nil || !strings.Contains(reloadErr.Error(), "unknown role") || !strings.Contains(reloadErr.Error(), "grants nothing") {
		t.Errorf("broken line reported as %v", reloadErr)
	}
	// Commenting every line out, emptying the file or deleting it revokes
	// every token.
	for _, revoke := range []func(){
		func() { write("# admin adm-0123456789abcdefghijklm\n") },
		func() { write("") },
		func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		},
	} {
		write("admin adm-0123456789abcdefghijklm\n")
		reread()
		if _, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err != nil {
			t.Fatalf("token not back in force: %v", err)
		}
		revoke()
		reread()
		if _, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err == nil {
			t.Error("a revoked file's token still works")
		}
		if reloadErr == nil || !strings.Contains(reloadErr.Error(), "refused") && !strings.Contains(reloadErr.Error(), "revoked") {
			t.Errorf("revocation of every token reported as %v", reloadErr)
		}
	}
	// A file rewritten in place is read half-written now and then
	// (truncated, not yet written): that read is not put in force unless
	// a read 100 ms on finds the same (found by a review: in-place rewrites
	// refused tokens they kept).
	write("admin adm-0123456789abcdefghijklm\n")
	reread()
	reloadErr = nil
	write("")
	time.Sleep(1100 * time.Millisecond)
	if _, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err != nil {
		t.Errorf("refused at the first read of a half-written file: %v", err)
	}
	write("admin adm-0123456789abcdefghijklm\nviewer view-0123456789abcdefghijkl\n")
	time.Sleep(150 * time.Millisecond)
	if _, err := tf.Verify(ctx, "adm-0123456789abcdefghijklm"); err != nil {
		t.Errorf("refused once the file was whole: %v", err)
	}
	if reloadErr != nil {
		t.Errorf("the half-written file was reported: %v", reloadErr)
	}
	// '#' inside a token is refused: releases before this one read the rest
	// as a comment, so it would now be another token (found by a review);
	// after a space it starts a comment.
	write("admin Xy7Kp2Qw9Lm4Rt6Vb8Nc3Zs5#Gh1Jd0Fe\nviewer view-0123456789abcdefghijkl # the ops team\n")
	reread()
	for _, tok := range []string{"Xy7Kp2Qw9Lm4Rt6Vb8Nc3Zs5#Gh1Jd0Fe", "Xy7Kp2Qw9Lm4Rt6Vb8Nc3Zs5"} {
		if _, err := tf.Verify(ctx, tok); err == nil {
			t.Errorf("token %q of a line with '#' inside its token works", tok)
		}
	}
	if p, err := tf.Verify(ctx, "view-0123456789abcdefghijkl"); err != nil || p.Role != auth.RoleViewer {
		t.Errorf("a token with a comment after a space: %v %v", p, err)
	}
	if reloadErr == nil || !strings.Contains(reloadErr.Error(), "'#' inside the token") {
		t.Errorf("a token with '#' reported as %v", reloadErr)
	}

	// Written on Windows: a byte order mark and CRLF line ends.
	write("\ufeffadmin adm-0123456789abcdefghijklm\r\nviewer view-0123456789abcdefghijkl\r\n")
	crlf, err := auth.NewTokenFile(path, nil)
	if err != nil {
		t.Fatalf("BOM and CRLF: %v", err)
	}
	for tok, want := range map[string]auth.Role{"adm-0123456789abcdefghijklm": auth.RoleAdmin, "view-0123456789abcdefghijkl": auth.RoleViewer} {
		if p, err := crlf.Verify(ctx, tok); err != nil || p.Role != want {
			t.Errorf("BOM and CRLF: %v %v, want %v", p, err, want)
		}
	}

	for name, content := range map[string]string{
		"unknown role": "root abcdefghijklmnopqrstuvwxyz\n",
		"short token":  "admin short\n",
		"duplicate":    "admin abcdefghijklmnopqrstuvwxyz\nviewer abcdefghijklmnopqrstuvwxyz\n",
		"three fields": "admin abcdefghijklmnopqrstuvwxyz extra\n",
		"empty":        "# nothing\n",
		"'#' in token": "admin abcdefghijklmnopqrstuvwxyz#old-comment\n",
	} {
		write(content)
		if _, err := auth.NewTokenFile(path, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJWKS(t *testing.T) {
	dir := t.TempDir()
	iss, err := authtest.NewIssuer(dir, "k1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	j, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: iss.JWKSFile, Audience: "mesh", Issuer: ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []authtest.Alg{authtest.RS256, authtest.ES256} {
		tok, err := iss.Valid(alg, "operator", "mesh")
		if err != nil {
			t.Fatal(err)
		}
		if p, err := j.Verify(ctx, tok); err != nil || p.Role != auth.RoleOperator || p.Subject != "test-operator" {
			t.Errorf("%s: %v %v", alg, p, err)
		}
	}

	// An HS256 token "signed" with the public key is the classic
	// algorithm-confusion attack: only RS256 and ES256 are accepted.
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"aud": "mesh", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()})
	hs.Header["kid"] = "k1-rsa"
	hsTok, err := hs.SignedString([]byte("whatever"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Verify(ctx, hsTok); err == nil {
		t.Error("an HS256 token was accepted")
	}
	noExp := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"aud": "mesh", "role": "admin"})
	noneTok, err := noExp.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Verify(ctx, noneTok); err == nil {
		t.Error("an unsigned token was accepted")
	}
	// An exp past any date is refused for what it is, not as expired
	// (found by a review); a real expired token still says expired.
	for exp, want := range map[float64]string{1e20: "no date: after the year 9999", float64(time.Now().Add(-time.Hour).Unix()): "expired"} {
		tok, err := iss.Sign(authtest.RS256, jwt.MapClaims{"sub": "x", "aud": "mesh", "role": "admin", "exp": exp})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("exp %g: %v, want %q", exp, err, want)
		}
	}

	// Key rotation: a new key set in the file is picked up; tokens of the
	// retired keys stop working.
	old, err := iss.Valid(authtest.RS256, "viewer", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	next, err := authtest.NewIssuer(dir, "k1") // same file name, new keys
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(next.JWKSFile, now, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	tok, err := next.Valid(authtest.ES256, "admin", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := j.Verify(ctx, tok); err != nil || p.Role != auth.RoleAdmin {
		t.Errorf("token of the rotated key: %v %v", p, err)
	}
	if _, err := j.Verify(ctx, old); err == nil {
		t.Error("a token of the retired key still works")
	}

	if _, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: iss.JWKSFile}); err == nil {
		t.Error("a JWKS without an audience was accepted")
	}
	bad := filepath.Join(dir, "bad.json")
	for name, content := range map[string]string{
		"no keys":      `{"keys":[]}`,
		"short RSA":    `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`,
		"EC off curve": `{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AQ","y":"AQ"}]}`,
		"other curve":  `{"keys":[{"kty":"EC","kid":"a","crv":"P-384","x":"AQ","y":"AQ"}]}`,
		"not JSON":     `keys`,
	} {
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: bad, Audience: "mesh"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJWKSFromURL(t *testing.T) {
	iss, err := authtest.NewIssuer(t.TempDir(), "url")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, iss.JWKSFile)
	}))
	defer srv.Close()
	ctx := context.Background()
	j, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: srv.URL, Audience: "mesh"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Valid(authtest.RS256, "viewer", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := j.Verify(ctx, tok); err != nil || p.Role != auth.RoleViewer {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: srv.URL + "/missing", Audience: "mesh"}); err == nil {
		t.Error("a JWKS URL answering 404 was accepted")
	}
}

// TestJWKSRefusesConfusedKeysAndClaims: symmetric keys in the set, tokens
// of other algorithms, and role claims of the wrong type.
func TestJWKSRefusesConfusedKeysAndClaims(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	secret := []byte("0123456789abcdef0123456789abcdef")
	oct := `{"kty":"oct","kid":"hs","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString(secret) + `"}`

	// A set of only an HS256 key has no key we may use.
	only := filepath.Join(dir, "oct.json")
	if err := os.WriteFile(only, []byte(`{"keys":[`+oct+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: only, Audience: "mesh"}); err == nil {
		t.Error("a JWKS holding only an HS256 key was accepted")
	}

	// Beside an RSA key, the symmetric key is ignored: an HS256 token
	// signed with it, or naming the RSA kid, is refused.
	iss, err := authtest.NewIssuer(dir, "k1")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(iss.JWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	mixed := filepath.Join(dir, "mixed.json")
	if err := os.WriteFile(mixed, []byte(strings.Replace(string(data), `"keys":[`, `"keys":[`+oct+`,`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: mixed, Audience: "mesh"})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(role any) jwt.MapClaims {
		return jwt.MapClaims{"sub": "x", "aud": "mesh", "role": role, "exp": time.Now().Add(time.Hour).Unix()}
	}
	for _, kid := range []string{"hs", "k1-rsa", ""} {
		hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("admin"))
		hs.Header["kid"] = kid
		tok, err := hs.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Verify(ctx, tok); err == nil {
			t.Errorf("an HS256 token with kid %q was accepted", kid)
		}
		none := jwt.NewWithClaims(jwt.SigningMethodNone, claims("admin"))
		none.Header["kid"] = kid
		if tok, err = none.SignedString(jwt.UnsafeAllowNoneSignatureType); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Verify(ctx, tok); err == nil {
			t.Errorf("an alg none token with kid %q was accepted", kid)
		}
	}

	for name, role := range map[string]any{
		"number": 3, "object": map[string]any{"admin": true}, "bool": true,
		"array of non-strings": []any{1, 2}, "unknown name": "root", "empty array": []any{},
	} {
		tok, err := iss.Sign(authtest.RS256, claims(role))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := j.Verify(ctx, tok); err == nil {
			t.Errorf("role claim %s (%v) was accepted as %v", name, role, p.Role)
		}
	}
	// A token must name its caller: the logs say who made each call.
	for name, sub := range map[string]any{"no sub": nil, "empty": "", "blank": "  ", "number": 7} {
		c := claims("admin")
		if sub == nil {
			delete(c, "sub")
		} else {
			c["sub"] = sub
		}
		tok, err := iss.Sign(authtest.RS256, c)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := j.Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), "no sub claim") {
			t.Errorf("sub %s (%v): %v, %v; want it refused for want of a caller", name, sub, p, err)
		}
	}
	tok, err := iss.Sign(authtest.ES256, claims([]any{"other-app", "operator", 7}))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := j.Verify(ctx, tok); err != nil || p.Role != auth.RoleOperator {
		t.Errorf("roles array: %v %v", p, err)
	}
}

func TestJWKSURLOverPlainHTTPOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	_, err := auth.NewJWKS(context.Background(), auth.JWKSConfig{Source: "http://idp.example/jwks.json", Audience: "mesh"})
	if err == nil || !strings.Contains(err.Error(), "use https://") {
		t.Fatalf("got %v, want a refusal of plain http", err)
	}
	// Nor may a loopback URL redirect there.
	srv := httptest.NewServer(http.RedirectHandler("http://idp.example/jwks.json", http.StatusFound))
	defer srv.Close()
	_, err = auth.NewJWKS(context.Background(), auth.JWKSConfig{Source: srv.URL, Audience: "mesh"})
	if err == nil || !strings.Contains(err.Error(), "use https://") {
		t.Fatalf("redirect: got %v, want a refusal of plain http", err)
	}
}

// TestJWKSURLIsNotStampeded: a burst of tokens naming unknown kids makes
// one fetch of the JWKS URL, not one per token.
func TestJWKSURLIsNotStampeded(t *testing.T) {
	t.Parallel()
	iss, err := authtest.NewIssuer(t.TempDir(), "url")
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		time.Sleep(50 * time.Millisecond) // a slow identity provider
		http.ServeFile(w, r, iss.JWKSFile)
	}))
	defer srv.Close()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()
	j, err := auth.NewJWKS(ctx, auth.JWKSConfig{Source: srv.URL, Audience: "mesh", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute) // past the minimum refetch interval
	mu.Unlock()
	other, err := authtest.NewIssuer(t.TempDir(), "unknown")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := other.Token(authtest.RS256, "admin", "mesh", now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := j.Verify(ctx, tok); err == nil {
				t.Error("a token of an unknown key was accepted")
			}
		})
	}
	wg.Wait()
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches of the JWKS URL, want 2 (the first load and one refetch)", n)
	}
}

// slowIdP is an identity provider serving the JWKS of one of its issuers
// (the first at the start), whose fetches after the first hang until the
// test lets them through (release, one fetch a send), and a JWKS verifier
// of it on a clock the test moves.
type slowIdP struct {
	t       *testing.T
	issuers []*authtest.Issuer
	served  atomic.Pointer[string]
	fetches atomic.Int32
	// entered gets a value when a hanging fetch arrives.
	entered, release chan struct{}
	mu               sync.Mutex
	now              time.Time
	jwks             *auth.JWKS
}

func newSlowIdP(t *testing.T, names ...string) *slowIdP {
	t.Helper()
	p := &slowIdP{t: t, entered: make(chan struct{}, 4), release: make(chan struct{}), now: time.Now()}
	for _, name := range names {
		iss, err := authtest.NewIssuer(t.TempDir(), name)
		if err != nil {
			t.Fatal(err)
		}
		p.issuers = append(p.issuers, iss)
	}
	p.served.Store(&p.issuers[0].JWKSFile)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.fetches.Add(1) > 1 {
			p.entered <- struct{}{}
			<-p.release
		}
		http.ServeFile(w, r, *p.served.Load())
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(p.releaseAll) // first: srv.Close waits for the hanging handlers
	var err error
	if p.jwks, err = auth.NewJWKS(context.Background(), auth.JWKSConfig{Source: srv.URL, Audience: "mesh", Now: p.clock}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *slowIdP) clock() time.Time { p.mu.Lock(); defer p.mu.Unlock(); return p.now }

func (p *slowIdP) advance(d time.Duration) { p.mu.Lock(); p.now = p.now.Add(d); p.mu.Unlock() }

// serve makes the provider serve issuer i's keys from its next fetch.
func (p *slowIdP) serve(i int) { p.served.Store(&p.issuers[i].JWKSFile) }

// releaseAll lets every fetch through from now on.
func (p *slowIdP) releaseAll() {
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

// token is a valid operator token of issuer i.
func (p *slowIdP) token(i int) string {
	tok, err := p.issuers[i].Token(authtest.RS256, "operator", "mesh", p.clock().Add(-time.Minute), p.clock().Add(time.Hour))
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// fetching waits for a fetch to hang.
func (p *slowIdP) fetching(what string) {
	p.t.Helper()
	select {
	case <-p.entered:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: no fetch within 10 s", what)
	}
}

// TestJWKSFetchIsNotTheCallersWait: a JWKS URL due for its periodic
// fetch is fetched apart from the call that found it due, which verifies
// with the keys at hand while the identity provider is slow; a token
// naming a kid the set lacks waits for the fetch only up to its own
// deadline, and the fetch, not cancelled with it, brings the rotated keys
// for the calls after it.
func TestJWKSFetchIsNotTheCallersWait(t *testing.T) {
	t.Parallel()
	p := newSlowIdP(t, "first", "second", "third")
	verify := func(ctx context.Context, tok string) <-chan error {
		out := make(chan error, 1)
		go func() { _, err := p.jwks.Verify(ctx, tok); out <- err }()
		return out
	}
	result := func(what string, c <-chan error) error {
		t.Helper()
		select {
		case err := <-c:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Verify still waiting after 10 s", what)
			return nil
		}
	}
	// eventually waits for the released fetch to bring issuer i's keys (a
	// kid still unknown starts no fetch: the last one was just now).
	eventually := func(i int) {
		t.Helper()
		tok := p.token(i)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, err := p.jwks.Verify(context.Background(), tok)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("issuer %d's key never verified: %v", i, err)
			}
		}
	}

	// The periodic fetch, which brings the second issuer's keys, hangs; the
	// call that found it due verifies with the first's meanwhile.
	p.serve(1)
	p.advance(6 * time.Minute)
	done := verify(context.Background(), p.token(0))
	p.fetching("the periodic fetch")
	if err := result("the call that found the fetch due, while the fetch hangs", done); err != nil {
		t.Fatalf("Verify with a known key: %v", err)
	}
	p.release <- struct{}{}
	eventually(1)

	// The keys rotate again. A caller in a hurry gives up on the fetch its
	// new kid starts; the fetch goes on and serves the calls after it.
	p.serve(2)
	p.advance(time.Minute)
	hurry, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done = verify(hurry, p.token(2))
	p.fetching("the fetch of an unknown kid")
	if err := result("a caller past its deadline", done); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Verify past its deadline: %v, want ErrInvalidToken", err)
	}
	p.release <- struct{}{}
	eventually(2)
	if n := p.fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want 3 (the first load, the periodic one, the rotation's)", n)
	}
}

// TestRotatedKidWaitsForTheFetchUnderWay: tokens naming a kid the set
// lacks, arriving while a fetch is under way (the periodic one another call
// started), wait for that fetch instead of being refused because a fetch
// was claimed a moment ago; they start no fetch of their own.
func TestRotatedKidWaitsForTheFetchUnderWay(t *testing.T) {
	t.Parallel()
	p := newSlowIdP(t, "old", "rotated")
	p.serve(1)
	p.advance(6 * time.Minute)
	if _, err := p.jwks.Verify(context.Background(), p.token(0)); err != nil {
		t.Fatalf("the call that found the periodic fetch due: %v", err)
	}
	p.fetching("the periodic fetch")
	const callers = 3
	results := make(chan error, callers)
	for range callers {
		go func() { _, err := p.jwks.Verify(context.Background(), p.token(1)); results <- err }()
	}
	select {
	case err := <-results:
		t.Fatalf("a rotated kid was answered (%v) before the fetch under way ended", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.releaseAll()
	for range callers {
		select {
		case err := <-results:
			if err != nil {
				t.Errorf("rotated kid after the fetch under way: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a rotated kid still waiting 10 s after the fetch was released")
		}
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the first load and the periodic one)", n)
	}
}
