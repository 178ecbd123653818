package redistest

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SlotWatch checks, on a Redis Cluster, that every script run and every
// MULTI/EXEC touches keys of one hash slot. Redis itself refuses declared
// keys of two slots (CROSSSLOT) and undeclared keys on another node, but a
// script without a "#!lua" shebang may still touch an undeclared key of
// another slot the same node serves; SlotWatch sees those too. It follows
// MONITOR (redis.io/commands/monitor) on every master: a script's commands
// appear as "[0 lua]" lines right after its EVAL/EVALSHA line, and a
// transaction's as a block from MULTI to EXEC, both uninterrupted because a
// node runs them atomically. The keys of each command come from COMMAND
// GETKEYS, their slots from CRC16 as Redis Cluster computes them.
type SlotWatch struct {
	// keyClients answer COMMAND GETKEYS: any node that is up will do;
	// followers[i] is closed when the MONITOR of keyClients[i]'s node
	// ended (the node was killed).
	keyClients []*redis.Client
	followers  []chan struct{}
	mu         sync.Mutex
	// checked counts the scripts and transactions checked.
	checked    int
	violations []string
	marks      map[string]chan struct{}
	// seen counts the runs of each script by SHA1 (lower-case hex).
	seen  map[string]int
	conns []net.Conn
	wg    sync.WaitGroup
}

// WatchSlots starts a SlotWatch on the masters of the cluster srv, stopped
// when t ends. Commands run before it returns are not seen; a failover
// after it starts moves writes to a master it does not follow. (Start in
// cluster mode watches every test's cluster by itself.)
func WatchSlots(t testing.TB, srv *Server) *SlotWatch {
	t.Helper()
	if !srv.IsCluster() {
		t.Fatal("redistest: WatchSlots needs a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	masters, err := srv.Cluster.Masters(ctx)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	w, err := WatchNodes(ctx, masters)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// WatchNodes starts a SlotWatch on the nodes at addrs; Stop ends it. To
// stay on watch across failovers, give it every node, replicas included: a
// replica's MONITOR shows each script's writes as the MULTI/EXEC block its
// master replicates, which is checked like any transaction, and a promoted
// replica shows the scripts themselves.
func WatchNodes(ctx context.Context, addrs []string) (*SlotWatch, error) {
	w := &SlotWatch{marks: map[string]chan struct{}{}, seen: map[string]int{}}
	for _, a := range addrs {
		w.keyClients = append(w.keyClients, redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second}))
	}
	for _, m := range addrs {
		conn, err := net.DialTimeout("tcp", m, 5*time.Second)
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("MONITOR %s: %w", m, err)
		}
		r := bufio.NewReader(conn)
		_, _ = conn.Write([]byte("MONITOR\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			conn.Close()
			w.Stop()
			return nil, fmt.Errorf("MONITOR %s: %q, %v", m, line, err)
		}
		_ = conn.SetReadDeadline(time.Time{})
		w.conns = append(w.conns, conn)
		w.wg.Add(1)
		done := make(chan struct{})
		w.followers = append(w.followers, done)
		go w.follow(m, r, done)
	}
	return w, nil
}

// Stop ends the watch; Violations and Seen stay readable.
func (w *SlotWatch) Stop() {
	for _, c := range w.conns {
		c.Close()
	}
	w.wg.Wait()
	for _, c := range w.keyClients {
		c.Close()
	}
}

// Sync returns once every command a watched node ran before it has been
// checked: it sends a marker (ECHO) to each watched node that is up and
// waits until that node's MONITOR has shown it. A node that does not answer
// (killed) is passed over.
func (w *SlotWatch) Sync(ctx context.Context) error {
	for i, c := range w.keyClients {
		mark := fmt.Sprintf("slotwatch-sync-%d-%d", time.Now().UnixNano(), i)
		ch := make(chan struct{})
		w.mu.Lock()
		w.marks[mark] = ch
		w.mu.Unlock()
		if err := c.Echo(ctx, mark).Err(); err != nil {
			w.mu.Lock()
			delete(w.marks, mark)
			w.mu.Unlock()
			continue
		}
		select {
		case <-ch:
		case <-w.followers[i]:
			// Its MONITOR ended (the node died, and may be back unwatched).
		case <-ctx.Done():
			return fmt.Errorf("slotwatch: %s did not show the sync marker: %w", c.Options().Addr, ctx.Err())
		}
	}
	return nil
}

// Checked returns how many scripts and transactions were checked.
func (w *SlotWatch) Checked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checked
}

// Seen returns how many times each script ran, by SHA1 (lower-case hex,
// as redis.Script.Hash returns it).
func (w *SlotWatch) Seen() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.seen)
}

// AppendScriptLog appends the SHA1 of every script seen to the file named
// by EnvScriptLog, when it is set, for test/cluster's coverage check.
func (w *SlotWatch) AppendScriptLog() error { return logScripts(w.Seen()) }

// Violations describes every script or transaction that touched keys of
// more than one slot.
func (w *SlotWatch) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// follow reads one master's MONITOR stream and checks each group of lines.
func (w *SlotWatch) follow(node string, r *bufio.Reader, done chan struct{}) {
	defer w.wg.Done()
	defer close(done)
	var script [][]string          // the open script's lines
	txs := map[string][][]string{} // the open transactions by client
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			w.check(node, script)
			return
		}
		who, args, ok := parseMonitor(strings.TrimSuffix(strings.TrimPrefix(line, "+"), "\r\n"))
		if !ok || len(args) == 0 {
			continue
		}
		if who == "lua" {
			if script != nil {
				script = append(script, args)
			}
			continue
		}
		// Any other line ends the open script: a node runs one atomically.
		w.check(node, script)
		script = nil
		name := strings.ToLower(args[0])
		if tx, open := txs[who]; open {
			tx = append(tx, args)
			txs[who] = tx
			if name == "exec" || name == "discard" {
				w.check(node, tx)
				delete(txs, who)
			}
			continue
		}
		switch name {
		case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
			script = [][]string{args}
			if len(args) > 1 {
				sha := strings.ToLower(args[1])
				if name == "eval" || name == "eval_ro" {
					h := sha1.Sum([]byte(args[1]))
					sha = hex.EncodeToString(h[:])
				}
				w.mu.Lock()
				w.seen[sha]++
				w.mu.Unlock()
			}
		case "multi":
			txs[who] = [][]string{args}
		case "echo":
			if len(args) == 2 && strings.HasPrefix(args[1], "slotwatch-sync-") {
				w.mu.Lock()
				if ch, ok := w.marks[args[1]]; ok {
					close(ch)
					delete(w.marks, args[1])
				}
				w.mu.Unlock()
			}
		}
	}
}

// check records a violation when the group's keys span several slots.
func (w *SlotWatch) check(node string, group [][]string) {
	if len(group) == 0 {
		return
	}
	slots := map[int]string{}
	for i, args := range group {
		var keys []string
		head := strings.ToLower(args[0])
		switch {
		case i == 0 && head != "multi" && len(args) >= 3:
			// EVAL/EVALSHA/FCALL script numkeys key… arg…
			n, err := strconv.Atoi(args[2])
			if err == nil && n >= 0 && 3+n <= len(args) {
				keys = args[3 : 3+n]
			}
		case head == "multi" || head == "exec" || head == "discard":
		default:
			keys = w.keysOf(args)
		}
		for _, k := range keys {
			if _, ok := slots[KeySlot(k)]; !ok {
				slots[KeySlot(k)] = k
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checked++
	if len(slots) > 1 {
		var keys []string
		for s, k := range slots {
			keys = append(keys, fmt.Sprintf("%s (slot %d)", k, s))
		}
		desc := group[0][0]
		if len(group[0]) > 1 && strings.ToLower(group[0][0]) != "multi" {
			desc += " " + abbreviate(group[0][1])
		}
		w.violations = append(w.violations, fmt.Sprintf("%s on %s touched %d slots: %s", desc, node, len(slots), strings.Join(keys, ", ")))
	}
}

// keysOf asks COMMAND GETKEYS for the keys of one command; a command
// without keys has none (GETKEYS refuses a command given without arguments,
// such as TIME, for want of them).
func (w *SlotWatch) keysOf(args []string) []string {
	if len(args) == 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := make([]any, 0, len(args)+2)
	cmd = append(cmd, "command", "getkeys")
	for _, a := range args {
		cmd = append(cmd, a)
	}
	var err error
	for _, c := range w.keyClients {
		var keys []string
		keys, err = c.Do(ctx, cmd...).StringSlice()
		if err == nil {
			return keys
		}
		if strings.Contains(err.Error(), "no key arguments") || strings.Contains(err.Error(), "Invalid arguments") {
			return nil
		}
	}
	// No node answered: a command whose keys are unknown is a violation
	// rather than silently passed.
	w.mu.Lock()
	w.violations = append(w.violations, fmt.Sprintf("keys of %s unknown: %v", abbreviate(strings.Join(args, " ")), err))
	w.mu.Unlock()
	return nil
}

func abbreviate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// parseMonitor splits one MONITOR line, `1700000000.123 [0 127.0.0.1:5000]
// "SET" "k" "v"`, into the client ("lua" for a script's command) and the
// arguments, unquoted as sdscatrepr quoted them.
func parseMonitor(line string) (who string, args []string, ok bool) {
	open := strings.IndexByte(line, '[')
	end := strings.IndexByte(line, ']')
	if open < 0 || end < open {
		return "", nil, false
	}
	_, who, _ = strings.Cut(line[open+1:end], " ")
	rest := line[end+1:]
	for {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			return who, args, true
		}
		if rest[0] != '"' {
			return "", nil, false
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			c := rest[i]
			if c != '\\' || i+1 >= len(rest) {
				b.WriteByte(c)
				continue
			}
			i++
			switch rest[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'x':
				if i+2 < len(rest) {
					if v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8); err == nil {
						b.WriteByte(byte(v))
						i += 2
						continue
					}
				}
				b.WriteByte('x')
			default:
				b.WriteByte(rest[i])
			}
		}
		if i >= len(rest) {
			return "", nil, false
		}
		args = append(args, b.String())
		rest = rest[i+1:]
	}
}

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key,
// or of its hash tag — the part between the first "{" and the next "}" when
// that is not empty — modulo 16384 (redis.io/docs/reference/cluster-spec).
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
