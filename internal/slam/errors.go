package slam

import (
	"errors"
	"strings"
)

// The sentinel errors below are the domain's vocabulary of failure. Services
// test for them with errors.Is and map each to one gRPC code and ErrorInfo
// reason in a single place; detail structs in the sub-packages (for example
// match.LocalizationError, fuse.InconsistencyError, grid.CapacityError) wrap
// them and carry the numbers behind the decision.
var (
	// ErrInvalidArgument marks input that can never succeed: non-finite poses,
	// non-positive resolutions, empty or malformed scans, bad int8 cells.
	ErrInvalidArgument = errors.New("slam: invalid argument")

	// ErrTooLarge marks a grid beyond grid.MaxCells: a request no budget could
	// hold, refused before any memory is allocated.
	ErrTooLarge = errors.New("slam: grid too large")

	// ErrCapacity marks a grid that is valid but larger than the remaining
	// capacity budget of a map store.
	ErrCapacity = errors.New("slam: capacity budget exceeded")

	// ErrInsufficientData marks a submap with too few occupied cells to be
	// matched at all.
	ErrInsufficientData = errors.New("slam: insufficient data")

	// ErrInsufficientOverlap marks a match whose best score is below the
	// acceptance threshold: the submap does not overlap the reference enough.
	ErrInsufficientOverlap = errors.New("slam: insufficient overlap")

	// ErrAmbiguousMatch marks a match whose second-best distinct peak scores
	// almost as well as the best one, so the pose cannot be trusted.
	ErrAmbiguousMatch = errors.New("slam: ambiguous match")

	// ErrInconsistent marks a fusion whose inputs disagree about too many
	// cells they both observed, which means a wrong pose or a changed world.
	ErrInconsistent = errors.New("slam: inconsistent maps")
)

// sentinels are the errors Detail rewrites. keep: the sentinel's words
// say what is wrong with a size (grid too large, capacity budget
// exceeded), and only its "slam: " goes; the others are the category that
// the status's code or reason names already, and go whole.
var sentinels = []struct {
	err  error
	keep bool
}{
	{ErrInvalidArgument, false}, {ErrTooLarge, true}, {ErrCapacity, true},
	{ErrInsufficientData, false}, {ErrInsufficientOverlap, false},
	{ErrAmbiguousMatch, false}, {ErrInconsistent, false},
}

// Detail is err's message for a user. The sentinels above name a Go error
// value for errors.Is, and a status's code or reason names their
// category: a sentinel followed by a detail is taken out ("slam:
// insufficient data: the anchor placed…" reads "the anchor placed…"),
// except the two whose words say what is wrong ("slam: grid too large:
// 1e+06x33 m…" reads "grid too large: 1e+06x33 m…"); any other loses only
// its "slam: ". Detail(nil) is "".
func Detail(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, s := range sentinels {
		text := s.err.Error()
		if !s.keep {
			msg = strings.ReplaceAll(msg, text+": ", "")
		}
		msg = strings.ReplaceAll(msg, text, strings.TrimPrefix(text, "slam: "))
	}
	return msg
}
