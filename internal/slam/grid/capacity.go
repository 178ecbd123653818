package grid

import (
	"fmt"

	"github.com/slammesh/slammesh/internal/slam"
)

// CapacityError says that a grid request does not fit the remaining capacity
// of a map store; it wraps slam.ErrCapacity and carries the numbers for the
// error message the operator sees.
type CapacityError struct {
	Requested int64 // cells asked for
	Available int64 // cells still free in the budget
}

// Error says how much was asked for and how much is left.
func (e *CapacityError) Error() string {
	return fmt.Sprintf("slam: grid of %d cells exceeds remaining capacity of %d cells", e.Requested, e.Available)
}

// Unwrap lets errors.Is(err, slam.ErrCapacity) match.
func (e *CapacityError) Unwrap() error { return slam.ErrCapacity }

// CheckCapacity validates meta and checks its cell count against the cells
// still available in a budget. The mapping service calls it before New so
// that an oversized world is a clean RESOURCE_EXHAUSTED, not an allocation.
func CheckCapacity(meta Meta, availableCells int64) error {
	if err := meta.Validate(); err != nil {
		return err
	}
	if n := meta.Cells(); n > availableCells {
		return &CapacityError{Requested: n, Available: max(availableCells, 0)}
	}
	return nil
}
