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

// reclaim is one janitor pass over the maps held. It
//   - retains the map of each mission that has completed (its cells leave the
//     in-flight budget for the retained one);
//   - uncharges a map that is gone (its mission's keys expired with its
//     retention, DeleteMission deleted them, or a release died before
//     uncharging it), or that never appeared: a reservation older than
//     Config.ReservationGrace whose step has no action mark (its allocation
//     died between the reservation and the barrier's commit, which creates
//     the map with the mark). A younger reservation without its map is an
//     allocation in progress, and is left alone;
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
	s.reclaiming.Lock()
	defer s.reclaiming.Unlock()
	freed := 0
	for start := int64(0); ; {
		page, err := mapstore.ListCharged(ctx, s.rdb, start, janitorPage)
		if err != nil {
			return freed, err
		}
		if len(page) == 0 {
			break
		}
		states, exists, marked, err := s.lookup(ctx, page)
		if err != nil {
			return freed, err
		}
		dropped := 0
		for i, c := range page {
			if exists[i] && !c.Reserved.IsZero() {
				if err := mapstore.Confirm(ctx, s.rdb, c.MissionID); err != nil {
					return freed, err
				}
			}
			switch {
			case !exists[i] && !c.Reserved.IsZero() && !marked[i] && time.Since(c.Reserved) < s.cfg.ReservationGrace:
				// An allocation between its reservation and its commit.
			case !exists[i]:
				n, err := mapstore.Drop(ctx, s.rdb, c.MissionID)
				if err != nil {
					return freed, err
				}
				if n > 0 {
					dropped++
					if c.Retained.IsZero() {
						freed++
					}
					s.log.InfoContext(ctx, "map no longer in Redis uncharged", "mission_id", c.MissionID, "cells", n)
				}
			case states[i] == string(saga.Completed) && c.Retained.IsZero():
				n, err := mapstore.Retain(ctx, s.rdb, c.MissionID, time.Now())
				if err != nil {
					return freed, err
				}
				if n > 0 {
					freed++
				}
			}
		}
		// Dropped maps left the sorted set: the next page starts earlier.
		start += int64(len(page) - dropped)
	}
	return freed, s.evict(ctx)
}

// lookup reads, for each map held, its mission's saga state ("" when the
// record is gone), whether the map key still exists, and whether the
// allocation's barrier has its action mark (the map was created), in one
// round trip.
func (s *Server) lookup(ctx context.Context, page []mapstore.Charged) (states []string, exists, marked []bool, err error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range page {
			p.HGet(ctx, saga.RecordKey(c.MissionID), "state")
			p.Exists(ctx, mapstore.Key(c.MissionID))
			p.HExists(ctx, barrier.Key(c.MissionID, Step), "action")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, nil, fmt.Errorf("read the missions of the maps held: %w", err)
	}
	// The pipeline's error is its first command's: the redis.Nil of a
	// mission whose record is gone may hide a read that failed after it
	// (its Cluster node down), which would pass for a map that is gone.
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, nil, fmt.Errorf("read the missions of the maps held: %w", err)
		}
	}
	states, exists, marked = make([]string, len(page)), make([]bool, len(page)), make([]bool, len(page))
	for i := range page {
		states[i] = cmds[3*i].(*redis.StringCmd).Val()
		exists[i] = cmds[3*i+1].(*redis.IntCmd).Val() == 1
		marked[i] = cmds[3*i+2].(*redis.BoolCmd).Val()
	}
	return states, exists, marked, nil
}

// evict deletes the oldest retained maps while the retained cells exceed
// the budget. A map whose mission is no longer completed (a teardown
// reopened it, or failed and left it FAILED) is left to its teardown's
// release or an operator's DeleteMission, and skipped: however many such
// maps are oldest, the completed ones behind them are still evicted.
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
		oldest, err := mapstore.OldestRetained(ctx, s.rdb, skipped, 16)
		if err != nil {
			return err
		}
		if len(oldest) == 0 {
			return nil
		}
		for _, m := range oldest {
			st, err := s.rdb.HGet(ctx, saga.RecordKey(m), "state").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("state of mission %s: %w", m, err)
			}
			if st != "" && st != string(saga.Completed) {
				skipped++
				continue
			}
			if err := s.rdb.Del(ctx, mapstore.Key(m)).Err(); err != nil {
				return fmt.Errorf("evict map of mission %s: %w", m, err)
			}
			n, err := mapstore.Drop(ctx, s.rdb, m)
			if err != nil {
				return err
			}
			s.log.InfoContext(ctx, "retained map evicted: the retained-maps budget is full",
				slog.String("mission_id", m), slog.Int64("cells", n), slog.Uint64("retained_budget", s.cfg.RetainedCells))
			if u.Retained -= n; uint64(max(u.Retained, 0)) <= s.cfg.RetainedCells {
				break
			}
		}
	}
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
