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

// sentinels are the errors Detail takes out of a message.
var sentinels = []error{
	ErrInvalidArgument, ErrTooLarge, ErrCapacity, ErrInsufficientData,
	ErrInsufficientOverlap, ErrAmbiguousMatch, ErrInconsistent,
}

// Detail is err's message for a user: err.Error() with the text of every
// sentinel above taken out where a detail follows it ("slam: insufficient
// data: the anchor placed…" reads "the anchor placed…"), and only its
// "slam: " where none does. The sentinels name a Go error value for
// errors.Is; the services report the category as the status's ErrorInfo
// reason, so the message need not repeat it. Detail(nil) is "".
func Detail(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, s := range sentinels {
		text := s.Error()
		msg = strings.ReplaceAll(msg, text+": ", "")
		msg = strings.ReplaceAll(msg, text, strings.TrimPrefix(text, "slam: "))
	}
	return msg
}
