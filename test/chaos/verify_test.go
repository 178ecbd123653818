//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/saga"
)

// Redis keys of the mapping and localization services (docs/architecture.md,
// "Redis keys"); the services keep them unexported, so the contract is
// spelled here once more.
const capacityKey = "slammesh:{mapping}:capacity"

func localizationKey(mission string) string { return "slammesh:{" + mission + "}:localization" }

// violations collects everything the run got wrong, by kind.
type violations struct {
	mu     sync.Mutex
	list   []string
	byKind map[string]int
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

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.list)
}

// stats are the counts the summary prints.
type stats struct {
	byState    map[orchestratorv1.MissionState]int
	byCategory map[string]map[orchestratorv1.MissionState]int
	// faults counts injected faults by "KIND action|compensation".
	faults map[string]int
	// effectCounters is how many <step>:<op> counters were read, and
	// effectMax the largest value among them.
	effectCounters, effectMax int64
	missionsChecked           int
	// resumedMissions were taken over at least once, takeovers times in
	// all ("resumed by" events); resumedOneTrace of them passed checkTrace.
	resumedMissions, takeovers, resumedOneTrace int
	// oneTrace holds the missions that passed checkTrace.
	oneTrace map[string]bool
	// startRetries counts missions whose StartMission needed more than one
	// call; startsFoundExisting those whose successful call found the
	// mission already created by an earlier call whose reply was lost.
	startRetries, startsFoundExisting int
	// startsBy counts the missions by the replica that answered their
	// StartMission.
	startsBy map[string]int
	// slowestStart describes the StartMission that took longest.
	slowestStart               string
	capacityUsed, capacityHeld int64
	// offPlan are the missions that ended otherwise than their faults
	// dictate; judgeOffPlan decides which of them are violations.
	offPlan []offPlan
	// worldRefused are the missions of offPlan whose world was refused
	// without faults too.
	worldRefused []string
	// unfinished are the missions not listed or not ended: postMortem
	// describes them.
	unfinished []string
	// chargesLost are the missions whose map is held without its charge,
	// lost with the accounting's master (checkCapacity).
	chargesLost []string
}

// offPlan is a mission that ended otherwise than its faults dictate.
type offPlan struct {
	p       plan
	mission *orchestratorv1.Mission
}

// verify checks every mission against its plan and Redis, and the global
// invariants, adding what is wrong to v. missions is the last ListMissions
// listing, got the missions as GetMission returned them; accountingKilled
// says the run SIGKILLed the master of the map accounting's slot (see
// checkCapacity).
func verify(ctx context.Context, rdb redis.UniversalClient, plans []plan, starts []startOutcome, missions map[string]*orchestratorv1.Mission, got map[string]gotMission, v *violations, accountingKilled bool) (*stats, error) {
	st := &stats{
		byState:    make(map[orchestratorv1.MissionState]int),
		byCategory: make(map[string]map[orchestratorv1.MissionState]int),
		faults:     make(map[string]int),
		startsBy:   make(map[string]int),
		oneTrace:   make(map[string]bool),
	}
	recs, err := readRecords(ctx, rdb, planIDs(plans))
	if err != nil {
		return nil, err
	}
	var slowest time.Duration
	for i, p := range plans {
		if so := starts[i]; so.took > slowest {
			slowest = so.took
			st.slowestStart = fmt.Sprintf("%s %.2fs (%d calls, retried on %v)", p.id, so.took.Seconds(), so.calls, so.failures)
		}
		for _, f := range p.req.GetFaults().GetFaults() {
			where := "action"
			if f.GetCompensation() {
				where = "compensation"
			}
			st.faults[strings.TrimPrefix(f.GetKind().String(), "FAULT_KIND_")+" "+where]++
		}
		if so := starts[i]; so.err != nil {
			v.add("start", "%s: %v", p.id, so.err)
		} else {
			st.startsBy[so.replica]++
			if so.calls > 1 {
				st.startRetries++
			}
			if !so.created {
				st.startsFoundExisting++
			}
		}
		ms, ok := missions[p.id]
		if !ok {
			v.add("missing", "%s (%s): not listed by ListMissions", p.id, p.category)
			st.unfinished = append(st.unfinished, p.id)
			continue
		}
		state := ms.GetState()
		st.byState[state]++
		if st.byCategory[p.category] == nil {
			st.byCategory[p.category] = make(map[orchestratorv1.MissionState]int)
		}
		st.byCategory[p.category][state]++
		st.missionsChecked++
		if !terminalState(state) {
			rv := recs[p.id]
			v.add("stuck", "%s (%s): %s, owner %s, epoch %s", p.id, p.category, stateName(state), rv.owner, rv.epoch)
			st.unfinished = append(st.unfinished, p.id)
		} else if state != p.want {
			st.offPlan = append(st.offPlan, offPlan{p: p, mission: ms})
		}
		if err := checkEffects(ctx, rdb, p, ms, st, v); err != nil {
			return nil, err
		}
		events, err := progress.Range(ctx, rdb, progress.MissionStream(p.id))
		if err != nil {
			return nil, err
		}
		resumed := checkEvents(p, ms, events, recs[p.id], st, v)
		api := []apiTrace{{"ListMissions", ms.GetTraceId()}}
		if so := starts[i]; so.err == nil {
			api = append(api, apiTrace{"StartMission", so.traceID})
		}
		if g := got[p.id]; g.err != nil {
			v.add("trace", "%s (%s): %v", p.id, p.category, g.err)
		} else {
			api = append(api, apiTrace{"GetMission", g.mission.GetTraceId()})
		}
		if checkTrace(p, events, api, v) {
			st.oneTrace[p.id] = true
			if resumed {
				st.resumedOneTrace++
			}
		}
	}
	return st, checkGlobal(ctx, rdb, plans, st, v, accountingKilled)
}

// checkEffects checks the effect counters (no effect twice, ever) and what
// the mission left in Redis for its final state.
func checkEffects(ctx context.Context, rdb redis.UniversalClient, p plan, ms *orchestratorv1.Mission, st *stats, v *violations) error {
	raw, err := rdb.HGetAll(ctx, barrier.EffectsKey(p.id)).Result()
	if err != nil {
		return fmt.Errorf("effects of %s: %w", p.id, err)
	}
	eff := make(map[string]int64, len(raw))
	for field, val := range raw {
		st.effectCounters++
		n, err := strconv.ParseInt(val, 10, 64)
		step, op, _ := strings.Cut(field, ":")
		switch {
		case err != nil:
			v.add("effects", "%s: counter %s = %q is not a number", p.id, field, val)
		case stepIndex(step) < 0 || (op != "action" && op != "compensation"):
			v.add("effects", "%s: unknown counter %s (want <step>:action|compensation)", p.id, field)
		case n > 1:
			v.add("double-effect", "%s (%s): %s applied %d times", p.id, p.category, field, n)
		}
		st.effectMax = max(st.effectMax, n)
		eff[field] = n
	}
	switch ms.GetState() {
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED:
		for _, s := range steps {
			if eff[s+":action"] != 1 || eff[s+":compensation"] != 0 {
				v.add("completed", "%s (%s): %s effects action=%d compensation=%d, want 1 and 0",
					p.id, p.category, s, eff[s+":action"], eff[s+":compensation"])
			}
		}
		return checkCompletedMap(ctx, rdb, p, ms, v)
	case orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
		for _, s := range steps {
			// Every applied action undone, once; a null compensation counts
			// no effect.
			if eff[s+":compensation"] != eff[s+":action"] {
				v.add("compensated", "%s (%s): %s effects action=%d compensation=%d, want equal",
					p.id, p.category, s, eff[s+":action"], eff[s+":compensation"])
			}
		}
		n, err := rdb.Exists(ctx, mapstore.Key(p.id), localizationKey(p.id)).Result()
		if err != nil {
			return fmt.Errorf("leftovers of %s: %w", p.id, err)
		}
		if n != 0 {
			v.add("compensated", "%s (%s): its map or localization is still in Redis", p.id, p.category)
		}
	}
	return nil
}

// checkCompletedMap wants exactly one allocated map with exactly one merged
// version (current 2: version 1 is the empty grid), the one the API names,
// and a pose per agent.
func checkCompletedMap(ctx context.Context, rdb redis.UniversalClient, p plan, ms *orchestratorv1.Mission, v *violations) error {
	fields, err := rdb.HKeys(ctx, mapstore.Key(p.id)).Result()
	if err != nil {
		return fmt.Errorf("map of %s: %w", p.id, err)
	}
	var versions []string
	for _, f := range fields {
		if len(f) > 1 && f[0] == 'v' {
			if _, err := strconv.Atoi(f[1:]); err == nil {
				versions = append(versions, f)
			}
		}
	}
	slices.Sort(versions)
	vals, err := rdb.HMGet(ctx, mapstore.Key(p.id), "map_id", "current").Result()
	if err != nil {
		return fmt.Errorf("map of %s: %w", p.id, err)
	}
	mapID, _ := vals[0].(string)
	current, _ := vals[1].(string)
	switch {
	case len(fields) == 0:
		v.add("completed", "%s (%s): no map hash", p.id, p.category)
	case current != "2" || !slices.Equal(versions, []string{"v1", "v2"}):
		v.add("completed", "%s (%s): map current=%q versions %v, want 2 and [v1 v2]", p.id, p.category, current, versions)
	case mapID == "" || mapID != ms.GetMapId():
		v.add("completed", "%s (%s): map id %q in Redis, %q in the mission", p.id, p.category, mapID, ms.GetMapId())
	}
	n, err := rdb.HLen(ctx, localizationKey(p.id)).Result()
	if err != nil {
		return fmt.Errorf("localization of %s: %w", p.id, err)
	}
	if int(n) != p.agents {
		v.add("completed", "%s (%s): %d agent poses stored, want %d", p.id, p.category, n, p.agents)
	}
	return nil
}

// checkEvents wants exactly one terminal event, matching the final state (a
// fenced-out owner must not have announced an end of its own), and
// takeovers whose epochs only grow, none beyond the record's: every claim
// bumps the epoch, and a claimer killed before its first write leaves a
// bump without an event, so the record may be ahead, never behind. It
// reports whether the mission was taken over.
func checkEvents(p plan, ms *orchestratorv1.Mission, events []progress.Event, rv recordView, st *stats, v *violations) (resumed bool) {
	var terminal []progress.Type
	var epochs []int64
	for _, e := range events {
		if e.Type.Terminal() {
			terminal = append(terminal, e.Type)
		}
		if e.Type != progress.MissionStarted || !strings.HasPrefix(e.Message, saga.MessageResumedPrefix) {
			continue
		}
		_, after, _ := strings.Cut(e.Message, ", epoch ")
		num, _, _ := strings.Cut(after, ",")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			v.add("events", "%s (%s): resumption message %q names no epoch", p.id, p.category, e.Message)
			continue
		}
		epochs = append(epochs, n)
	}
	if len(epochs) > 0 {
		st.resumedMissions++
		st.takeovers += len(epochs)
	}
	recEpoch, _ := strconv.ParseInt(rv.epoch, 10, 64)
	growing := true
	for i, n := range epochs {
		if (i == 0 && n < 2) || (i > 0 && n <= epochs[i-1]) || n > recEpoch {
			growing = false
		}
	}
	if !growing {
		v.add("events", "%s (%s): takeovers at epochs %v, record at epoch %d: want growing epochs from 2 up to the record's",
			p.id, p.category, epochs, recEpoch)
	}
	if !terminalState(ms.GetState()) {
		return len(epochs) > 0
	}
	want := map[orchestratorv1.MissionState]progress.Type{
		orchestratorv1.MissionState_MISSION_STATE_COMPLETED:   progress.MissionCompleted,
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATED: progress.MissionCompensated,
		orchestratorv1.MissionState_MISSION_STATE_FAILED:      progress.MissionFailed,
	}[ms.GetState()]
	if len(terminal) != 1 || terminal[0] != want {
		v.add("events", "%s (%s): terminal events %v, want exactly [%s]", p.id, p.category, terminal, want)
	}
	return len(epochs) > 0
}

// apiTrace is the trace id one API call returned for a mission.
type apiTrace struct {
	call, traceID string
}

// checkTrace wants every event of the mission, whichever process wrote it
// and whichever run of the saga it belongs to, to carry one and the same
// valid trace id, and the API to report that id: a mission resumed after a
// crash continues under its trace (issue 4). It reports whether all holds.
func checkTrace(p plan, events []progress.Event, api []apiTrace, v *violations) bool {
	if len(events) == 0 {
		v.add("trace", "%s (%s): no events to carry a trace id", p.id, p.category)
		return false
	}
	byID := make(map[string]int)
	for _, e := range events {
		byID[strconv.Quote(e.TraceID)]++
	}
	if len(byID) != 1 {
		i := slices.IndexFunc(events, func(e progress.Event) bool { return e.TraceID != events[0].TraceID })
		e := events[i]
		v.add("trace", "%s (%s): %d events carry %d trace ids: %s; event %d (%s by %s, %q) is the first to differ from the first",
			p.id, p.category, len(events), len(byID), fmtCounts(byID), i, e.Type, e.Service, e.Message)
		return false
	}
	id := events[0].TraceID
	if !validTraceID(id) {
		v.add("trace", "%s (%s): trace id %q is not 32 lowercase hex digits, not all zero", p.id, p.category, id)
		return false
	}
	ok := true
	for _, a := range api {
		if a.traceID != id {
			v.add("trace", "%s (%s): %s returned trace id %q, the events carry %q", p.id, p.category, a.call, a.traceID, id)
			ok = false
		}
	}
	return ok
}

// validTraceID reports whether id is a W3C trace id: 32 lowercase hex
// digits, not all zero.
func validTraceID(id string) bool {
	if len(id) != 32 || strings.Trim(id, "0") == "" {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}

// activeDrain bounds the wait for recovery to drop the index entries of
// finished sagas: two lease TTLs (3 s by default) past an entry's score,
// itself a TTL ahead, plus recovery scans, with room for a loaded machine.
const activeDrain = 30 * time.Second

// checkGlobal wants no saga left in the active index and the capacity
// counter equal to the cells of the maps still held.
func checkGlobal(ctx context.Context, rdb redis.UniversalClient, plans []plan, st *stats, v *violations, accountingKilled bool) error {
	// The active-lease index is a superset of the unfinished sagas: the
	// entry of a saga whose end was written while its process died, or
	// while the master of its shard was down, stays until a recovery scan
	// finds the record finished, two lease TTLs past the entry's score
	// (internal/saga, dropGrace). Wait that long, bounded, before calling
	// an entry stuck.
	deadline := time.Now().Add(activeDrain)
	for {
		left := map[string][]string{}
		for _, key := range saga.ActiveShardKeys() {
			active, err := rdb.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				return fmt.Errorf("active sagas: %w", err)
			}
			if len(active) > 0 {
				left[key] = active
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			for key, active := range left {
				v.add("active", "%d sagas still in %s %s after every mission ended: %v", len(active), key, activeDrain, head(active, 10))
			}
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return checkCapacity(ctx, rdb, plans, st, v, accountingKilled)
}

func terminalState(s orchestratorv1.MissionState) bool {
	switch s {
	case orchestratorv1.MissionState_MISSION_STATE_COMPLETED,
		orchestratorv1.MissionState_MISSION_STATE_COMPENSATED,
		orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return true
	}
	return false
}

func stateName(s orchestratorv1.MissionState) string {
	return strings.TrimPrefix(s.String(), "MISSION_STATE_")
}

func planIDs(plans []plan) []string {
	ids := make([]string, len(plans))
	for i, p := range plans {
		ids[i] = p.id
	}
	return ids
}

func head[T any](s []T, n int) []T { return s[:min(n, len(s))] }
