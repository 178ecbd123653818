package missionid_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/missionid"
)

func TestNew(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	a, b := missionid.New(now), missionid.New(now)
	if a == b {
		t.Errorf("two ids at the same time are equal: %s", a)
	}
	if !regexp.MustCompile(`^m-[0-9a-z]+-[0-9a-f]{16}$`).MatchString(a) || len(a) > 64 {
		t.Errorf("id %q: want m-<ms base 36>-<16 hex digits>", a)
	}
	if later := missionid.New(now.Add(time.Hour)); later[:10] <= a[:10] {
		t.Errorf("an id made an hour later, %s, does not sort after %s", later, a)
	}
}
