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
// allocation arriving after its release is refused. The budget check, the
// charge and the map write commit in the barrier's MULTI/EXEC, under WATCH of
// the capacity counter, so concurrent missions can never overbook it.
package mapping

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/render"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// ServiceName is the service's name in events, logs and traces.
const ServiceName = "mapping"

// Step is the saga step this service performs.
const Step = "allocate_map"

// ActionMethods are the full method names of the step's action RPCs, for
// progressgrpc.UnaryServerInterceptor.
var ActionMethods = []string{mappingv1.MappingService_AllocateMap_FullMethodName}

// CompensationMethods are the full method names of the step's compensation
// RPCs, for faults.UnaryServerInterceptor.
var CompensationMethods = []string{mappingv1.MappingService_ReleaseMap_FullMethodName}

// DefaultCapacityCells is the default budget: 16 M cells, a 200 m square at
// 5 cm (the largest scenario world), or about 130 default 20x15 m missions.
const DefaultCapacityCells = 16_000_000

// Config tunes the service; zero fields take the defaults.
type Config struct {
	// CapacityCells is the budget of grid cells all missions' maps share.
	CapacityCells uint64
}

// Server implements mappingv1.MappingServiceServer.
type Server struct {
	mappingv1.UnimplementedMappingServiceServer
	capacity uint64
	rdb      redis.UniversalClient
	barrier  *barrier.Barrier
	log      *slog.Logger
}

// NewServer returns the service on rdb, guarded by b.
func NewServer(cfg Config, rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) *Server {
	if cfg.CapacityCells == 0 {
		cfg.CapacityCells = DefaultCapacityCells
	}
	return &Server{capacity: cfg.CapacityCells, rdb: rdb, barrier: b, log: log}
}

// Register registers s on r (a grpc.Server or grpcserver.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	mappingv1.RegisterMappingServiceServer(r, s)
}

// errCapacity carries the numbers of a refused allocation out of the
// barrier callback.
type errCapacity struct{ requested, available uint64 }

func (e *errCapacity) Error() string {
	return fmt.Sprintf("map of %d cells exceeds the %d cells left in the capacity budget", e.requested, e.available)
}

// AllocateMap charges the map's cells against the budget and stores the
// empty grid as version 1, once per saga.
func (s *Server) AllocateMap(ctx context.Context, req *mappingv1.AllocateMapRequest) (*mappingv1.AllocateMapResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	meta, err := specMeta(req.GetSpec())
	if err != nil {
		return nil, err
	}
	cells := uint64(meta.Cells())
	// Pure work before the transaction, which may run its callback again.
	metaBytes, err := proto.Marshal(slamproto.MetaToProto(meta))
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	empty := bytes.Repeat([]byte{0xff}, int(cells)) // int8 -1: unknown
	mapID := "map-" + uuid.NewString()
	key := mapKey(sc.GetMissionId())

	res, outcome, err := s.barrier.Action(ctx, barrierID(sc), func(ctx context.Context, tx *barrier.Tx) ([]byte, error) {
		if err := tx.Watch(ctx, capacityKey); err != nil {
			return nil, err
		}
		used, err := tx.Reader().Get(ctx, capacityKey).Uint64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read capacity: %w", err)
		}
		if used > s.capacity || cells > s.capacity-used {
			return nil, &errCapacity{requested: cells, available: s.capacity - min(used, s.capacity)}
		}
		resp := &mappingv1.AllocateMapResponse{
			MapId:          mapID,
			Meta:           slamproto.MetaToProto(meta),
			Cells:          cells,
			RemainingCells: s.capacity - used - cells,
		}
		out, err := proto.Marshal(resp)
		if err != nil {
			return nil, err
		}
		tx.Write(func(p redis.Pipeliner) {
			p.IncrBy(ctx, capacityKey, int64(cells))
			p.HSet(ctx, key,
				fieldMapID, mapID,
				fieldMeta, metaBytes,
				fieldCells, cells,
				fieldCurrent, 1,
				versionField(1), empty)
		})
		return out, nil
	})
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

// ReleaseMap deletes the map the saga allocated, every version of it, and
// returns its cells to the budget. A release without an allocation, or a
// repeated one, releases nothing and succeeds.
func (s *Server) ReleaseMap(ctx context.Context, req *mappingv1.ReleaseMapRequest) (*mappingv1.ReleaseMapResponse, error) {
	sc := req.GetSaga()
	if err := rpcerr.CheckSaga(sc, Step); err != nil {
		return nil, err
	}
	var cells uint64
	outcome, err := s.barrier.Compensate(ctx, barrierID(sc), func(ctx context.Context, tx *barrier.Tx, actionResult []byte) error {
		alloc := &mappingv1.AllocateMapResponse{}
		if err := proto.Unmarshal(actionResult, alloc); err != nil {
			return fmt.Errorf("stored allocation result: %w", err)
		}
		cells = alloc.GetCells()
		tx.Write(func(p redis.Pipeliner) {
			p.DecrBy(ctx, capacityKey, int64(cells))
			p.Del(ctx, mapKey(sc.GetMissionId()))
		})
		return nil
	})
	if err != nil {
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
	m, err := loadMap(ctx, s.rdb, req.GetMissionId(), req.GetVersion())
	switch {
	case errors.Is(err, errNoMap):
		return nil, rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound,
			fmt.Sprintf("mission %s has no map", req.GetMissionId()), "mission_id", req.GetMissionId())
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case m.cells == nil:
		return nil, rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound,
			fmt.Sprintf("map %s has no version %d (current %d)", m.mapID, m.version, m.current),
			"mission_id", req.GetMissionId(), "version", fmt.Sprint(m.version))
	}
	resp := &mappingv1.GetMapResponse{
		MapId:          m.mapID,
		Version:        m.version,
		Grid:           &typesv1.OccupancyGrid{Meta: m.meta, Data: m.cells},
		CurrentVersion: m.current,
	}
	if req.GetIncludePng() {
		g, err := slamproto.GridFromProto(resp.GetGrid())
		if err != nil {
			return nil, s.toStatus(ctx, fmt.Errorf("stored map %s v%d: %w", m.mapID, m.version, err))
		}
		if resp.Png, err = render.PNG(g); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	return resp, nil
}

// barrierID names the barrier of the saga's allocate_map step.
func barrierID(sc *typesv1.SagaContext) barrier.ID {
	return barrier.ID{Key: sc.GetMissionId(), SagaID: sc.GetSagaId(), Step: Step}
}

// toStatus is the service's one mapping from errors to gRPC statuses.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var capErr *errCapacity
	switch {
	case errors.As(err, &capErr):
		return rpcerr.New(codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted, capErr.Error(),
			"requested_cells", fmt.Sprint(capErr.requested), "available_cells", fmt.Sprint(capErr.available))
	case errors.Is(err, barrier.ErrActionForbidden):
		return rpcerr.New(codes.Aborted, rpcerr.ReasonActionForbidden, "allocate_map was already compensated for this saga")
	case errors.Is(err, barrier.ErrSagaMismatch):
		return rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonSagaMismatch, "allocate_map of this mission belongs to another saga")
	case errors.Is(err, barrier.ErrConflict):
		return rpcerr.New(codes.Aborted, rpcerr.ReasonConflict, "too many concurrent allocations; retry")
	}
	st := rpcerr.Unexpected(err)
	if rpcerr.Code(st) == codes.Internal {
		s.log.ErrorContext(ctx, "mapping request failed", "error", err)
	}
	return st
}
