//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/slammesh/slammesh/gen/slammesh/events/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/saga"
)

// steps are the saga's steps (docs/architecture.md, "Saga steps").
var steps = []string{"allocate_map", "localize_agents", "merge_maps"}

// violations collects everything the run got wrong, by kind, and the
// missions' by cause, so that hundreds of missions failing one way read as
// one line.
type violations struct {
	mu sync.Mutex
	// list holds the run's violations, missions those of single missions.
	list, missions []string
	byKind         map[string]int
	byCause        map[string]int
}

func (v *violations) add(kind, format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byKind == nil {
		v.byKind = make(map[string]int)
	}
	v.byKind[kind]++
	v.list = append(v.list, kind+": "+fmt.Sprintf(format, args...))
}

// addMission records a single mission's violation, counted under cause
// too.
func (v *violations) addMission(kind, cause, format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byKind == nil {
		v.byKind = make(map[string]int)
		v.byCause = make(map[string]int)
	}
	if v.byCause == nil {
		v.byCause = make(map[string]int)
	}
	v.byKind[kind]++
	v.byCause[kind+": "+cause]++
	v.missions = append(v.missions, kind+": "+fmt.Sprintf(format, args...))
}

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.list) + len(v.missions)
}

// missionKeyPattern matches every per-mission key of the soak's missions
// (docs/architecture.md, "Redis keys": slammesh:{<mission_id>}:<what>).
const missionKeyPattern = "slammesh:{soak-*"

// Global keys of docs/architecture.md, "Redis keys", spelled here so that
// the soak depends on the documented layout only: the count of map cells
// held, and the index of unfinished sagas.
const (
	capacityKey = "slammesh:{mapping}:capacity"
)

// leftover is what Redis holds of the missions past their retention.
type leftover struct {
	// keys are the per-mission keys of soak missions left.
	keys []string
	// cellsHeld is the capacity counter: cells of maps still charged.
	cellsHeld int64
	// active counts sagas still in the active index.
	active int64
}

func (l leftover) empty() bool { return len(l.keys) == 0 && l.cellsHeld == 0 && l.active == 0 }

// awaitExpiry waits until notBefore (the last mission's end plus the
// retention) and then until nothing of the soak's missions is left, or
// grace has passed, and returns what is left. SCAN is what looks: it also
// reclaims keys past their expiry that Redis's active expiry has not
// reached yet, so DBSIZE afterwards counts only live keys.
func awaitExpiry(ctx context.Context, m *mesh, notBefore time.Time, grace time.Duration, log *reporter) (leftover, error) {
	deadline := notBefore.Add(grace)
	lastReport := time.Now()
	for {
		var (
			l   leftover
			err error
		)
		if l.keys, err = scanKeys(ctx, m, missionKeyPattern); err != nil {
			return l, err
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l.cellsHeld, err = m.rdb.Get(cctx, capacityKey).Int64()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		// The active-lease index is sharded (saga.ActiveShardKeys).
		for _, key := range saga.ActiveShardKeys() {
			if err != nil {
				break
			}
			var n int64
			n, err = m.rdb.ZCard(cctx, key).Result()
			l.active += n
		}
		cancel()
		if err != nil {
			return l, fmt.Errorf("read the capacity counter and the active sagas: %w", err)
		}
		now := time.Now()
		if (l.empty() && !now.Before(notBefore)) || now.After(deadline) {
			return l, nil
		}
		if time.Since(lastReport) >= 10*time.Second {
			log.printf("left of the soak missions: %d keys, %d cells held, %d active sagas; the retention window ends in %.0fs",
				len(l.keys), l.cellsHeld, l.active, time.Until(notBefore).Seconds())
			lastReport = time.Now()
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return l, err
		}
	}
}

// scanKeys returns every key matching pattern.
func scanKeys(ctx context.Context, m *mesh, pattern string) ([]string, error) {
	var out []string
	cursor := uint64(0)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		keys, next, err := m.rdb.Scan(cctx, cursor, pattern, 1000).Result()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("SCAN %s: %w", pattern, err)
		}
		out = append(out, keys...)
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// stats are the counts the summary prints.
type stats struct {
	// byClass counts final states by "kind/mode".
	byClass map[string]map[string]int
	// startRetried counts missions whose StartMission was called again
	// after a transient failure; transient counts such calls by RPC.
	startRetried int
	transient    map[string]int
	// waits that returned the end, of all wait missions.
	waitsEnded, waits int
	// watchers: missions followed, streams opened in all, and the errors
	// that broke them by code.
	watchers, watchStreams int
	watchErrs              map[codes.Code]int
	cancels, cancelsOK     int
	effectCounters         int
	effectMax              int64
	durations              []time.Duration
}

// verifyMissions checks every mission's outcome, effects and watcher.
func verifyMissions(missions []*mission, faults []fault, v *violations) *stats {
	st := &stats{byClass: make(map[string]map[string]int), transient: make(map[string]int), watchErrs: make(map[codes.Code]int)}
	for _, ms := range missions {
		ms.mu.Lock()
		class := ms.kind.name + "/" + string(ms.mode)
		if st.byClass[class] == nil {
			st.byClass[class] = make(map[string]int)
		}
		for rpc, n := range ms.transient {
			st.transient[rpc] += n
		}
		if ms.startCalls > 1 {
			st.startRetried++
		}
		near := nearFaults(faults, ms.startedAt, ms.endedAt)
		ms.mu.Unlock()
		want := ms.want()
		ms.mu.Lock()
		state := "start-failed"
		switch {
		case ms.startErr != nil:
			v.addMission("start", ms.kind.name+" "+status.Code(ms.startErr).String(), "%s (%s): %v%s", ms.id, class, ms.startErr, near)
		case ms.final == nil:
			state = "stuck"
			v.addMission("stuck", "never read with GetMission", "%s (%s): never read with GetMission%s", ms.id, class, near)
		default:
			s := ms.final.GetState()
			state = stateName(s)
			e := ms.final.GetError()
			switch {
			case s == orchestratorv1.MissionState_MISSION_STATE_FAILED:
				v.addMission("failed", fmt.Sprintf("%s %s %s", ms.kind.name, e.GetCode(), e.GetReason()),
					"%s (%s): FAILED: %s %s %q%s", ms.id, class, e.GetCode(), e.GetReason(), e.GetMessage(), near)
			case !terminal(s, ms.cancelled):
				state = "stuck " + state
				v.addMission("stuck", fmt.Sprintf("%s %s", ms.kind.name, stateName(s)),
					"%s (%s): still %s when the settle bound passed%s", ms.id, class, stateName(s), near)
			case s != want:
				v.addMission("outcome", fmt.Sprintf("%s ended %s, want %s: %s %s", ms.kind.name, stateName(s), stateName(want), e.GetCode(), e.GetReason()),
					"%s (%s): ended %s, want %s: %s %s %q%s", ms.id, class, stateName(s), stateName(want), e.GetCode(), e.GetReason(), e.GetMessage(), near)
			}
			if !ms.endedAt.IsZero() {
				st.durations = append(st.durations, ms.endedAt.Sub(ms.startedAt))
			}
		}
		st.byClass[class][state]++
		if ms.startErr == nil {
			checkEffects(ms, st, v)
		}
		switch ms.mode {
		case modeWait:
			st.waits++
			if ms.waitEnded {
				st.waitsEnded++
			}
		case modeCancel:
			st.cancels++
			if ms.cancelled {
				st.cancelsOK++
			} else if ms.startErr == nil {
				v.addMission("cancel", "CancelMission never answered "+status.Code(ms.cancelErr).String(), "%s (%s): CancelMission never answered: %v%s", ms.id, class, ms.cancelErr, near)
			}
		case modeWatch:
			st.watchers++
			st.watchStreams += ms.watchStreams
			for c, n := range ms.watchErrs {
				st.watchErrs[c] += n
			}
			checkWatch(ms, class, near, v)
		}
		ms.mu.Unlock()
	}
	return st
}

// checkEffects wants every effect applied at most once, and the effects to
// match the end: a completed mission applied each action once and undid
// none, a compensated one undid exactly what it applied. ms.mu is held.
func checkEffects(ms *mission, st *stats, v *violations) {
	if ms.effectsErr != nil {
		v.addMission("effects", "effects hash not read", "%s: effects hash not read: %v", ms.id, ms.effectsErr)
		return
	}
	eff, err := effectCounts(ms.effects)
	if err != nil {
		v.addMission("effects", "effects hash unparsable", "%s: %v", ms.id, err)
		return
	}
	for field, n := range eff {
		st.effectCounters++
		st.effectMax = max(st.effectMax, n)
		if n > 1 {
			v.addMission("double-effect", field, "%s (%s/%s): %s applied %d times", ms.id, ms.kind.name, ms.mode, field, n)
		}
	}
	if ms.final == nil {
		return
	}
	switch ms.final.GetState() {
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED:
		for _, s := range steps {
			if eff[s+":action"] != 1 || eff[s+":compensation"] != 0 {
				v.addMission("effects", "COMPLETED with "+s+" effects not 1 and 0", "%s (%s/%s): COMPLETED with %s action=%d compensation=%d, want 1 and 0",
					ms.id, ms.kind.name, ms.mode, s, eff[s+":action"], eff[s+":compensation"])
			}
		}
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
		for _, s := range steps {
			if eff[s+":action"] != eff[s+":compensation"] {
				v.addMission("effects", "COMPENSATED with "+s+" effects not undone once", "%s (%s/%s): COMPENSATED with %s action=%d compensation=%d, want equal",
					ms.id, ms.kind.name, ms.mode, s, eff[s+":action"], eff[s+":compensation"])
			}
		}
	}
}

// checkWatch wants the watcher to have seen the terminal event of the end
// the mission reached. ms.mu is held.
func checkWatch(ms *mission, class, near string, v *violations) {
	if ms.startErr != nil || ms.final == nil {
		return
	}
	want := map[orchestratorv1.MissionState]string{
		orchestratorv1.MissionState_MISSION_STATE_COMPLETED:   eventsv1.EventType_EVENT_TYPE_MISSION_COMPLETED.String(),
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATED: eventsv1.EventType_EVENT_TYPE_MISSION_COMPENSATED.String(),
		orchestratorv1.MissionState_MISSION_STATE_FAILED:      eventsv1.EventType_EVENT_TYPE_MISSION_FAILED.String(),
	}[ms.final.GetState()]
	switch {
	case want == "":
	case ms.watchTerminal == "":
		v.addMission("watch", "no terminal event", "%s (%s): the watcher saw no terminal event in %d streams (errors %v)%s", ms.id, class, ms.watchStreams, ms.watchErrs, near)
	case ms.watchTerminal != want:
		v.addMission("watch", "another terminal event", "%s (%s): the watcher saw %s, the mission ended %s", ms.id, class, ms.watchTerminal, stateName(ms.final.GetState()))
	}
}

// nearFaults names the faults that overlapped a mission's life (from 10 s
// before its start, so a service still reconnecting counts), for the
// violation lines.
func nearFaults(faults []fault, from, to time.Time) string {
	if to.IsZero() {
		to = time.Now()
	}
	var names []string
	for _, f := range faults {
		if !f.start.After(to) && f.start.Add(f.took).Add(10*time.Second).After(from) {
			names = append(names, fmt.Sprintf("%s at +%.0fs", f.what, f.at.Seconds()))
		}
	}
	if len(names) == 0 {
		return " [no fault near]"
	}
	return " [near: " + strings.Join(names, ", ") + "]"
}

// verifyAfterRetention checks the mesh once every mission's retention has
// passed: no key of a mission left, no mission listed or readable, and
// Redis keys and memory, goroutines and fds flat.
func verifyAfterRetention(ctx context.Context, m *mesh, missions []*mission, l leftover, base, warm, final sample, v *violations) {
	if l.active > 0 {
		v.add("stuck", "%d sagas still in the active-lease index (saga.ActiveShardKeys) once every mission ended and expired", l.active)
	}
	if l.cellsHeld != 0 {
		v.add("capacity", "%s = %d cells once every mission's map expired, want 0", capacityKey, l.cellsHeld)
	}
	if left := l.keys; len(left) > 0 {
		byWhat := make(map[string]int)
		owners := make(map[string]bool)
		for _, k := range left {
			id, what, _ := strings.Cut(strings.TrimPrefix(k, "slammesh:{"), "}:")
			owners[id] = true
			if strings.HasPrefix(what, "barrier:") {
				what = "barrier:<step>"
			}
			byWhat[what]++
		}
		v.add("retention", "%d keys of %d missions left past the retention window (%s), e.g. %v",
			len(left), len(owners), fmtCounts(byWhat), head(slices.Sorted(slices.Values(left)), 5))
	}
	listed, err := listedSoakMissions(ctx, m)
	switch {
	case err != nil:
		v.add("retention", "ListMissions after the retention window: %v", err)
	case listed > 0:
		v.add("retention", "ListMissions still lists %d of the %d missions past their retention window", listed, len(missions))
	}
	if len(missions) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.rpc(0).GetMission(cctx, &orchestratorv1.GetMissionRequest{MissionId: missions[0].id})
		cancel()
		if status.Code(err) != codes.NotFound {
			v.add("retention", "GetMission %s past its retention window: %v, want NOT_FOUND", missions[0].id, status.Code(err))
		}
	}
	switch {
	case final.keys == unknown:
		v.add("keys", "final DBSIZE not read")
	case final.keys > *flagMaxKeys:
		v.add("keys", "%d keys in Redis once every mission expired, want at most %d (baseline before the first mission: %d)", final.keys, *flagMaxKeys, base.keys)
	}
	switch {
	case final.usedMemory == unknown:
		v.add("memory", "final used_memory not read")
	case final.usedMemory > base.usedMemory+*flagMemSlack:
		v.add("memory", "used_memory %s once every mission expired, baseline %s: grew by %s, want at most %s (dataset %s, baseline %s)",
			kib(final.usedMemory), kib(base.usedMemory), kib(final.usedMemory-base.usedMemory), kib(*flagMemSlack),
			kib(final.usedMemoryDataset), kib(base.usedMemoryDataset))
	}
	for i, r := range m.replicas {
		w, f := warm.orch[i], final.orch[i]
		switch {
		case f.goroutines == unknown || f.fds == unknown:
			v.add("sample", "final figures of %s not read: %+v", r.name, f)
			continue
		case f.goroutines > w.goroutines+*flagGoroutines:
			v.add("goroutines", "%s #%d: %d goroutines idle at the end, %d idle after the warm-up (slack %d)", r.name, f.incarnation, f.goroutines, w.goroutines, *flagGoroutines)
		}
		if f.fds > w.fds+*flagFDs {
			v.add("fds", "%s #%d: %d open fds idle at the end, %d idle after the warm-up (slack %d)", r.name, f.incarnation, f.fds, w.fds, *flagFDs)
		}
	}
}

// listedSoakMissions counts the soak's missions ListMissions still lists.
func listedSoakMissions(ctx context.Context, m *mesh) (int, error) {
	n, token := 0, ""
	for range 1000 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := m.rpc(0).ListMissions(cctx, &orchestratorv1.ListMissionsRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return n, err
		}
		for _, ms := range resp.GetMissions() {
			if strings.HasPrefix(ms.GetMissionId(), "soak-") {
				n++
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return n, nil
		}
	}
	return n, fmt.Errorf("ListMissions: more than 1000 pages")
}

func printSummary(w io.Writer, st *stats, missions []*mission, faults []fault, base, warm, final sample, m *mesh, v *violations, took time.Duration) {
	fmt.Fprintf(w, "\n==== soak summary (seed %d, %d missions, workload %s, retention %s, %.1fs in all)\n",
		*flagSeed, len(missions), *flagDuration, *flagRetention, took.Seconds())
	fmt.Fprintf(w, "missions by kind/mode and end:\n")
	for _, class := range slices.Sorted(maps.Keys(st.byClass)) {
		total := 0
		for _, n := range st.byClass[class] {
			total += n
		}
		fmt.Fprintf(w, "  %-26s %5d  %s\n", class, total, fmtCounts(st.byClass[class]))
	}
	fmt.Fprintf(w, "faults:\n")
	for _, f := range faults {
		fmt.Fprintf(w, "  +%6.1fs %-24s back in %5.1fs  %s\n", f.at.Seconds(), f.what, f.took.Seconds(), f.detail)
	}
	fmt.Fprintf(w, "clients: %d missions needed StartMission again; transient failures retried by RPC: %s\n", st.startRetried, fmtCounts(st.transient))
	fmt.Fprintf(w, "         wait: %d/%d StartMission(wait) calls returned the end; cancel: %d/%d CancelMission answered\n", st.waitsEnded, st.waits, st.cancelsOK, st.cancels)
	errs := make(map[string]int)
	for c, n := range st.watchErrs {
		errs[c.String()] = n
	}
	fmt.Fprintf(w, "         watch: %d watchers opened %d streams; breaks by code: %s\n", st.watchers, st.watchStreams, fmtCounts(errs))
	if len(st.durations) > 0 {
		slices.Sort(st.durations)
		q := func(p float64) time.Duration {
			return st.durations[min(len(st.durations)-1, int(p*float64(len(st.durations))))]
		}
		fmt.Fprintf(w, "mission time (client start to seen ended): p50 %s, p95 %s, max %s\n",
			q(0.5).Round(time.Millisecond), q(0.95).Round(time.Millisecond), st.durations[len(st.durations)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(w, "effects: %d <step>:<op> counters read as their missions ended, max %d (want <= 1)\n", st.effectCounters, st.effectMax)
	fmt.Fprintf(w, "flatness (baseline: before the first mission; warm: idle after %d warm-up missions; final: past the retention window):\n", warmup)
	fmt.Fprintf(w, "  redis keys        baseline %s, warm %s, final %s (bound %d)\n", fig(base.keys), fig(warm.keys), fig(final.keys), *flagMaxKeys)
	fmt.Fprintf(w, "  redis used_memory baseline %s, warm %s, final %s (bound baseline + %s); dataset %s, %s, %s\n",
		kib(base.usedMemory), kib(warm.usedMemory), kib(final.usedMemory), kib(*flagMemSlack),
		kib(base.usedMemoryDataset), kib(warm.usedMemoryDataset), kib(final.usedMemoryDataset))
	for i, r := range m.replicas {
		fmt.Fprintf(w, "  %-17s goroutines warm %s, final %s (#%d; slack %d); fds warm %s, final %s (slack %d)\n", r.name,
			fig(warm.orch[i].goroutines), fig(final.orch[i].goroutines), final.orch[i].incarnation, *flagGoroutines,
			fig(warm.orch[i].fds), fig(final.orch[i].fds), *flagFDs)
	}
	printKeysLeft(w, m)
	n := v.count()
	fmt.Fprintf(w, "violations: %d", n)
	if n == 0 {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, " (%s)\n", fmtCounts(v.byKind))
	if len(v.byCause) > 0 {
		fmt.Fprintf(w, "missions' violations by cause:\n")
		for _, c := range slices.Sorted(maps.Keys(v.byCause)) {
			fmt.Fprintf(w, "  %5d  %s\n", v.byCause[c], c)
		}
	}
	for _, line := range v.list {
		fmt.Fprintf(w, "  - %s\n", line)
	}
	for _, line := range head(v.missions, 40) {
		fmt.Fprintf(w, "  - %s\n", line)
	}
	if len(v.missions) > 40 {
		fmt.Fprintf(w, "  … and %d more missions\n", len(v.missions)-40)
	}
}

// printKeysLeft lists what Redis still holds, with each key's size, when
// that is a short list (the global keys once every mission expired).
func printKeysLeft(w io.Writer, m *mesh) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := scanKeys(ctx, m, "*")
	if err != nil || len(keys) > 40 {
		return
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "  keys left:\n")
	for _, k := range keys {
		typ, _ := m.rdb.Type(ctx, k).Result()
		var n int64
		switch typ {
		case "stream":
			n, _ = m.rdb.XLen(ctx, k).Result()
		case "zset":
			n, _ = m.rdb.ZCard(ctx, k).Result()
		case "hash":
			n, _ = m.rdb.HLen(ctx, k).Result()
		case "set":
			n, _ = m.rdb.SCard(ctx, k).Result()
		case "list":
			n, _ = m.rdb.LLen(ctx, k).Result()
		}
		size, _ := m.rdb.MemoryUsage(ctx, k).Result()
		expiry := "none"
		if ttl, err := m.rdb.TTL(ctx, k).Result(); err == nil && ttl > 0 {
			expiry = ttl.String()
		}
		fmt.Fprintf(w, "    %-40s %-6s %7d entries %8s  expires in %s\n", k, typ, n, kib(size), expiry)
	}
}

func stateName(s orchestratorv1.MissionState) string {
	return strings.TrimPrefix(s.String(), "MISSION_STATE_")
}

// fmtCounts prints a count per name, names sorted.
func fmtCounts(c map[string]int) string {
	if len(c) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(c))
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

func head[T any](s []T, n int) []T { return s[:min(n, len(s))] }
