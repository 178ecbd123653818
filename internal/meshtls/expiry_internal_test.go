package meshtls

import (
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
	use(11 * 24 * time.Hour)          // expired, still in use
	if len(told) != 3 {
		t.Errorf("told %d times, want 3 (6 days left, two hours later, expired)", len(told))
	}

	later, err := ca.IssueValid("merge", meshtlstest.Server, start.Add(time.Hour), start.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSource(Files{Cert: later.CertFile, Key: later.KeyFile}, Options{}); err == nil || !strings.Contains(err.Error(), "not valid until") {
		t.Errorf("a certificate valid from an hour on: %v, want refused as not valid yet", err)
	}
}
