// Package redischeck refuses a Redis server that cannot keep slammesh's
// promises, at service start, with a message that names the setting and the
// fix (docs/architecture.md, "Redis requirements"):
//
//   - a version below MinVersion lacks commands the code uses: ZADD … GT
//     (lease renewal), ZRANGE … BYSCORE REV LIMIT (ListMissions), XAUTOCLAIM
//     (consumer groups), XADD … NOMKSTREAM (step events), ZMSCORE, ZDIFF
//     (the maps in flight);
//   - any maxmemory-policy but noeviction lets Redis drop keys under memory
//     pressure: allkeys-* evicts saga records and barrier marks, and
//     volatile-* evicts the TTL'd keys of finished missions before their
//     retention ends — a mission then silently loses its results, and the
//     capacity accounting drifts. slammesh bounds its own memory (capacity
//     budgets, retention); Redis must refuse writes rather than forget.
//
// The policy is read from INFO memory, which reports maxmemory_policy since
// Redis 4, and with CONFIG GET only where INFO lacks it: a CONFIG GET the
// documented ACL refuses would count as a NOPERM error of its own (found by
// a review: every start then raised AOFACLAdvice's alarm), and managed
// Redis offerings often disable or rename CONFIG.
package redischeck

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// MinVersion is the oldest Redis server slammesh runs on: 6.2 brought
// ZADD GT/LT, ZRANGE BYSCORE REV LIMIT, XAUTOCLAIM, XADD NOMKSTREAM,
// ZMSCORE and ZDIFF.
var MinVersion = Version{Major: 6, Minor: 2}

// RequiredPolicy is the only maxmemory-policy slammesh accepts.
const RequiredPolicy = "noeviction"

// Version is a Redis server version, major.minor.patch.
type Version struct{ Major, Minor, Patch int }

// String formats v as major.minor.patch.
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

// ParseVersion parses "7.0.15" (also "6.2", and suffixes such as "7.2.4-rc1"
// on the patch).
func ParseVersion(s string) (Version, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("redis version %q: want major.minor[.patch]", s)
	}
	var v Version
	var err error
	if v.Major, err = strconv.Atoi(parts[0]); err != nil {
		return Version{}, fmt.Errorf("redis version %q: major: %w", s, err)
	}
	if v.Minor, err = strconv.Atoi(parts[1]); err != nil {
		return Version{}, fmt.Errorf("redis version %q: minor: %w", s, err)
	}
	if len(parts) == 3 {
		digits := parts[2]
		if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			digits = digits[:i]
		}
		if digits != "" {
			if v.Patch, err = strconv.Atoi(digits); err != nil {
				return Version{}, fmt.Errorf("redis version %q: patch: %w", s, err)
			}
		}
	}
	return v, nil
}

// InfoField returns the value of field in the text of an INFO reply
// ("field:value" lines), and whether it is there.
func InfoField(info, field string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && k == field {
			return v, true
		}
	}
	return "", false
}

// CheckVersion decides on the redis_version field of an INFO server reply.
func CheckVersion(info string) (Version, error) {
	raw, ok := InfoField(info, "redis_version")
	if !ok {
		return Version{}, fmt.Errorf("redis: INFO server has no redis_version; slammesh needs Redis %d.%d or newer", MinVersion.Major, MinVersion.Minor)
	}
	v, err := ParseVersion(raw)
	if err != nil {
		return Version{}, fmt.Errorf("redis: %w", err)
	}
	if v.Less(MinVersion) {
		return v, fmt.Errorf("redis: server version %s is too old: slammesh needs Redis %d.%d or newer "+
			"(ZADD GT, ZRANGE BYSCORE REV LIMIT, XAUTOCLAIM, XADD NOMKSTREAM); upgrade the server",
			v, MinVersion.Major, MinVersion.Minor)
	}
	return v, nil
}

// CheckPolicy decides on a maxmemory-policy value.
func CheckPolicy(policy string) error {
	if policy == RequiredPolicy {
		return nil
	}
	what := "evicts any key, saga records and barrier marks included"
	if strings.HasPrefix(policy, "volatile-") {
		what = "evicts keys with an expiry, the results of finished missions before their retention ends"
	}
	return fmt.Errorf("redis: maxmemory-policy is %s, which %s under memory pressure; "+
		"slammesh needs maxmemory-policy %s (redis.conf: maxmemory-policy %s, or CONFIG SET maxmemory-policy %s)",
		policy, what, RequiredPolicy, RequiredPolicy, RequiredPolicy)
}

// Result is what Check found.
type Result struct {
	Version Version
	Policy  string
	// PolicyFrom says where the policy was read: "INFO memory", or "CONFIG
	// GET" when INFO has no maxmemory_policy.
	PolicyFrom string
	// AOF reports appendonly: yes; without it a Redis restart loses the
	// writes since the last RDB snapshot (sagas included). A warning, not a
	// refusal: replicas or snapshots may be the operator's choice.
	AOF bool
	// NOPERM is how many NOPERM errors the server counted since it started
	// (INFO errorstats) that no client's refused command explains (INFO
	// commandstats' rejected_calls): the writes of an AOF dropped as the
	// server loaded it, see AOFACLAdvice.
	NOPERM int64
}

// AOFACLAdvice explains a count of NOPERM errors on a Redis that loaded an
// AOF: Redis replays its AOF as its default user, and before
// redis/redis#14545 it checks that user's ACL again at each EXEC, where a
// script with several writes is stored as MULTI…EXEC; so a default user
// turned off without slammesh's permissions drops those writes at every
// restart (each with a NOPERM error and a CRITICAL line in the server's
// log), leaving saga records half written (found by a review, on the ACL
// the docs gave). docs/security.md gives the default user the permissions.
const AOFACLAdvice = `if the server's log says "ACLs rules changed between the moment the transaction was accumulated and the EXEC call", ` +
	`it dropped the scripts' writes of its AOF as it loaded it (it replays the AOF as its default user, whose ACL lacks slammesh's permissions; redis/redis#14541): ` +
	`missions of before the restart may be damaged or lost; give the default user slammesh's permissions, off as it is (docs/security.md, "Redis")`

// UnexplainedNOPERM reads, from the text of an INFO reply with its
// errorstats and commandstats sections, the NOPERM errors
// ("errorstat_NOPERM:count=N") that no refused command explains: a client
// refused for want of permission counts in both its command's
// rejected_calls and the NOPERM errors, while Redis's own AOF client,
// whose writes are dropped at load (AOFACLAdvice), counts in the errors
// alone. Other refusals (OOM, arity) count in rejected_calls too, so a
// server that refused many since it started may hide some of the AOF's.
// 0 when there are none.
func UnexplainedNOPERM(info string) int64 {
	var noperm, rejected int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		switch {
		case !ok:
		case k == "errorstat_NOPERM":
			noperm = statField(v, "count")
		case strings.HasPrefix(k, "cmdstat_"):
			rejected += statField(v, "rejected_calls")
		}
	}
	return max(noperm-rejected, 0)
}

// clusterNOPERM is UnexplainedNOPERM summed over the masters of a
// Cluster that answer; err is the first failure of one that did not.
func clusterNOPERM(ctx context.Context, c *redis.ClusterClient) (int64, error) {
	var mu sync.Mutex
	var sum int64
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		info, err := m.Info(ctx, "errorstats", "commandstats").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		sum += UnexplainedNOPERM(info)
		mu.Unlock()
		return nil
	})
	return sum, err
}

// statField returns field's integer in a "a=1,b=2" INFO value; 0 when it
// is not there.
func statField(v, field string) int64 {
	for _, kv := range strings.Split(v, ",") {
		if k, n, ok := strings.Cut(kv, "="); ok && k == field {
			i, err := strconv.ParseInt(n, 10, 64)
			if err == nil {
				return i
			}
		}
	}
	return 0
}

// Check reads the server's version and maxmemory-policy and refuses what
// slammesh cannot run on. Errors say what to change.
func Check(ctx context.Context, rdb redis.UniversalClient) (Result, error) {
	var r Result
	info, err := rdb.Info(ctx, "server", "memory", "persistence", "errorstats", "commandstats").Result()
	if err != nil {
		return r, fmt.Errorf("redis: INFO: %w", err)
	}
	if r.Version, err = CheckVersion(info); err != nil {
		return r, err
	}
	if v, ok := InfoField(info, "aof_enabled"); ok {
		r.AOF = v == "1"
	}
	r.NOPERM = UnexplainedNOPERM(info)
	if c, ok := rdb.(*redis.ClusterClient); ok {
		// A Cluster client's INFO is one master's, or their replies
		// merged without the errorstats (found by a review): count on
		// each master. A master that does not answer now (a failover
		// under way) only leaves its count out: the count is a hint.
		r.NOPERM, _ = clusterNOPERM(ctx, c)
	}
	if p, ok := InfoField(info, "maxmemory_policy"); ok {
		r.Policy, r.PolicyFrom = p, "INFO memory"
		return r, CheckPolicy(r.Policy)
	}
	cfg, cfgErr := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if p, ok := cfg["maxmemory-policy"]; cfgErr == nil && ok {
		r.Policy, r.PolicyFrom = p, "CONFIG GET"
		return r, CheckPolicy(r.Policy)
	}
	why := "CONFIG GET returned no maxmemory-policy"
	if cfgErr != nil {
		why = "CONFIG GET failed (" + cfgErr.Error() + ")"
	}
	return r, fmt.Errorf("redis: cannot read maxmemory-policy: INFO memory has no maxmemory_policy and %s; "+
		"slammesh needs maxmemory-policy %s", why, RequiredPolicy)
}
