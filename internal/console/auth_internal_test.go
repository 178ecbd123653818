package console

import "testing"

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
