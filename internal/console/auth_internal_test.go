package console

import (
	"encoding/base64"
	"testing"
)

// TestSafeNext: the login form's redirect stays on the console whatever
// the next field holds.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/missions/m-1?x=1":    "/missions/m-1?x=1",
		"/fleet":               "/fleet",
		"":                     "/",
		"https://evil.example": "/",
		"//evil.example/":      "/",
		"/\\evil.example":      "/",
		"/\t/evil.example":     "/",
		"/\n/evil.example":     "/",
		"evil.example":         "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// Live feeds are counted per JWT without its signature, whose spellings
// verify alike; a static token with two dots is not a JWT and counts as
// itself (found by a review: "team.a.<hex1>" and "team.a.<hex2>" shared a
// quota).
func TestFeedKey(t *testing.T) {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice"}`))
	jwt := header + "." + claims
	for token, want := range map[string]string{
		jwt + ".sigA":                  jwt,
		jwt + ".sigB":                  jwt,
		"team.a.0123456789abcdef0123":  "team.a.0123456789abcdef0123",
		"team.a.fedcba98765432100123":  "team.a.fedcba98765432100123",
		"plain-token-0123456789abcdef": "plain-token-0123456789abcdef",
	} {
		if got := feedKey(token); got != want {
			t.Errorf("feedKey(%q) = %q, want %q", token, got, want)
		}
	}
}
