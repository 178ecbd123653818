package redistest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ScriptLog records the Lua scripts a client ran (EVAL, EVALSHA and their
// _RO forms, alone or in a pipeline), by SHA1, with whether each ran without
// error at least once and the cross-slot errors any run met. The test that
// runs every script of the project on a Redis Cluster reads it: a script
// that touches keys of two slots fails there (CROSSSLOT for its declared
// keys; "non local key" or a cross-slot error for a key it did not
// declare), so a clean run on a cluster proves it stays in one slot.
type ScriptLog struct {
	mu sync.Mutex
	ok map[string]int
	// crossSlot holds, per SHA1, the first cross-slot error met.
	crossSlot map[string]error
}

// RecordScripts adds a hook to c that records its scripts in the returned
// log. Add it before the client's first command.
func RecordScripts(c redis.UniversalClient) *ScriptLog {
	l := &ScriptLog{ok: map[string]int{}, crossSlot: map[string]error{}}
	c.AddHook(l)
	return l
}

// Ran returns how many times the script ran without error.
func (l *ScriptLog) Ran(s *redis.Script) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok[s.Hash()]
}

// CrossSlot returns the cross-slot errors met, as "sha1: error", sorted.
func (l *ScriptLog) CrossSlot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, sha := range slices.Sorted(maps.Keys(l.crossSlot)) {
		out = append(out, fmt.Sprintf("%s: %v", sha, l.crossSlot[sha]))
	}
	return out
}

// IsCrossSlot reports whether err is Redis refusing keys of more than one
// slot (or of a slot the node does not serve) in one command or script.
func IsCrossSlot(err error) bool {
	if err == nil {
		return false
	}
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "crossslot") || strings.Contains(m, "non local key") ||
		strings.Contains(m, "cross slot") || strings.Contains(m, "different slot")
}

func (l *ScriptLog) record(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	name := strings.ToLower(cmd.Name())
	body, _ := args[1].(string)
	var sha string
	switch name {
	case "evalsha", "evalsha_ro":
		sha = strings.ToLower(body)
	case "eval", "eval_ro":
		h := sha1.Sum([]byte(body))
		sha = hex.EncodeToString(h[:])
	default:
		return
	}
	err := cmd.Err()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil || err == redis.Nil:
		l.ok[sha]++
	case IsCrossSlot(err):
		if _, seen := l.crossSlot[sha]; !seen {
			l.crossSlot[sha] = err
		}
	}
}

// DialHook passes dials through.
func (l *ScriptLog) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook records a script run alone.
func (l *ScriptLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		l.record(cmd)
		return err
	}
}

// ProcessPipelineHook records the scripts of a pipeline or transaction.
func (l *ScriptLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			l.record(c)
		}
		return err
	}
}
