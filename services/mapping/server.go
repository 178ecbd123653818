// Package mapping is the map allocation service, step 1 of the mission saga
// (allocate_map): it turns a map request in metres into a grid, charges its
// cells against a capacity budget shared by all missions, and stores the
// empty grid as version 1 of the mission map, which the merge service later
// extends with new versions. ReleaseMap, the step's compensation, deletes the
// map and returns its cells to the budget. GetMap serves any version, also
// as PNG.
//
// Both step RPCs go through internal/barrier, so a retried allocation is
// charged once, a release without an allocation does nothing, and an
// allocation arriving after its release is refused. The budget check and
// the charge are one script on the global {mapping} keys (a reservation,
// mapstore.Reserve), so concurrent missions can never overbook it; the map
// write then commits with the barrier mark in the barrier's script on the
// mission's slot (see allocate for what settles a charge whose map never
// appears).
//
// Two budgets (internal/mapstore, "capacity accounting"): the capacity
// budget protects Redis memory for missions in flight; a completed mission's
// map moves to the retained-maps budget (janitor.go), where the oldest are
// evicted when it is full, so finished missions never block new ones. The
// counters are checked on every allocation and recounted from the maps held
// when they contradict themselves.
package mapping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/groupcommit"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/render"
	"github.com/slammesh/slammesh/internal/slamproto"
	"github.com/slammesh/slammesh/internal/stepserver"
)

// ServiceName is the service's name in events, logs and traces.
const ServiceName = "mapping"

// Step is the saga step this service performs.
const Step = "allocate_map"

// ActionMethods are the full method names of the step's action RPCs, for
// the progress interceptor (stepserver.Interceptors).
var ActionMethods = []string{mappingv1.MappingService_AllocateMap_FullMethodName}

// CompensationMethods are the full method names of the step's compensation
// RPCs, for the fault interceptor (stepserver.Interceptors).
var CompensationMethods = []string{mappingv1.MappingService_ReleaseMap_FullMethodName}

// DefaultCapacityCells is the default in-flight budget: 16 M cells, a 200 m
// square at 5 cm (the largest scenario world), or about 130 default 20x15 m
// missions running at once.
const DefaultCapacityCells = 16_000_000

// DefaultRetainedCells is the default budget of finished missions' maps:
// 32 M cells (about 32 MB of Redis), the last ~260 default missions' maps.
const DefaultRetainedCells = 32_000_000

// DefaultJanitorInterval is the default time between two janitor passes.
const DefaultJanitorInterval = 10 * time.Second

// DefaultReservationGrace is how long a capacity charge may wait for its map
// before the janitor drops it (mapstore.Reserve): far longer than an
// allocation attempt (the saga's default attempt timeout is 10 s), so that
// only a charge whose allocation died is dropped.
const DefaultReservationGrace = 2 * time.Minute

// Config tunes the service; zero fields take the defaults.
type Config struct {
	// CapacityCells is the budget of grid cells the maps of missions in
	// flight (not finished) share: an allocation past it is refused with
	// RESOURCE_EXHAUSTED.
	CapacityCells uint64
	// RetainedCells is the budget of grid cells the maps of completed
	// missions share while their missions' retention runs; past it the
	// oldest are evicted (deleted before their mission expires). Never a
	// running mission's map. 0 means DefaultRetainedCells.
	RetainedCells uint64
	// KeepNoMaps evicts every completed mission's map at the janitor's
	// next pass, whatever RetainedCells says (`--retained-cells 0`): a
	// deployment that reads maps only while their missions run.
	KeepNoMaps bool
	// JanitorInterval is the time between two passes of RunJanitor.
	JanitorInterval time.Duration
	// ReservationGrace is the age past which the janitor drops a capacity
	// charge whose map never appeared (see DefaultReservationGrace); a
	// charge whose mission's saga record is gone is dropped at once when
	// the barrier checks the record (see reclaim).
	ReservationGrace time.Duration
}

// Server implements mappingv1.MappingServiceServer.
type Server struct {
	mappingv1.UnimplementedMappingServiceServer
	cfg Config
	rdb redis.UniversalClient
	// reserve runs the capacity reservation's script: rdb, or a group
	// commit on it (WithGroupCommit).
	reserve redis.Scripter
	barrier *barrier.Barrier
	log     *slog.Logger
	// reclaiming is the turn of a janitor pass: one at a time in a
	// process. passes numbers the passes begun, reclaimed is the number
	// of the last one that ended without error (see reclaimSince), freed
	// counts the maps the passes moved out of the in-flight budget.
	reclaiming chan struct{}
	passes     atomic.Int64
	reclaimed  atomic.Int64
	freed      atomic.Int64
}

// NewServer returns the service on rdb, guarded by b.
func NewServer(cfg Config, rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) *Server {
	if cfg.CapacityCells == 0 {
		cfg.CapacityCells = DefaultCapacityCells
	}
	switch {
	case cfg.KeepNoMaps:
		cfg.RetainedCells = 0
	case cfg.RetainedCells == 0:
		cfg.RetainedCells = DefaultRetainedCells
	}
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = DefaultJanitorInterval
	}
	if cfg.ReservationGrace <= 0 {
		cfg.ReservationGrace = DefaultReservationGrace
	}
	return &Server{cfg: cfg, rdb: rdb, reserve: rdb, barrier: b, log: log, reclaiming: make(chan struct{}, 1)}
}

// WithGroupCommit makes AllocateMap's capacity reservation go through g,
// batched with concurrent allocations' (and the barrier commits sharing g).
// Call it before s serves; g must be on the server's client.
func (s *Server) WithGroupCommit(g *groupcommit.Group) {
	s.reserve = g.Scripter()
}

// Register registers s on r (a grpc.Server or grpcserver.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	mappingv1.RegisterMappingServiceServer(r, s)
}

// errCapacity carries the numbers of a refused allocation out of the
// capacity reservation.
type errCapacity struct{ requested, available uint64 }

func (e *errCapacity) Error() string {
	return fmt.Sprintf("map of %d cells exceeds the %d cells left in the capacity budget (missions not yet ended hold the rest: running ones until they end, failed ones until resumed or deleted); %s", e.requested, e.available, grid.FewerCells)
}

// maxCapacityPasses bounds the janitor passes an allocation refused for
// capacity runs (or shares) while they keep freeing maps (see
// allocateAfterPasses).
const maxCapacityPasses = 10

// AllocateMap charges the map's cells against the in-flight budget and
// stores the empty grid as version 1, once per saga. When the budget looks
// full it reclaims (janitor passes: the maps of missions that have
// finished since the last pass leave the in-flight budget) and tries again
// (allocateAfterPasses); when the counters are found corrupt it repairs
// them and tries once more.
func (s *Server) AllocateMap(ctx context.Context, req *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	meta, err := specMeta(req.GetSpec())
	if err != nil {
		return nil, err
	}
	// Pure work before the commit, which may be redone.
	blank, err := mapstore.NewBlank(meta)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	mapID := "map-" + uuid.NewString()

	res, outcome, err := s.allocate(ctx, sc, meta, blank, mapID)
	var capErr *errCapacity
	switch {
	case errors.As(err, &capErr):
		res, outcome, err = s.allocateAfterPasses(ctx, sc, meta, blank, mapID)
	case errors.Is(err, mapstore.ErrCorrupt):
		s.log.WarnContext(ctx, "capacity counters corrupt; recounting them from the maps held",
			"mission_id", sc.GetMissionId(), "error", err.Error())
		if _, rerr := s.repair(ctx); rerr != nil {
			return nil, s.toStatus(ctx, rerr)
		}
		res, outcome, err = s.allocate(ctx, sc, meta, blank, mapID)
	}
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &mappingv1.AllocateMapResponse{}
	if err := proto.Unmarshal(res, resp); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("stored allocation result: %w", err))
	}
	if outcome == barrier.Duplicate {
		s.log.InfoContext(ctx, "duplicate allocation answered with the stored result",
			"mission_id", sc.GetMissionId(), "saga_id", sc.GetSagaId(), "map_id", resp.GetMapId())
	}
	return resp, nil
}

// allocate is AllocateMap's commit, in two round trips: the capacity
// reservation on the {mapping} keys (mapstore.Reserve: it checks the
// in-flight budget and charges the mission, once), then the barrier's script
// on the mission's slot, which creates the map with the action mark. The two
// are in different Redis Cluster slots, so they cannot commit together: a
// charge whose map never appears is settled here when the barrier forbids
// the action (the step was compensated first) or refuses the call (the
// mission has ended, or belongs to another saga): the charge is dropped;
// and by the janitor otherwise (a crash in between; see reclaim). A
// duplicate keeps the charge, whatever map id it answers with: it is the
// saga's one charge, for the map the first attempt created.
func (s *Server) allocate(ctx context.Context, sc *typesv1.SagaContext, meta grid.Meta, blank *mapstore.Blank, mapID string) ([]byte, barrier.Outcome, error) {
	cells := uint64(meta.Cells())
	capacity := s.cfg.CapacityCells
	missionID := sc.GetMissionId()
	charge := mapstore.Charge{MissionID: missionID, SagaID: sc.GetSagaId()}
	r, err := mapstore.Reserve(ctx, s.reserve, charge, cells, capacity, time.Now())
	switch {
	case errors.Is(err, mapstore.ErrFull):
		return nil, 0, &errCapacity{requested: cells, available: r.Left}
	case err != nil:
		return nil, 0, err
	}
	resp := &mappingv1.AllocateMapResponse{
		MapId:          mapID,
		Meta:           slamproto.MetaToProto(meta),
		Cells:          cells,
		RemainingCells: r.Left,
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, 0, err
	}
	tx := s.barrier.NewTx()
	tx.Write(func(p redis.Pipeliner) { mapstore.Create(ctx, p, missionID, sc.GetSagaId(), mapID, blank) })
	res, outcome, err := stepserver.Commit(ctx, s.barrier, stepserver.BarrierID(sc, Step), tx, out)
	switch {
	case errors.Is(err, barrier.ErrActionForbidden):
		// The compensation ran first: no map of this saga will ever exist.
		// Drop is idempotent, and a release that dropped already makes it
		// a no-op.
		s.dropCharge(ctx, charge)
	case r.New && (errors.Is(err, barrier.ErrOwnerGone) || errors.Is(err, barrier.ErrSagaMismatch)):
		// A late call for a mission that has ended (or of another saga):
		// this call's charge is for a map that will not be created, unless
		// the saga holds one already — created after this reservation by a
		// concurrent attempt, and so charged by it. No barrier commit
		// creates the map any more, so the look cannot go stale.
		if held, xerr := s.holdsMap(ctx, charge); xerr == nil && !held {
			s.dropCharge(ctx, charge)
		}
	}
	return res, outcome, err
}

// allocateAfterPasses is allocate for an allocation refused for capacity:
// it runs (or shares) a janitor pass and tries again, and goes on while
// the passes free maps, up to maxCapacityPasses. Missions keep finishing
// after a pass has read the maps, and the missions started after them
// allocate what the pass freed, so under a tight budget one pass can lose
// that race again and again. A pass that frees nothing means the budget
// is held by missions in flight: the refusal stands, at once. A pass that
// failed (Redis unreachable mid-pass) says nothing of what finished
// missions hold, so then the call answers that failure instead, which
// Status makes UNAVAILABLE for an outage: the saga retries the step rather
// than compensate a mission for capacity that a pass would have freed.
func (s *Server) allocateAfterPasses(ctx context.Context, sc *typesv1.SagaContext, meta grid.Meta, blank *mapstore.Blank, mapID string) ([]byte, barrier.Outcome, error) {
	var err, passErr error
	for range maxCapacityPasses {
		freed := s.freed.Load()
		// Retry even when no pass ran here: a concurrent allocation's,
		// which this one waited for, may have freed maps.
		passErr = s.reclaimSince(ctx, s.passes.Load())
		if passErr != nil {
			s.log.WarnContext(ctx, "reclaiming finished missions' maps failed", "error", passErr.Error())
			if ctx.Err() != nil {
				break
			}
		}
		var res []byte
		var outcome barrier.Outcome
		res, outcome, err = s.allocate(ctx, sc, meta, blank, mapID)
		var capErr *errCapacity
		if !errors.As(err, &capErr) {
			return res, outcome, err
		}
		if s.freed.Load() == freed {
			break
		}
	}
	// Counters found corrupt by the pass (its eviction reads them) are not
	// a store outage: the refusal stands, and the next allocation's
	// reservation finds them and has them recounted (AllocateMap).
	if passErr != nil && ctx.Err() == nil && !errors.Is(passErr, mapstore.ErrCorrupt) {
		return nil, 0, fmt.Errorf("the capacity budget is full and the pass that frees finished missions' maps failed: %w", passErr)
	}
	return nil, 0, s.refusedFor(ctx, sc, err)
}

// refusedFor is the error of an allocation refused for capacity: the
// barrier's refusal instead, when the call could never have committed (a
// late call of a mission that has ended, or of another saga than the
// mission's), so that such a call says why it failed rather than what the
// budget held (the reservation runs before the barrier's checks).
func (s *Server) refusedFor(ctx context.Context, sc *typesv1.SagaContext, capErr error) error {
	_, _, err := s.barrier.Look(ctx, stepserver.BarrierID(sc, Step), nil)
	if errors.Is(err, barrier.ErrOwnerGone) || errors.Is(err, barrier.ErrSagaMismatch) {
		return err
	}
	return capErr
}

// holdsMap reports whether the mission's map is the map of charge c.
func (s *Server) holdsMap(ctx context.Context, c mapstore.Charge) (bool, error) {
	owner, exists, err := mapstore.OwnerOf(mapstore.QueueOwner(ctx, s.rdb, c.MissionID))
	return exists && c.Owns(owner), err
}

// dropCharge drops capacity charge c after an allocation that will create
// no map; a failure is left to the janitor (the charge is still marked
// reserved, so its grace period applies).
func (s *Server) dropCharge(ctx context.Context, c mapstore.Charge) {
	if _, err := mapstore.Drop(ctx, s.rdb, c); err != nil {
		s.log.WarnContext(ctx, "dropping the charge of a refused allocation failed; the janitor drops it",
			"mission_id", c.MissionID, "saga_id", c.SagaID, "error", err.Error())
	}
}

// ReleaseMap deletes the map the saga allocated, every version of it, and
// returns its cells to the budget. A release without an allocation, or a
// repeated one, releases nothing and succeeds. The map is deleted with the
// barrier's mark, and uncharged right after (mapstore.Drop, idempotent);
// should the process die in between, the janitor uncharges it. A null
// release drops the mission's charge too: only an allocation racing it can
// hold one, a reservation whose map the barrier will forbid.
func (s *Server) ReleaseMap(ctx context.Context, req *mappingv1.ReleaseMapRequest) (*mappingv1.ReleaseMapResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	var cells uint64
	outcome, err := s.barrier.Compensate(ctx, stepserver.BarrierID(sc, Step), func(ctx context.Context, tx *barrier.Tx, actionResult []byte) error {
		alloc := &mappingv1.AllocateMapResponse{}
		if err := proto.Unmarshal(actionResult, alloc); err != nil {
			return fmt.Errorf("stored allocation result: %w", err)
		}
		cells = alloc.GetCells()
		tx.Write(func(p redis.Pipeliner) { mapstore.Delete(ctx, p, sc.GetMissionId()) })
		return nil
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	// Also after a duplicate: the first call may have died before it.
	if _, err := mapstore.Drop(ctx, s.rdb, mapstore.Charge{MissionID: sc.GetMissionId(), SagaID: sc.GetSagaId()}); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if outcome != barrier.Applied {
		s.log.InfoContext(ctx, "release had nothing to undo",
			"mission_id", sc.GetMissionId(), "saga_id", sc.GetSagaId(), "outcome", outcome.String())
		return &mappingv1.ReleaseMapResponse{}, nil
	}
	return &mappingv1.ReleaseMapResponse{Released: true, Cells: cells}, nil
}

// GetMap returns a version of a mission's map (0: the current one).
func (s *Server) GetMap(ctx context.Context, req *mappingv1.GetMapRequest) (*mappingv1.GetMapResponse, error) {
	if err := rpcerr.CheckID("mission_id", req.GetMissionId()); err != nil {
		return nil, err
	}
	m, err := s.loadVersion(ctx, req.GetMissionId(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	resp := &mappingv1.GetMapResponse{
		MapId:          m.ID,
		Version:        m.Version,
		Grid:           &typesv1.OccupancyGrid{Meta: m.Meta, Data: m.Cells},
		CurrentVersion: m.Current,
	}
	if req.GetIncludeContributors() {
		// A second read: the version is known now, and a layer deleted in
		// between (a revert) is reported as none, which is what it is.
		if resp.Contributors, err = mapstore.LoadContributors(ctx, s.rdb, req.GetMissionId(), m.Version); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	if req.GetIncludePng() {
		g, err := m.Grid()
		if err != nil {
			return nil, s.toStatus(ctx, fmt.Errorf("stored map: %w", err))
		}
		if resp.Png, err = render.PNG(g); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	return resp, nil
}

// toStatus is the service's one mapping from errors to gRPC statuses.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var capErr *errCapacity
	switch {
	case errors.As(err, &capErr):
		return rpcerr.New(codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted, capErr.Error(),
			"requested_cells", fmt.Sprint(capErr.requested), "available_cells", fmt.Sprint(capErr.available))
	case errors.Is(err, mapstore.ErrCorrupt):
		s.log.ErrorContext(ctx, "capacity counters corrupt after a recount", "error", err.Error())
		return rpcerr.New(codes.Unavailable, rpcerr.ReasonCapacityCorrupt,
			"the capacity counters are inconsistent and a recount did not repair them; retry, and see the mapping service log")
	}
	return stepserver.Status(ctx, s.log, ServiceName, Step, err)
}
