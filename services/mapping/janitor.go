package mapping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/saga"
)

// janitorPage is how many maps held one round trip of a pass examines.
const janitorPage = 500

// RunJanitor runs a janitor pass (see reclaim) every Config.JanitorInterval
// until ctx ends. Every mapping replica may run it: its writes are
// idempotent.
func (s *Server) RunJanitor(ctx context.Context) {
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.reclaim(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "mapping janitor pass failed; retrying at the next pass", "error", err.Error())
		case n > 0:
			s.log.DebugContext(ctx, "finished missions' maps left the in-flight budget", "maps", n)
		}
	}
}

// reclaim is one janitor pass over the maps held. A charge is the map of
// one saga of a mission (mapstore.Charge): the map, the barrier mark and
// the saga record it reads count only when that saga wrote them, so a
// mission deleted and started again under the same id is never mistaken
// for the one charged, and the pass's writes name the charge they settle.
// It
//   - retains the map of each saga that has completed (its cells leave the
//     in-flight budget for the retained one);
//   - uncharges a map that is gone (its mission's keys expired with its
//     retention, DeleteMission deleted them, another saga of the mission
//     replaced it, or a release died before uncharging it), or that never
//     appeared: a reservation older than Config.ReservationGrace whose
//     step has no action mark of its saga (its allocation died between the
//     reservation and the barrier's commit, which creates the map with the
//     mark). A younger reservation without its map is an allocation in
//     progress, and is left alone, unless its saga record is gone (or is
//     another saga's) and the barrier checks the record (WithOwner): the
//     allocation of a mission deleted or expired since can never commit,
//     and its charge must not hold the budget for the grace period;
//   - clears the reserved mark of a charge whose map it finds
//     (mapstore.Confirm). A map is never deleted for want of a saga record:
//     the record and the map expire together, and the step services'
//     barrier refuses to create a map for a mission without a record;
//   - then evicts the oldest retained maps while the retained budget is
//     exceeded — only maps of missions still completed.
//
// A running, compensating or failed mission's map stays in flight. It
// returns how many maps it moved out of the in-flight budget.
func (s *Server) reclaim(ctx context.Context) (int, error) {
	if err := s.takeTurn(ctx); err != nil {
		return 0, err
	}
	defer func() { <-s.reclaiming }()
	return s.pass(ctx, false)
}

// reclaimSince is the janitor pass of an allocation refused for capacity
// once passes had reached begun: when a pass begun after that has ended
// without error by the time this call's turn comes, its result is this
// call's too, and it runs none of its own. Without this, a burst of
// allocations against a budget full of finished missions' maps ran one
// full pass each, in turn: seconds of stall at a few hundred in flight.
func (s *Server) reclaimSince(ctx context.Context, begun int64) error {
	if err := s.takeTurn(ctx); err != nil {
		return err
	}
	defer func() { <-s.reclaiming }()
	if s.reclaimed.Load() > begun {
		return nil
	}
	_, err := s.pass(ctx, true)
	return err
}

// takeTurn waits for the turn of a janitor pass, or for ctx to end.
func (s *Server) takeTurn(ctx context.Context) error {
	select {
	case s.reclaiming <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pass is one janitor pass (reclaim), the turn held. inFlight limits it to
// the maps in flight, which is all an allocation refused for capacity
// needs: the retained maps, however many, are then not read (the periodic
// pass settles them).
func (s *Server) pass(ctx context.Context, inFlight bool) (int, error) {
	n := s.passes.Add(1)
	freed, err := s.settleAll(ctx, inFlight)
	s.freed.Add(int64(freed))
	if err == nil {
		s.reclaimed.Store(n)
	}
	return freed, err
}

// settleAll is reclaim's work: it settles every page of charges (only
// those in flight, with inFlight), then evicts.
func (s *Server) settleAll(ctx context.Context, inFlight bool) (int, error) {
	freed := 0
	if inFlight {
		charges, err := mapstore.ListInFlight(ctx, s.rdb)
		if err != nil {
			return 0, err
		}
		for start := 0; start < len(charges); start += janitorPage {
			n, _, err := s.settlePage(ctx, charges[start:min(start+janitorPage, len(charges))])
			freed += n
			if err != nil {
				return freed, err
			}
		}
		return freed, s.evict(ctx)
	}
	for start := int64(0); ; {
		page, err := mapstore.ListCharged(ctx, s.rdb, start, janitorPage)
		if err != nil {
			return freed, err
		}
		if len(page) == 0 {
			break
		}
		n, dropped, err := s.settlePage(ctx, page)
		freed += n
		if err != nil {
			return freed, err
		}
		// Dropped maps left the sorted set: the next page starts earlier.
		start += int64(len(page) - dropped)
	}
	return freed, s.evict(ctx)
}

// settlePage settles one page of charges (lookup, then settle) and returns
// how many maps left the in-flight budget and how many charges it dropped.
func (s *Server) settlePage(ctx context.Context, page []mapstore.Charged) (freed, dropped int, err error) {
	states, exists, marked, err := s.lookup(ctx, page)
	if err != nil {
		return 0, 0, err
	}
	settled, err := s.settle(ctx, page, states, exists, marked)
	if err != nil {
		return 0, 0, err
	}
	for _, st := range settled {
		c := page[st.i]
		switch {
		case st.dropped > 0:
			dropped++
			if c.Retained.IsZero() {
				freed++
			}
			s.log.InfoContext(ctx, "map no longer in Redis uncharged", "mission_id", c.MissionID, "saga_id", c.SagaID, "cells", st.dropped)
		case st.retained > 0:
			freed++
		}
	}
	return freed, dropped, nil
}

// settlement is what the janitor did to one charge of a page: the cells
// it uncharged or retained.
type settlement struct {
	i                 int // index in the page
	dropped, retained int64
}

// settle writes, in one round trip, what a page of charges needs (see
// reclaim): each confirmation of a map seen, then the drop of a map gone or
// the retention of a completed mission's map. Every write is idempotent and
// answers for itself, so a page that fails is simply settled again at the
// next pass.
func (s *Server) settle(ctx context.Context, page []mapstore.Charged, states []string, exists, marked []bool) ([]settlement, error) {
	type queued struct {
		i    int
		drop bool
		cmd  *redis.Cmd
	}
	var writes []queued
	now := time.Now()
	pipe := s.rdb.Pipeline()
	for i, c := range page {
		if exists[i] && !c.Reserved.IsZero() {
			mapstore.QueueConfirm(ctx, pipe, c.Charge)
		}
		switch {
		case !exists[i] && !c.Reserved.IsZero() && !marked[i] && time.Since(c.Reserved) < s.cfg.ReservationGrace &&
			(states[i] != "" || !s.barrier.Owned()):
			// An allocation between its reservation and its commit. Not
			// when its saga record is gone, or is another saga's, and the
			// barrier checks it: that commit can never happen.
		case !exists[i]:
			writes = append(writes, queued{i: i, drop: true, cmd: mapstore.QueueDrop(ctx, pipe, c.Charge)})
		case states[i] == string(saga.Completed) && c.Retained.IsZero():
			writes = append(writes, queued{i: i, cmd: mapstore.QueueRetain(ctx, pipe, c.Charge, now)})
		}
	}
	if pipe.Len() == 0 {
		return nil, nil
	}
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, fmt.Errorf("settle the maps held: %w", err)
		}
	}
	out := make([]settlement, 0, len(writes))
	for _, w := range writes {
		n, err := mapstore.CellsOf(w.cmd, page[w.i].Charge)
		if err != nil {
			return nil, err
		}
		st := settlement{i: w.i, retained: n}
		if w.drop {
			st = settlement{i: w.i, dropped: n}
		}
		out = append(out, st)
	}
	return out, nil
}

// lookup reads, for each map held, its saga's state ("" when the record is
// gone, or is another saga's), whether the saga's map still exists, and
// whether the allocation's barrier has the saga's action mark (the map was
// created), in one round trip.
func (s *Server) lookup(ctx context.Context, page []mapstore.Charged) (states []string, exists, marked []bool, err error) {
	records := make([]*redis.SliceCmd, len(page))
	maps := make([]*redis.SliceCmd, len(page))
	marks := make([]*redis.SliceCmd, len(page))
	pipe := s.rdb.Pipeline()
	for i, c := range page {
		records[i] = queueState(ctx, pipe, c.MissionID)
		maps[i] = mapstore.QueueOwner(ctx, pipe, c.MissionID)
		// The barrier hash's fields: see barrier.Key.
		marks[i] = pipe.HMGet(ctx, barrier.Key(c.MissionID, Step), "action", "saga")
	}
	// Each command carries its own error, checked below: one failed read
	// (its Cluster node down) must not pass for a map that is gone.
	_, _ = pipe.Exec(ctx)
	states, exists, marked = make([]string, len(page)), make([]bool, len(page)), make([]bool, len(page))
	for i, c := range page {
		if states[i], err = stateOf(records[i], c.Charge); err != nil {
			return nil, nil, nil, err
		}
		owner, ok, err := mapstore.OwnerOf(maps[i])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read the maps held: %w", err)
		}
		exists[i] = ok && c.Owns(owner)
		mark, err := marks[i].Result()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read the barrier marks of the maps held: %w", err)
		}
		marked[i] = len(mark) == 2 && mark[0] != nil && c.Owns(str(mark[1]))
	}
	return states, exists, marked, nil
}

// queueState reads, or queues in a pipeline r, the state and saga id of
// the mission's saga record (its fields: see internal/saga's record), for
// stateOf.
func queueState(ctx context.Context, r redis.Cmdable, missionID string) *redis.SliceCmd {
	return r.HMGet(ctx, saga.RecordKey(missionID), "state", "saga_id")
}

// stateOf decodes queueState's read for charge c: the saga's state, or ""
// when the record is gone or is another saga's.
func stateOf(cmd *redis.SliceCmd, c mapstore.Charge) (string, error) {
	v, err := cmd.Result()
	if err != nil {
		return "", fmt.Errorf("read the saga of %s: %w", c, err)
	}
	if len(v) != 2 || !c.Owns(str(v[1])) {
		return "", nil
	}
	return str(v[0]), nil
}

// str is an HMGET answer's field as a string ("" when missing).
func str(v any) string {
	s, _ := v.(string)
	return s
}

// evict deletes the oldest retained maps while the retained cells exceed
// the budget. A map whose mission is no longer completed (a teardown
// reopened it, or failed and left it FAILED) is left to its teardown's
// release or an operator's DeleteMission, and skipped: however many such
// maps are oldest, the completed ones behind them are still evicted. It
// takes three round trips per evictBatch maps: their missions' states and
// charges, the deletions, the uncharges.
func (s *Server) evict(ctx context.Context) error {
	skipped := int64(0)
	for {
		u, err := mapstore.ReadUsage(ctx, s.rdb)
		if err != nil {
			return err
		}
		if uint64(u.Retained) <= s.cfg.RetainedCells {
			return nil
		}
		oldest, err := mapstore.OldestRetained(ctx, s.rdb, skipped, evictBatch)
		if err != nil {
			return err
		}
		if len(oldest) == 0 {
			return nil
		}
		states, cells, err := s.retainedStates(ctx, oldest)
		if err != nil {
			return err
		}
		over := u.Retained - int64(s.cfg.RetainedCells)
		var victims []mapstore.Charge
		for i, m := range oldest {
			if states[i] != "" && states[i] != string(saga.Completed) {
				skipped++
				continue
			}
			victims = append(victims, m)
			if over -= cells[i]; over <= 0 {
				break
			}
		}
		if err := s.evictMaps(ctx, victims); err != nil {
			return err
		}
	}
}

// evictBatch is how many retained maps evict looks at per round trip.
const evictBatch = 16

// retainedStates reads, in one round trip, the state of the saga of each
// of charges ("" when its record is gone, or is another saga's) and the
// cells its map is charged.
func (s *Server) retainedStates(ctx context.Context, charges []mapstore.Charge) ([]string, []int64, error) {
	pipe := s.rdb.Pipeline()
	reads := make([]*redis.SliceCmd, len(charges))
	for i, c := range charges {
		reads[i] = queueState(ctx, pipe, c.MissionID)
	}
	held := mapstore.QueueCharges(ctx, pipe, charges)
	_, _ = pipe.Exec(ctx) // each command carries its own error
	states := make([]string, len(charges))
	for i, r := range reads {
		st, err := stateOf(r, charges[i])
		if err != nil {
			return nil, nil, err
		}
		states[i] = st
	}
	if err := held.Err(); err != nil {
		return nil, nil, fmt.Errorf("charges of the oldest retained maps: %w", err)
	}
	cells := make([]int64, len(charges))
	for i, c := range held.Val() {
		cells[i] = int64(c)
	}
	return states, cells, nil
}

// evictMaps deletes the maps of charges, in one round trip, then uncharges
// them in another: a deletion that failed leaves its charge for the next
// pass, never an uncharged map in Redis (on a Redis Cluster one pipeline
// would reach the mission's node and the accounting's at once). A mission
// whose map is by now another saga's keeps it (mapstore.QueueEvict); the
// charge read is dropped all the same, as its map is gone.
func (s *Server) evictMaps(ctx context.Context, charges []mapstore.Charge) error {
	if len(charges) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	dels := make([]*redis.Cmd, len(charges))
	for i, c := range charges {
		dels[i] = mapstore.QueueEvict(ctx, pipe, c)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, d := range dels {
		if err := d.Err(); err != nil {
			return fmt.Errorf("evict %s: %w", charges[i], err)
		}
	}
	pipe = s.rdb.Pipeline()
	drops := make([]*redis.Cmd, len(charges))
	for i, c := range charges {
		drops[i] = mapstore.QueueDrop(ctx, pipe, c)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range charges {
		n, err := mapstore.CellsOf(drops[i], c)
		if err != nil {
			return err
		}
		why := "retained map evicted: the retained-maps budget is full"
		if s.cfg.RetainedCells == 0 {
			why = "finished mission's map evicted: --retained-cells 0 keeps none"
		}
		s.log.InfoContext(ctx, why,
			slog.String("mission_id", c.MissionID), slog.String("saga_id", c.SagaID),
			slog.Int64("cells", n), slog.Uint64("retained_budget", s.cfg.RetainedCells))
	}
	return nil
}

// repair makes the capacity counters true again: it drops the maps that
// are no longer in Redis (a janitor pass), then recounts both counters from
// the maps held. It returns ErrCorrupt when the recount still contradicts
// itself.
func (s *Server) repair(ctx context.Context) (mapstore.Usage, error) {
	if _, err := s.reclaim(ctx); err != nil && !errors.Is(err, mapstore.ErrCorrupt) {
		return mapstore.Usage{}, err
	}
	u, err := mapstore.Recount(ctx, s.rdb)
	if err != nil {
		return u, err
	}
	s.log.WarnContext(ctx, "capacity counters recounted from the maps held",
		slog.Int64("held_cells", u.Held), slog.Int64("retained_cells", u.Retained))
	return mapstore.ReadUsage(ctx, s.rdb)
}
