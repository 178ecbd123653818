package saga

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The store's lease operations: claims, recovery, renewal, release, and the
// scripts that reopen a finished saga (resume, cancel). See Store, "Leases".

// rescore queues the update of key's index score to hint, only if key is
// indexed (XX): an unfinished saga always is, and a finished one must not
// be indexed again.
func rescore(ctx context.Context, p redis.Pipeliner, key string, hint int64) {
	p.ZAddXX(ctx, ActiveKey(key), redis.Z{Score: float64(hint), Member: key})
}

// claim makes owner the owner of the unfinished saga key, whoever holds it
// (see claimScript).
func (s *Store) claim(ctx context.Context, key, owner string, now time.Time) (*Record, error) {
	hint := s.hint(time.Now())
	reply, err := s.do(ctx, func(p redis.Pipeliner) { rescore(ctx, p, key, hint) }, claimScript,
		[]string{RecordKey(key)}, owner, now.UnixMilli(), s.leaseMillis()).Slice()
	if err != nil {
		return nil, fmt.Errorf("claim saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, fmt.Errorf("claim saga %s: %w", key, ErrNotFound)
	}
	rec, err := recordFromReply(reply)
	if err != nil {
		return nil, fmt.Errorf("claim saga %s: %w", key, err)
	}
	if !rec.State.Terminal() {
		s.idx.wrote(key, hint)
	}
	return rec, nil
}

// expired returns up to limit entries of the active-lease index whose score
// has passed, from every shard (one round trip: a pipeline of one script per
// shard, which a Cluster client splits per node). A shard that cannot be
// read (its Cluster node down) does not hide the others: their entries are
// returned with an error naming the shards that failed.
func (s *Store) expired(ctx context.Context, limit int) ([]indexEntry, error) {
	shards := ActiveShardKeys()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(shards))
	for i, k := range shards {
		cmds[i] = expiredScript.EvalSha(ctx, pipe, []string{k}, limit)
	}
	_, _ = pipe.Exec(ctx)
	var out []indexEntry
	var errs []error
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			c = expiredScript.Run(ctx, s.rdb, []string{shards[i]}, limit)
		}
		zs, err := c.StringSlice()
		if err != nil {
			errs = append(errs, fmt.Errorf("scan expired saga leases in %s: %w", shards[i], err))
			continue
		}
		for j := 0; j+1 < len(zs) && len(out) < limit; j += 2 {
			score, err := strconv.ParseFloat(zs[j+1], 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("scan expired saga leases in %s: score %q: %w", shards[i], zs[j+1], err))
				continue
			}
			out = append(out, indexEntry{key: zs[j], score: int64(score)})
		}
	}
	return out, errors.Join(errs...)
}

// recovered is a saga claimed by recovery.
type recovered struct {
	rec *Record
	// prevOwner is the owner whose lease expired.
	prevOwner string
	// expiredFor is how long the lease had been expired when it was claimed
	// (Redis server clock): the recovery delay beyond the lease TTL.
	expiredFor time.Duration
}

// recoverClaim claims the saga of index entry e for owner if it is
// unfinished and its lease expired (see recoverScript); nil means someone
// else renewed, claimed or finished it first. An entry whose saga is
// missing or finished is dropped, two lease TTLs past its score (see
// Store.deadline); one whose lease is still running is re-scored to the
// lease's expiry.
func (s *Store) recoverClaim(ctx context.Context, e indexEntry, owner string, now time.Time) (*recovered, error) {
	hint := s.hint(time.Now())
	reply, err := s.do(ctx, nil, recoverScript, []string{RecordKey(e.key)},
		owner, now.UnixMilli(), s.leaseMillis()).Slice()
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: %w", e.key, err)
	}
	kind, _ := reply[0].(string)
	switch kind {
	case "stale":
		err := s.do(ctx, nil, unindexScript, []string{ActiveKey(e.key)}, e.key, e.score, s.dropGrace()).Err()
		if err != nil {
			return nil, fmt.Errorf("recover saga %s: drop stale index entry: %w", e.key, err)
		}
		return nil, nil
	case "live":
		lease, _ := reply[1].(string)
		ms, err := strconv.ParseInt(lease, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("recover saga %s: lease %q: %w", e.key, lease, err)
		}
		// GT: a renewal that moved the entry on meanwhile keeps its score.
		err = s.rdb.ZAddArgs(ctx, ActiveKey(e.key), redis.ZAddArgs{XX: true, GT: true,
			Members: []redis.Z{{Score: float64(ms), Member: e.key}}}).Err()
		if err != nil {
			return nil, fmt.Errorf("recover saga %s: re-score index entry: %w", e.key, err)
		}
		return nil, nil
	case "claimed":
	default:
		return nil, fmt.Errorf("recover saga %s: unexpected reply %v", e.key, reply)
	}
	if len(reply) < 3 {
		return nil, fmt.Errorf("recover saga %s: unexpected reply %v", e.key, reply)
	}
	ms, _ := reply[1].(string)
	prev, _ := reply[2].(string)
	expiredFor, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: lease expiry %q: %w", e.key, ms, err)
	}
	rec, err := recordFromReply(reply[3:])
	if err != nil {
		return nil, fmt.Errorf("recover saga %s: %w", e.key, err)
	}
	// A plain ZADD, not XX: the owner this claim fenced may have removed
	// the entry with the write it was fenced at (Store.saveEnding).
	if err := s.rdb.ZAdd(ctx, ActiveKey(e.key), redis.Z{Score: float64(hint), Member: e.key}).Err(); err != nil {
		return nil, fmt.Errorf("recover saga %s: index the claimed saga: %w", e.key, err)
	}
	s.idx.wrote(e.key, hint)
	return &recovered{rec: rec, prevOwner: prev, expiredFor: time.Duration(expiredFor) * time.Millisecond}, nil
}

// lease names a saga an engine holds, at the epoch it holds it.
type lease struct {
	key   string
	epoch int64
}

// leaseNote is what a renewal found out about one lease.
type leaseNote struct {
	// i indexes the leases passed to renew.
	i int
	// lost: another engine took the saga over, or (gone) its record is
	// gone.
	lost, gone bool
	// cancelReason is set when a cancellation was recorded while the saga
	// runs forward.
	cancelReason string
}

// leaseScripts sends, in one round trip with the waiting global writes, one
// run of script per lease (KEYS the record, ARGV the epoch then args), and
// returns the scripts' replies.
func (s *Store) leaseScripts(ctx context.Context, leases []lease, script *redis.Script, args ...any) ([]*redis.Cmd, error) {
	pipe := s.rdb.Pipeline()
	done := s.takeSide(ctx, pipe)
	cmds := make([]*redis.Cmd, len(leases))
	for i, l := range leases {
		cmds[i] = script.EvalSha(ctx, pipe, []string{RecordKey(l.key)}, append([]any{strconv.FormatInt(l.epoch, 10)}, args...)...)
	}
	_, _ = pipe.Exec(ctx)
	done()
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			l := leases[i]
			cmds[i] = script.Run(ctx, s.rdb, []string{RecordKey(l.key)}, append([]any{strconv.FormatInt(l.epoch, 10)}, args...)...)
		}
		if err := cmds[i].Err(); err != nil {
			return nil, err
		}
	}
	return cmds, nil
}

// rescoreAll moves the index entries of keys, whose leases a script just
// extended or released, to hint, in one round trip. Only after the script:
// an engine cut off from a record's node must not keep pushing its entry
// where recovery no longer looks while the lease runs out. A plain ZADD,
// not XX: the script found each saga unfinished, so an entry missing now
// was lost (a failover of its shard's node lost the write that created
// it) and is written again; one written for a saga that ended since is
// dropped by recovery as stale.
func (s *Store) rescoreAll(ctx context.Context, keys []string, hint int64) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.ZAdd(ctx, ActiveKey(k), redis.Z{Score: float64(hint), Member: k})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("active index: %w", err)
	}
	for _, k := range keys {
		s.idx.wrote(k, hint)
	}
	return nil
}

// renew extends the leases an engine holds, in one round trip (see
// renewScript), and reports the leases lost and the cancellations found.
func (s *Store) renew(ctx context.Context, leases []lease) ([]leaseNote, error) {
	hint := s.hint(time.Now())
	cmds, err := s.leaseScripts(ctx, leases, renewScript, s.leaseMillis())
	if err != nil {
		return nil, fmt.Errorf("renew %d saga leases: %w", len(leases), err)
	}
	var notes []leaseNote
	renewed := make([]string, 0, len(leases))
	for i, c := range cmds {
		reply, _ := c.Slice()
		kind := ""
		if len(reply) > 0 {
			kind, _ = reply[0].(string)
		}
		if kind == "ok" || kind == "cancelled" {
			renewed = append(renewed, leases[i].key)
		}
		switch kind {
		case "ok", "ended":
		case "lost", "gone":
			s.idx.forget(leases[i].key)
			notes = append(notes, leaseNote{i: i, lost: true, gone: kind == "gone"})
		case "cancelled":
			reason := ""
			if len(reply) > 1 {
				reason, _ = reply[1].(string)
			}
			notes = append(notes, leaseNote{i: i, cancelReason: reason})
		default:
			return nil, fmt.Errorf("renew saga lease %s: unexpected reply %v", leases[i].key, reply)
		}
	}
	if err := s.rescoreAll(ctx, renewed, hint); err != nil {
		// The leases are renewed; recovery finds the entries early and
		// re-scores them from the records.
		return notes, fmt.Errorf("renew %d saga leases: %w", len(leases), err)
	}
	return notes, nil
}

// release makes the leases still held at their epoch expire now (see
// releaseScript) and returns how many it released.
func (s *Store) release(ctx context.Context, leases []lease) (int, error) {
	if len(leases) == 0 {
		return 0, nil
	}
	cmds, err := s.leaseScripts(ctx, leases, releaseScript)
	if err != nil {
		return 0, fmt.Errorf("release %d saga leases: %w", len(leases), err)
	}
	var released []string
	for i, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			released = append(released, leases[i].key)
		}
	}
	if err := s.rescoreAll(ctx, released, time.Now().UnixMilli()); err != nil {
		return len(released), fmt.Errorf("release %d saga leases: %w", len(leases), err)
	}
	for _, l := range leases {
		s.idx.forget(l.key)
	}
	return len(released), nil
}

// reopen runs script, which may reopen saga key (resume, cancel), after
// indexing the saga with a fresh score, and returns its reply. ARGV are
// args followed by the lease TTL and the index entry deadline.
func (s *Store) reopen(ctx context.Context, key string, script *redis.Script, args ...any) ([]any, int64, error) {
	hint := s.hint(time.Now())
	index := func(p redis.Pipeliner) {
		p.ZAdd(ctx, ActiveKey(key), redis.Z{Score: float64(hint), Member: key})
	}
	args = append(args, s.leaseMillis(), s.deadline(hint))
	cmd, err := s.indexed(ctx, index, script, s.retention.keys(key), args...)
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return nil, 0, lateErr(err)
	}
	reply, err := cmd.Slice()
	return reply, hint, err
}

// resume reopens the Failed saga key for compensation, owned by owner (see
// resumeScript). resumed false means the saga was not Failed and rec is its
// unchanged record.
func (s *Store) resume(ctx context.Context, key, owner string, now time.Time) (rec *Record, resumed bool, err error) {
	reply, hint, err := s.reopen(ctx, key, resumeScript, owner, now.UnixMilli())
	if err != nil {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, ErrNotFound)
	}
	rec, err = recordFromReply(reply[1:])
	if err != nil {
		return nil, false, fmt.Errorf("resume saga %s: %w", key, err)
	}
	if reply[0] == "1" {
		s.idx.wrote(key, hint) // this engine drives it now
	} else {
		s.idx.rewrote(key, hint)
	}
	return rec, reply[0] == "1", nil
}

// cancel records a cancellation request (see cancelScript). teardown reports
// that a completed saga was reopened and must now be compensated.
func (s *Store) cancel(ctx context.Context, key, reason string, now time.Time) (rec *Record, teardown bool, err error) {
	reply, hint, err := s.reopen(ctx, key, cancelScript, reason, now.UnixMilli())
	if err != nil {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, ErrNotFound)
	}
	rec, err = recordFromReply(reply[1:])
	if err != nil {
		return nil, false, fmt.Errorf("cancel saga %s: %w", key, err)
	}
	if reply[0] == "1" {
		s.idx.wrote(key, hint) // the teardown is driven here
	} else {
		s.idx.rewrote(key, hint)
	}
	return rec, reply[0] == "1", nil
}
