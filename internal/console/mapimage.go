package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam/grid"
	"github.com/slammesh/slammesh/internal/slam/render"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// mapImageSide is the longest side, in pixels, the map image is scaled up
// to (by an integer factor, so cells stay square).
const mapImageSide = 640

// serveMap draws the mission's current merged map (north up), each known
// cell tinted in the colour of the agent whose evidence decided it (the
// merge's contributor layer: free floor pale, walls in full colour), and
// marks each agent's estimated start pose with a disc and a heading tick.
// The colours are the poses table's and the legend's (agentColours). A map
// version without a layer (merged before layers were stored, or too large
// to fetch in one message with it) is drawn in grey levels with the poses
// only; one too large to fetch in one message even without it is read in
// chunks (StreamMap) and drawn so too.
func (c *Console) serveMap(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if c.deps.Maps == nil {
		c.renderError(w, r, http.StatusNotFound, "Not found", "this console has no map service")
		return
	}
	ctx, cancel := c.call(r)
	defer cancel()
	mresp, err := c.deps.Orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
	if err != nil {
		c.renderRPCError(w, r, "mission "+id, err)
		return
	}
	// The mapping service takes no user tokens: the user's token goes to the
	// orchestrator only (GetMission above checked the role).
	mctx := metadata.NewOutgoingContext(ctx, metadata.MD{})
	resp, err := c.deps.Maps.GetMap(mctx, &mappingv1.GetMapRequest{MissionId: id, IncludeContributors: true})
	if status.Code(err) == codes.ResourceExhausted {
		// The layer doubles the reply: a map that fits one message only
		// without it is still drawn, untinted.
		resp, err = c.deps.Maps.GetMap(mctx, &mappingv1.GetMapRequest{MissionId: id})
	}
	if s, ok := c.deps.Maps.(mapStreamer); ok && status.Code(err) == codes.ResourceExhausted {
		// Over the message limit even alone (a real-data mission's map
		// of more than 16 M cells): the chunked read serves any size.
		resp, err = streamMap(mctx, s, id)
	}
	if err != nil {
		c.renderRPCError(w, r, "map of mission "+id, err)
		return
	}
	png, err := drawMap(resp.GetGrid(), resp.GetContributors(), mresp.GetMission().GetPoses())
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, "Bad map", err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(png)
}

// mapStreamer is the chunked map read of a mappingv1.MappingServiceClient,
// which the console uses when a map exceeds one message.
type mapStreamer interface {
	StreamMap(ctx context.Context, in *mappingv1.StreamMapRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mappingv1.StreamMapResponse], error)
}

// streamMap reads the current version of mission id's map with StreamMap
// (cells only, no layer) as a GetMapResponse, checking that it got every
// cell the first message announced.
func streamMap(ctx context.Context, s mapStreamer, id string) (*mappingv1.GetMapResponse, error) {
	stream, err := s.StreamMap(ctx, &mappingv1.StreamMapRequest{MissionId: id})
	if err != nil {
		return nil, err
	}
	var header *mappingv1.StreamMapResponse
	var cells []byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if header == nil {
			header = msg
			cells = make([]byte, 0, int(min(msg.GetTotalCells(), grid.MaxCells)))
		}
		if cells = append(cells, msg.GetCells()...); len(cells) > grid.MaxCells {
			return nil, status.Errorf(codes.DataLoss, "map stream of mission %s: more than %d cells", id, grid.MaxCells)
		}
	}
	if header == nil || uint64(len(cells)) != header.GetTotalCells() {
		return nil, status.Errorf(codes.DataLoss, "map stream of mission %s ended after %d cells of %d", id, len(cells), header.GetTotalCells())
	}
	return &mappingv1.GetMapResponse{
		MapId: header.GetMapId(), Version: header.GetVersion(), CurrentVersion: header.GetCurrentVersion(),
		Grid: &typesv1.OccupancyGrid{Meta: header.GetMeta(), Data: cells},
	}, nil
}

// agentColours gives each agent of poses its palette colour by its index
// among the poses, the order the poses table lists them in; an agent of
// layer that has no pose (none in practice: the merge fuses the localized
// agents) gets the next colour after them.
func agentColours(poses []*typesv1.AgentPose, layer *typesv1.ContributorLayer) map[string]color.NRGBA {
	out := make(map[string]color.NRGBA, len(poses))
	next := 0
	add := func(id string) {
		if _, ok := out[id]; !ok {
			out[id] = render.Palette[next%len(render.Palette)]
			next++
		}
	}
	for _, p := range poses {
		add(p.GetAgentId())
	}
	for _, id := range layer.GetAgentIds() {
		add(id)
	}
	return out
}

// drawMap renders og scaled up, tints its cells by layer (nil: no tint)
// and marks poses on it.
func drawMap(og *typesv1.OccupancyGrid, layer *typesv1.ContributorLayer, poses []*typesv1.AgentPose) ([]byte, error) {
	g, err := slamproto.GridFromProto(og)
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	m := g.Meta()
	img := render.Image(g)
	colours := agentColours(poses, layer)
	if layer != nil {
		if err := tint(img, m, layer, colours); err != nil {
			return nil, err
		}
	}
	k := max(1, mapImageSide/max(m.Width, m.Height))
	img = render.Scale(img, k)
	for _, p := range poses {
		markPose(img, m, k, p.GetMapFromAgent(), colours[p.GetAgentId()])
	}
	var buf bytes.Buffer
	if err := render.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tint blends every attributed cell of img (one pixel per cell, north up,
// as render.Image draws it) with its agent's colour: shade·(1-a) + colour·a
// with a from 0.35 for free white to 1 for occupied black, so free floor is
// a pale wash and walls are the agent's colour. A layer whose size or
// indexes do not fit the map is an error: drawing it would misplace cells.
func tint(img *image.NRGBA, m grid.Meta, layer *typesv1.ContributorLayer, colours map[string]color.NRGBA) error {
	cells, ids := layer.GetCells(), layer.GetAgentIds()
	if len(cells) != m.Width*m.Height {
		return fmt.Errorf("map: contributor layer has %d cells, the grid %d", len(cells), m.Width*m.Height)
	}
	for y := range m.Height {
		row := (m.Height - 1 - y) * img.Stride
		for x, c := range cells[y*m.Width : (y+1)*m.Width] {
			if c == 0 {
				continue
			}
			if int(c) > len(ids) {
				return fmt.Errorf("map: contributor layer names agent #%d of %d", c, len(ids))
			}
			col := colours[ids[c-1]]
			px := img.Pix[row+4*x : row+4*x+4]
			shade := int(px[0]) // render.Image draws known cells grey: R = G = B
			a := 350 + 650*(255-shade)/255
			px[0] = uint8((shade*(1000-a) + int(col.R)*a) / 1000)
			px[1] = uint8((shade*(1000-a) + int(col.G)*a) / 1000)
			px[2] = uint8((shade*(1000-a) + int(col.B)*a) / 1000)
		}
	}
	return nil
}

// markPose draws a disc at pose p (map frame, metres), rimmed in black,
// with a tick along its heading. The image is north up: row 0 is the grid's last row.
func markPose(img *image.NRGBA, m grid.Meta, k int, p *typesv1.Pose2D, col color.NRGBA) {
	cx, cy, ok := m.CellOf(p.GetX(), p.GetY())
	if !ok {
		return
	}
	px := float64(cx*k + k/2)
	py := float64((m.Height-1-cy)*k + k/2)
	radius := float64(max(4, 2*k))
	b := img.Bounds()
	set := func(x, y float64, c color.NRGBA) {
		ix, iy := int(math.Round(x)), int(math.Round(y))
		if image.Pt(ix, iy).In(b) {
			img.SetNRGBA(ix, iy, c)
		}
	}
	disc := func(r float64, c color.NRGBA) {
		for dy := -r; dy <= r; dy++ {
			for dx := -r; dx <= r; dx++ {
				if dx*dx+dy*dy <= r*r {
					set(px+dx, py+dy, c)
				}
			}
		}
	}
	// A dark rim keeps the disc visible on walls tinted its own colour.
	disc(radius+2, color.NRGBA{A: 255})
	disc(radius, col)
	// The heading tick: image y grows downwards, map y upwards.
	for s := 0.0; s <= 3*radius; s++ {
		set(px+s*math.Cos(p.GetTheta()), py-s*math.Sin(p.GetTheta()), col)
	}
}
