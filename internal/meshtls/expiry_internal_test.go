package meshtls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

// A certificate that nears its end in place, never rotated, is told once
// an hour from ExpiryWarning before it expires, and on after it expired;
// one not valid yet is refused at start like an expired one.
func TestExpiringCertificateIsTold(t *testing.T) {
	ca, err := meshtlstest.NewCA(t.TempDir(), "ca")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	notAfter := start.Add(10 * 24 * time.Hour)
	c, err := ca.IssueValid("mapping", meshtlstest.Server, start.Add(-time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	var told []time.Time
	s, err := NewSource(Files{Cert: c.CertFile, Key: c.KeyFile}, Options{OnExpiring: func(cert string, at time.Time) {
		if cert != c.CertFile || !at.Equal(notAfter.Truncate(time.Second)) {
			t.Errorf("told of %s expiring at %v, want %s at %v", cert, at, c.CertFile, notAfter)
		}
		told = append(told, at)
	}})
	if err != nil {
		t.Fatal(err)
	}
	clock := start
	s.now = func() time.Time { return clock }
	use := func(at time.Duration) {
		clock = start.Add(at)
		s.current()
	}
	use(24 * time.Hour) // 9 days left: nothing
	if len(told) != 0 {
		t.Fatalf("told %d times with 9 days left", len(told))
	}
	use(4 * 24 * time.Hour)           // 6 days left
	use(4*24*time.Hour + time.Minute) // within the hour: not again
	use(4*24*time.Hour + 2*time.Hour) // an hour on: again
	use(10*24*time.Hour - time.Minute)
	if s.Valid() != nil {
		t.Error("Valid refused a certificate a minute from its end")
	}
	// Expired, still in use: told at once, though within the hour of the
	// last (found by a review: the error came up to an hour late), and
	// not valid.
	use(10*24*time.Hour + time.Minute)
	use(10*24*time.Hour + 2*time.Minute)
	if len(told) != 4 {
		t.Errorf("told %d times, want 4 (6 days left, two hours on, a minute left, expired)", len(told))
	}
	if err := s.Valid(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Valid of an expired certificate = %v", err)
	}

	// A CA whose certificate nears its end is told at once, at the start.
	shortCA, err := ca.IssueValid("short-ca", meshtlstest.Server, start.Add(-time.Hour), start.Add(3*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var caTold []string
	if _, err := NewSource(Files{CA: shortCA.CertFile}, Options{OnExpiring: func(file string, _ time.Time) { caTold = append(caTold, file) }}); err != nil {
		t.Fatal(err)
	}
	if len(caTold) != 1 || caTold[0] != shortCA.CertFile {
		t.Errorf("a CA 3 days from its end: told %v at the start, want it once", caTold)
	}
	// A bundle that still holds an expired CA beside its successor (a
	// rotation's overlap) is good, and told nothing (found by a review:
	// it was called expired); once every CA in it expired, it is not valid.
	oldCA, err := ca.IssueValid("old-ca", meshtlstest.Server, start.Add(-48*time.Hour), start.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := ca.IssueValid("new-ca", meshtlstest.Server, start.Add(-time.Hour), start.Add(300*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, append(readFile(t, newCA.CertFile), readFile(t, oldCA.CertFile)...), 0o600); err != nil {
		t.Fatal(err)
	}
	caTold = nil
	overlap, err := NewSource(Files{CA: bundle}, Options{OnExpiring: func(file string, _ time.Time) { caTold = append(caTold, file) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(caTold) != 0 || overlap.Valid() != nil {
		t.Errorf("a bundle with an expired CA beside a valid one: told %v, Valid %v; want neither", caTold, overlap.Valid())
	}
	expired, err := NewSource(Files{CA: oldCA.CertFile}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := expired.Valid(); err == nil || !strings.Contains(err.Error(), "every certificate of CA file") {
		t.Errorf("Valid of a CA file whose every certificate expired = %v", err)
	}

	later, err := ca.IssueValid("merge", meshtlstest.Server, start.Add(time.Hour), start.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSource(Files{Cert: later.CertFile, Key: later.KeyFile}, Options{}); err == nil || !strings.Contains(err.Error(), "not valid until") {
		t.Errorf("a certificate valid from an hour on: %v, want refused as not valid yet", err)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
