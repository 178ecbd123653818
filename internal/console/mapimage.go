package console

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"math"
	"net/http"

	"google.golang.org/grpc/metadata"

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

// serveMap draws the mission's current merged map (north up) and marks each
// agent's estimated start pose with a disc and a heading tick in the
// agent's colour, the same colour as its row in the poses table. The map
// service keeps only the fused grid, not each agent's layer, so an agent's
// contribution is shown by where it stood, not by which walls it drew.
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
	resp, err := c.deps.Maps.GetMap(metadata.NewOutgoingContext(ctx, metadata.MD{}), &mappingv1.GetMapRequest{MissionId: id})
	if err != nil {
		c.renderRPCError(w, r, "map of mission "+id, err)
		return
	}
	png, err := drawMap(resp.GetGrid(), mresp.GetMission().GetPoses())
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, "Bad map", err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(png)
}

// drawMap renders og scaled up and marks poses on it.
func drawMap(og *typesv1.OccupancyGrid, poses []*typesv1.AgentPose) ([]byte, error) {
	g, err := slamproto.GridFromProto(og)
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	m := g.Meta()
	k := max(1, mapImageSide/max(m.Width, m.Height))
	img := render.Scale(render.Image(g), k)
	for i, p := range poses {
		markPose(img, m, k, p.GetMapFromAgent(), render.Palette[i%len(render.Palette)])
	}
	var buf bytes.Buffer
	if err := render.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// markPose draws a disc at pose p (map frame, metres) with a tick along its
// heading. The image is north up: row 0 is the grid's last row.
func markPose(img *image.NRGBA, m grid.Meta, k int, p *typesv1.Pose2D, col color.NRGBA) {
	cx, cy, ok := m.CellOf(p.GetX(), p.GetY())
	if !ok {
		return
	}
	px := float64(cx*k + k/2)
	py := float64((m.Height-1-cy)*k + k/2)
	radius := float64(max(4, 2*k))
	b := img.Bounds()
	set := func(x, y float64) {
		ix, iy := int(math.Round(x)), int(math.Round(y))
		if image.Pt(ix, iy).In(b) {
			img.SetNRGBA(ix, iy, col)
		}
	}
	for dy := -radius; dy <= radius; dy++ {
		for dx := -radius; dx <= radius; dx++ {
			if dx*dx+dy*dy <= radius*radius {
				set(px+dx, py+dy)
			}
		}
	}
	// The heading tick: image y grows downwards, map y upwards.
	for s := 0.0; s <= 3*radius; s++ {
		set(px+s*math.Cos(p.GetTheta()), py-s*math.Sin(p.GetTheta()))
	}
}
