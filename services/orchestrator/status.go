package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/saga"
)

// loadError turns a failed read of mission key into a status: NOT_FOUND
// for an unknown mission — MISSION_EXPIRED when it existed and its data
// expired or was deleted (see vanishedError), MISSION_NOT_FOUND otherwise —
// else a store error.
func (s *Server) loadError(ctx context.Context, key string, err error) error {
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return s.notFound(ctx, key)
	case errors.Is(err, saga.ErrDamaged):
		s.log.ErrorContext(ctx, "mission record damaged", slog.String("error", err.Error()))
		return damagedError(key, err)
	}
	return s.storeError(ctx, "load mission", err)
}

// damagedError is the DATA_LOSS of a mission whose record cannot be
// decoded: not an outage to retry (found by a review: a Redis that dropped
// writes at a restart left such records, answered UNAVAILABLE, and one of
// them failed every ListMissions).
func damagedError(key string, err error) error {
	return rpcerr.New(codes.DataLoss, rpcerr.ReasonRecordDamaged, fmt.Sprintf(
		"mission %q: its record in Redis is damaged (%v), so it can be neither shown nor run; "+
			"a Redis that dropped writes as it loaded its AOF does this (docs/security.md, \"Redis\"); "+
			"remove its keys by hand (docs/architecture.md, \"Damaged records\")", key, err))
}

// damagedOnce logs each damaged record ListMissions leaves out once per
// process (the console lists every few seconds), for at most
// maxDamagedLogged records.
type damagedOnce struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]bool
}

// maxDamagedLogged bounds damagedOnce's memory: past it, its record of
// keys logged starts over.
const maxDamagedLogged = 1024

func (d *damagedOnce) note(key string, err error) {
	d.mu.Lock()
	first := !d.seen[key]
	if first {
		if d.seen == nil || len(d.seen) >= maxDamagedLogged {
			d.seen = make(map[string]bool)
		}
		d.seen[key] = true
	}
	d.mu.Unlock()
	if first {
		d.log.Error("mission record damaged: left out of ListMissions; GetMission answers DATA_LOSS (RECORD_DAMAGED)",
			slog.String("mission_id", key), slog.String("error", err.Error()))
	}
}

// engineError turns an error of the saga engine's Cancel or Resume of
// mission key into a status. Only a store failure is UNAVAILABLE as such;
// the engine's own refusals say what happened:
//   - saga.ErrNotFound: NOT_FOUND (MISSION_NOT_FOUND);
//   - saga.ErrClosed, saga.ErrHandedOff: this server is shutting down (and
//     handed the teardown off): UNAVAILABLE, retry on another replica;
//   - *saga.RecordGoneError: Redis lost the mission's record while this
//     server drove its teardown: NOT_FOUND, saying so (lostError);
//   - saga.ErrFenced otherwise: another orchestrator took the mission over
//     while this one drove its teardown: UNAVAILABLE, a retry finds it there;
//   - saga.ErrRunning, saga.ErrDefinitionMismatch, saga.ErrInvalidKey: a bug
//     or a mismatched deployment, not a transient condition: INTERNAL, the
//     details logged (by the engine, for a record of another definition).
func (s *Server) engineError(ctx context.Context, key string, err error) error {
	switch {
	case errors.Is(err, saga.ErrNotFound):
		// The engine reads a record's state alone, which a damaged
		// record may lack: a record that exists is damaged, not gone.
		if s.store != nil {
			if _, lerr := s.store.Load(ctx, key); errors.Is(lerr, saga.ErrDamaged) {
				err = lerr
			}
		}
		return s.loadError(ctx, key, err)
	case errors.Is(err, saga.ErrDamaged):
		return s.loadError(ctx, key, err)
	case errors.Is(err, saga.ErrClosed):
		return errDraining
	case errors.Is(err, saga.ErrHandedOff):
		return errHandedOff
	case errors.As(err, new(*saga.RecordGoneError)):
		return s.lostError(ctx, key)
	case errors.Is(err, saga.ErrFenced):
		return errTakenOver
	case errors.Is(err, saga.ErrDefinitionMismatch):
		return errInternal
	case errors.Is(err, saga.ErrRunning), errors.Is(err, saga.ErrInvalidKey):
		s.log.ErrorContext(ctx, "saga engine refused the mission", slog.String("error", err.Error()))
		return errInternal
	}
	return s.storeError(ctx, "update mission", err)
}

// lostError is the status of mission key, whose record disappeared while
// it ran: NOT_FOUND. Without a tombstone, Redis lost it, and the message
// says so, where notFound's would call a running mission expired; with one,
// it was deleted (or expired) meanwhile, and notFound's message is right.
func (s *Server) lostError(ctx context.Context, key string) error {
	if s.store != nil { // a Server built bare, for its error mapping alone, has none
		if deleted, err := s.store.Tombstoned(ctx, key); err == nil && deleted {
			return s.notFound(ctx, key)
		}
	}
	return rpcerr.New(codes.NotFound, rpcerr.ReasonMissionNotFound, fmt.Sprintf(
		"mission %q was running and its record is gone: Redis lost it (restarted without persistence, flushed, or failed over)", key),
		"mission_id", key)
}

// storeError logs a Redis failure and returns UNAVAILABLE without its
// details, which name keys and addresses a client has no use for; a Redis
// out of memory is RESOURCE_EXHAUSTED (STORE_FULL), saying so.
func (s *Server) storeError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return contextStatus(ctx)
	}
	s.log.ErrorContext(ctx, op+" failed", slog.String("error", err.Error()))
	if errors.Is(err, saga.ErrLate) {
		// Redis answered: an outage would send the operator to the wrong
		// place (found by a review, after a SIGSTOP of an orchestrator).
		return rpcerr.New(codes.Unavailable, rpcerr.ReasonOrchestratorLate, op+": this orchestrator's write reached Redis more than a lease TTL after it began "+
			"(its process was paused, or its clock and Redis's differ by more than a lease TTL), so Redis refused it and nothing was written: retry")
	}
	if rpcerr.StoreFull(err) {
		// Not UNAVAILABLE: a client retrying it would wait for an outage
		// that is not one, while the cause is in no reply.
		return rpcerr.New(codes.ResourceExhausted, rpcerr.ReasonStoreFull, op+": "+rpcerr.StoreFullMessage)
	}
	return rpcerr.New(codes.Unavailable, rpcerr.ReasonStoreUnavailable, op+": mission store (Redis) unavailable"+storeCause(err))
}

// storeCause names, for a client that sees no log, the kind of a Redis
// failure an operator fixes differently (found by a review: a rotated
// password read as an outage of the orchestrator); "" for an unknown one.
func storeCause(err error) string {
	var netErr net.Error
	switch {
	case rpcerr.StoreRefusedCredentials(err):
		return ": it refused the orchestrator's credentials (REDIS_PASSWORD_FILE, REDIS_URL)"
	case redis.IsLoadingError(err):
		return ": it is loading its data after a restart"
	case errors.As(err, &netErr):
		return ": unreachable"
	}
	return ""
}

// contextStatus is the status of a call whose context ended: CANCELLED or
// DEADLINE_EXCEEDED.
func contextStatus(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
