// Package stepserver is what the three saga step services (mapping,
// localization, merge) share around their handlers: the unary interceptors
// every process serving one installs, the barrier of a step named from its
// SagaContext, a look at the barrier before expensive work, and the statuses
// of the errors every step handler can meet. The domain of each step, and
// the statuses of its own errors, stay in its service.
package stepserver

import (
	"context"
	"errors"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/faults"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// Interceptors returns the unary interceptors of a step service, for
// grpcserver.Deps.UnaryInterceptors: the events interceptor, publishing
// through pub the step events of the action RPCs named in actions (see
// eventsInterceptor; WithFirehose lets them ride in the barrier commit),
// and, when allowFaults (--allow-fault-injection), fault injection for the
// action and the compensation RPCs (named in compensations). Faults are
// injected inside the events interceptor, so injected failures are
// reported as step.failed like real ones.
func Interceptors(pub *progress.Publisher, service string, actions, compensations []string, allowFaults bool, opts ...Option) []grpc.UnaryServerInterceptor {
	o := options{progressDelay: ProgressDelay}
	for _, opt := range opts {
		opt(&o)
	}
	ics := []grpc.UnaryServerInterceptor{eventsInterceptor(pub, o, service, actions)}
	if allowFaults {
		ics = append(ics, faults.UnaryServerInterceptor(compensations...))
	}
	return ics
}

// BarrierID names the barrier of step for the saga and mission of sc. The
// caller has checked sc (rpcerr.CheckSaga).
func BarrierID(sc *typesv1.SagaContext, step string) barrier.ID {
	return barrier.ID{Key: sc.GetMissionId(), SagaID: sc.GetSagaId(), Step: step}
}

// Committed looks at the barrier of id without acting: it returns the
// result an earlier attempt stored when the action committed, committed
// false when it did not yet, and barrier.ErrActionForbidden when the step
// was compensated. A handler whose work is too expensive to redo calls it
// first, so that a retry is answered without working again, then commits
// with Commit, which answers a concurrent attempt that committed in between.
// reads, when not nil, queues the reads the handler needs before its work
// anyway, in the same round trip (barrier.Look).
func Committed(ctx context.Context, b *barrier.Barrier, id barrier.ID, reads func(redis.Pipeliner)) (result []byte, committed bool, err error) {
	return b.Look(ctx, id, reads)
}

// Settle answers a one-trip call (work first, then the commit) that failed
// with err as the read path, which looks at the barrier before working,
// would have: it looks once (a round trip on failure only) and returns the
// barrier's refusal when the step was compensated, its mission is gone or
// it belongs to another saga; the stored result, committed true, when the
// action committed (a duplicate whose redone work failed); otherwise err.
func Settle(ctx context.Context, b *barrier.Barrier, id barrier.ID, err error) (stored []byte, committed bool, _ error) {
	stored, committed, lerr := b.Look(ctx, id, nil)
	switch {
	case errors.Is(lerr, barrier.ErrActionForbidden), errors.Is(lerr, barrier.ErrOwnerGone), errors.Is(lerr, barrier.ErrSagaMismatch):
		return nil, false, lerr
	case lerr == nil && committed:
		return stored, true, nil
	}
	return nil, false, err
}

// Status is the end of a step service's one mapping from errors to gRPC
// statuses, for the errors every step handler shares once its own are
// mapped: the barrier's (a hanging action, a barrier of another saga, a
// transaction that kept conflicting) and, through rpcerr.Unexpected, any
// other. An INTERNAL status is logged to log with err as "<service> request
// failed", since the client sees none of err's detail, and so is a Redis out
// of memory (STORE_FULL), which an operator must act on.
func Status(ctx context.Context, log *slog.Logger, service, step string, err error) error {
	switch {
	case errors.Is(err, barrier.ErrActionForbidden):
		return rpcerr.New(codes.Aborted, rpcerr.ReasonActionForbidden, step+" was already compensated for this saga")
	case errors.Is(err, barrier.ErrSagaMismatch):
		return rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonSagaMismatch, step+" of this mission belongs to another saga")
	case errors.Is(err, barrier.ErrOwnerGone):
		return rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonMissionGone, step+": the mission has ended (its data is kept read-only until it expires), or expired, or was deleted")
	case errors.Is(err, barrier.ErrConflict):
		return rpcerr.New(codes.Aborted, rpcerr.ReasonConflict, "concurrent attempts of this step kept conflicting; retry")
	}
	st := rpcerr.Unexpected(err)
	if rpcerr.Code(st) == codes.Internal || rpcerr.Reason(st) == rpcerr.ReasonStoreFull {
		log.ErrorContext(ctx, service+" request failed", "error", err)
	}
	return st
}

// OneTripCells bounds the work, in grid cells (the map's and the
// submaps'), that a step handler serves in one Redis round trip when the
// request states the map's geometry (map_meta): it works first, on what
// the request says, and its commit checks that against the stored map. A
// duplicate call (a retry after a lost reply) then redoes that work before
// the commit answers it with the first attempt's result, instead of every
// call paying a look at the barrier first. 65,536 cells is a 12.8 m square
// at 5 cm: fusing that much takes about a millisecond (the tiny workload's
// merge, a 10x8 m map), placing an anchor a fraction of it — little to redo
// for a rare duplicate, where the look costs every call a round trip.
// Larger work keeps the look, so that a retry under load does not redo it.
const OneTripCells = 1 << 16

// GivenMap is a mission map's geometry as a request states it (map_meta),
// with the meta field that mapstore.ExpectMap checks it by.
type GivenMap struct {
	Meta    grid.Meta
	Encoded []byte
}

// MapOf decodes a request's map_meta: nil without one, INVALID_ARGUMENT
// naming map_meta when it is not a valid geometry (a status; any other
// error is unexpected).
func MapOf(m *typesv1.GridMeta) (*GivenMap, error) {
	if m == nil {
		return nil, nil
	}
	meta, err := slamproto.MetaFromProto(m)
	if err != nil {
		return nil, rpcerr.InvalidArgument("map_meta", slam.Detail(err))
	}
	enc, err := mapstore.EncodeMeta(meta)
	if err != nil {
		return nil, err
	}
	return &GivenMap{Meta: meta, Encoded: enc}, nil
}
