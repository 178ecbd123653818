package mapping

import (
	"errors"
	"fmt"
	"math"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Map request limits. maxSideM keeps the metre-to-cell arithmetic far from
// overflow; grid.MaxCells bounds what a single grid may hold whatever the
// budget, so anything beyond it is a bad request rather than a full store.
const (
	defaultResolution = 0.05
	minResolution     = 1e-3
	maxResolution     = 100
	maxSideM          = 10_000
)

// specMeta validates an AllocateMap spec and returns the grid it asks for.
func specMeta(spec *typesv1.MapSpec) (grid.Meta, error) {
	if spec == nil {
		return grid.Meta{}, rpcerr.InvalidArgument("spec", "required")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"spec.origin_x", spec.GetOriginX()}, {"spec.origin_y", spec.GetOriginY()}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || math.Abs(f.v) > slam.MaxCoordinate {
			return grid.Meta{}, rpcerr.InvalidArgument(f.name, fmt.Sprintf("%g must be finite and within ±%g m", f.v, slam.MaxCoordinate))
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"spec.width_m", spec.GetWidthM()}, {"spec.height_m", spec.GetHeightM()}} {
		if math.IsNaN(f.v) || f.v <= 0 || f.v > maxSideM {
			return grid.Meta{}, rpcerr.InvalidArgument(f.name, fmt.Sprintf("%g m must be in (0, %d]", f.v, maxSideM))
		}
	}
	res := spec.GetResolution()
	if res == 0 {
		res = defaultResolution
	}
	if math.IsNaN(res) || res < minResolution || res > maxResolution {
		return grid.Meta{}, rpcerr.InvalidArgument("spec.resolution", fmt.Sprintf("%g m must be in [%g, %g] (0 means %g)", res, minResolution, float64(maxResolution), defaultResolution))
	}
	meta, err := grid.MetaForBounds(spec.GetOriginX(), spec.GetOriginY(), spec.GetWidthM(), spec.GetHeightM(), res)
	switch {
	case errors.Is(err, slam.ErrTooLarge):
		return grid.Meta{}, rpcerr.InvalidArgument("spec", fmt.Sprintf("%gx%g m at %g m is more than the %d cells of the largest grid; %s", spec.GetWidthM(), spec.GetHeightM(), res, grid.MaxCells, grid.FewerCells))
	case err != nil:
		// Every input was checked above, so this is a disagreement between
		// these checks and the domain's; report it against the whole spec.
		return grid.Meta{}, rpcerr.InvalidArgument("spec", slam.Detail(err))
	}
	return meta, nil
}
