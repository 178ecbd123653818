package mapping

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam/render"
)

// Chunk sizes of StreamMap: the default, the least a request may ask for
// (a map of the default 16 M-cell budget then takes at most 4,096
// messages, where 1-byte chunks made it 16 million: found by a review),
// and the most (gRPC clients accept 4 MiB messages by default, a little
// framing aside).
const (
	defaultChunkBytes = 1 << 20
	minChunkBytes     = 4 << 10
	maxChunkBytes     = 4<<20 - 1024
)

// StreamMap sends a version of a mission's map (0: the current one) in
// chunks of at most chunk_bytes: first the header with the first cells,
// then the rest of the cells, then the PNG when asked for. It serves any
// map the capacity budget allows, where GetMap's single reply is bound by
// the message limit.
func (s *Server) StreamMap(req *mappingv1.StreamMapRequest, stream grpc.ServerStreamingServer[mappingv1.StreamMapResponse]) error {
	ctx := stream.Context()
	if err := rpcerr.CheckID("mission_id", req.GetMissionId()); err != nil {
		return err
	}
	chunk := int(req.GetChunkBytes())
	switch {
	case chunk == 0:
		chunk = defaultChunkBytes
	case chunk < minChunkBytes || chunk > maxChunkBytes:
		return rpcerr.InvalidArgument("chunk_bytes", fmt.Sprintf("%d, want %d to %d (0: %d)", chunk, minChunkBytes, maxChunkBytes, defaultChunkBytes))
	}
	m, err := s.loadVersion(ctx, req.GetMissionId(), req.GetVersion())
	if err != nil {
		return err
	}
	var png []byte
	if req.GetIncludePng() {
		g, err := m.Grid()
		if err != nil {
			return s.toStatus(ctx, fmt.Errorf("stored map: %w", err))
		}
		if png, err = render.PNG(g); err != nil {
			return s.toStatus(ctx, err)
		}
	}
	first := &mappingv1.StreamMapResponse{
		MapId:          m.ID,
		Version:        m.Version,
		Meta:           m.Meta,
		CurrentVersion: m.Current,
		TotalCells:     uint64(len(m.Cells)),
		PngBytes:       uint64(len(png)),
	}
	// One message per chunk of the cells, then of the PNG; the header rides
	// on the first (which is the only one for an empty map).
	msg := first
	send := func() error {
		if err := stream.Send(msg); err != nil {
			return err
		}
		msg = &mappingv1.StreamMapResponse{}
		return nil
	}
	for off := 0; off < len(m.Cells); off += chunk {
		msg.Cells = m.Cells[off:min(off+chunk, len(m.Cells))]
		if err := send(); err != nil {
			return err
		}
	}
	for off := 0; off < len(png); off += chunk {
		msg.Png = png[off:min(off+chunk, len(png))]
		if err := send(); err != nil {
			return err
		}
	}
	if msg == first {
		return send()
	}
	return nil
}

// loadVersion reads version v of the mission's map (0: the current one),
// or returns the NOT_FOUND status GetMap answers with. A map that is gone
// is named with the ways it goes, since a mission record outlives it when
// its map was evicted: an operator reading "no map" beside a COMPLETED
// mission needs the budget's name.
func (s *Server) loadVersion(ctx context.Context, missionID string, v uint32) (*mapstore.Map, error) {
	m, err := mapstore.Load(ctx, s.rdb, missionID, v)
	switch {
	case errors.Is(err, mapstore.ErrNoMap):
		return nil, rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound,
			fmt.Sprintf("mission %s has no map: none was allocated, a compensation or teardown released it, "+
				"or it was evicted to keep the retained maps within --retained-cells, or expired with the mission", missionID), "mission_id", missionID)
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case m.Cells == nil:
		return nil, rpcerr.New(codes.NotFound, rpcerr.ReasonMapNotFound,
			fmt.Sprintf("map %s has no version %d (current %d)", m.ID, m.Version, m.Current),
			"mission_id", missionID, "version", fmt.Sprint(m.Version))
	}
	return m, nil
}
