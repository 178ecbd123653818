//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// TestRedisHold: only the part of a Redis outage between a kill and its last
// resumption extends the kill's recovery bound (the numbers of a CI run where
// a master SIGKILL 1.9 s after the kill held the orphans back 6.1 s).
func TestRedisHold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	kl := &kill{at: t0, recovery: 8120 * time.Millisecond}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, c := range []struct {
		name   string
		faults []*redisFault
		want   time.Duration
	}{
		{"none", nil, 0},
		{"inside", []*redisFault{{at: at(1900), meshRecovery: 6118 * time.Millisecond, writes: true}}, 6118 * time.Millisecond},
		{"over the end", []*redisFault{{at: at(5000), meshRecovery: 6 * time.Second, writes: true}}, 3120 * time.Millisecond},
		{"before the kill, still out", []*redisFault{{at: at(-2000), meshRecovery: 3 * time.Second, writes: true}}, time.Second},
		{"over before the kill", []*redisFault{{at: at(-5000), meshRecovery: 3 * time.Second, writes: true}}, 0},
		{"after the last resume", []*redisFault{{at: at(9000), meshRecovery: 3 * time.Second, writes: true}}, 0},
		{"no write after: the promotion", []*redisFault{{at: at(1000), promotedIn: 500 * time.Millisecond, meshRecovery: 7 * time.Second}}, 500 * time.Millisecond},
		{"two", []*redisFault{
			{at: at(1000), promotedIn: 100 * time.Millisecond, meshRecovery: 400 * time.Millisecond, writes: true},
			{at: at(2000), meshRecovery: time.Second, writes: true},
		}, 1400 * time.Millisecond},
	} {
		if got := redisHold(kl, c.faults); got != c.want {
			t.Errorf("%s: hold %v, want %v", c.name, got, c.want)
		}
	}
}
