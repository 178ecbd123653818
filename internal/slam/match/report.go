package match

import (
	"fmt"
	"math"

	"github.com/slammesh/slammesh/internal/slam"
)

// What a localization searched and why it refused: the window, the typed
// error with the best attempt, and the summary every refusal carries.

// Window is the region a localization searched: translations in
// [MinX, MaxX] × [MinY, MaxY] (metres, map frame), headings within
// ±HalfTheta of Center.Theta (π: every heading). Global marks a search of
// the whole map for an agent without an initial guess.
type Window struct {
	Global                 bool
	Center                 slam.Pose2D
	MinX, MinY, MaxX, MaxY float64
	HalfTheta              float64
}

// edgeTurn is how close (radians) to the rotational edge of a window a pose
// counts as on it; translations use one coarse cell.
const edgeTurn = 2 * math.Pi / 180

// onEdge reports whether p lies within step metres (or edgeTurn) of the
// border of a windowed search. A global search has no edge.
func (w Window) onEdge(p slam.Pose2D, step float64) bool {
	if w.Global {
		return false
	}
	if p.X <= w.MinX+step || p.X >= w.MaxX-step || p.Y <= w.MinY+step || p.Y >= w.MaxY-step {
		return true
	}
	return w.HalfTheta < math.Pi && math.Abs(slam.AngleDiff(p.Theta, w.Center.Theta)) >= w.HalfTheta-edgeTurn
}

// Name is String without the bounds of a whole-map search, which are the
// map's: "the whole map (no initial guess)".
func (w Window) Name() string {
	if w.Global {
		return "the whole map (no initial guess)"
	}
	return w.String()
}

// contains reports whether p lies in the window.
func (w Window) contains(p slam.Pose2D) bool {
	return w.Global || (p.X >= w.MinX && p.X <= w.MaxX && p.Y >= w.MinY && p.Y <= w.MaxY &&
		math.Abs(slam.AngleDiff(p.Theta, w.Center.Theta)) <= w.HalfTheta)
}

// String describes the window for error messages.
func (w Window) String() string {
	head := "all headings"
	if w.HalfTheta < math.Pi {
		head = fmt.Sprintf("heading %.3f ± %.3f rad", w.Center.Theta, w.HalfTheta)
	}
	what := "window"
	if w.Global {
		what = "whole map (no initial guess)"
	}
	return fmt.Sprintf("%s x [%.2f, %.2f] y [%.2f, %.2f] m, %s", what, w.MinX, w.MaxX, w.MinY, w.MaxY, head)
}

// LocalizationError explains why an agent could not be localized; it wraps
// one of slam.ErrInsufficientData, slam.ErrInsufficientOverlap or
// slam.ErrAmbiguousMatch.
type LocalizationError struct {
	Reason    error
	Result    Result  // the best attempt
	Threshold float64 // the threshold that was missed
	// Verification marks a pose refused because its free space
	// contradicts the reference (Result.FreeConflict > Threshold).
	Verification bool
	// Outside is the score of a pose outside the search window that beats
	// the window's best by more than Threshold (crossCheck); 0 if none.
	Outside float64
	// Edge marks a pose refused because it lies on the edge of the search
	// window: the best match of a window that does not hold the truth sits
	// against its border, so the guess is probably farther off than the
	// window allows.
	Edge bool
	// Crowd marks a wide search's answer refused because it does not
	// stand clear of the other peaks (Result.Margin < Threshold).
	Crowd bool
	// WindowLimit is a verification refusal's limit for a window no wider
	// than the default (Options.MaxFreeConflict; 0: the default), against
	// which Threshold tells a wide search's lower limit.
	WindowLimit float64
	// Wide marks too few occupied cells for a search this wide
	// (Options.MinWidePoints): a default window around a guess needs
	// fewer.
	Wide bool
	// OnEdge marks a refused pose that lies on the edge of the search
	// window (or past it: the refinement may leave the coarse window),
	// whatever it was refused for: a window that does not hold the truth
	// has its best match against its border, so the guess may be farther
	// off than the window, which Hint says.
	OnEdge bool
}

// widenAdvice is what to do about a guess farther off than its window, in
// the API's terms and slamctl's.
const widenAdvice = "widen the window with search_window_m / search_window_rad (slamctl --search-window-m / --search-window-deg), or leave the initial guess out"

// WidenAdvice is what to do about a guess farther off than its window. When
// the submap's cells lie far from its frame's origin (a ROS map sent as a
// submap keeps its YAML origin), it adds how wide a window the heading's
// half-width needs: the window is one of map_from_agent, and a guess whose
// heading is off by δ but whose cells lie right puts the origin about
// CellsFromOrigin·δ off.
func (e *LocalizationError) WidenAdvice() string {
	w := e.Result.Search
	d := e.Result.CellsFromOrigin
	half := math.Min(w.MaxX-w.MinX, w.MaxY-w.MinY) / 2
	swing := 2 * d * math.Sin(w.HalfTheta/2)
	if w.Global || w.HalfTheta >= math.Pi || swing <= half {
		return widenAdvice
	}
	return fmt.Sprintf("%s (the submap's cells lie %.1f m from its frame's origin, so a guess whose heading is off but whose cells lie right puts the origin %.2f m off per degree: a window of ±%.0f° needs search_window_m of about %.1f)",
		widenAdvice, d, d*math.Pi/180, w.HalfTheta*180/math.Pi, half+swing)
}

// WideDataAdvice is what to do about a submap too small for the search it
// asked for: after a whole-map search, give a guess; after a wide window,
// narrow it (the guess was given: found by a review).
func WideDataAdvice(w Window) string {
	const why = "a submap of few walls (a few scans, a small map) matches some wrong place of a wide search as well as its own; "
	const more = "or send more of it (more scans; of a map, more of its area, or its grey walls kept by a lower occupied_thresh)"
	if w.Global {
		return why + "give an initial guess near the agent's pose (a default window needs fewer), " + more
	}
	return why + "narrow the window around a nearer guess with search_window_m / search_window_rad (slamctl --search-window-m / --search-window-deg; the default needs fewer), " + more
}

// Hint is the advice a refusal on the window's edge adds to its own
// reason ("" for any other, and for Edge, whose message is that advice).
func (e *LocalizationError) Hint() string {
	if !e.OnEdge || e.Edge {
		return ""
	}
	return "; the best pose lies on the edge of the search window, so the guess may be farther off: " + e.WidenAdvice()
}

// Error states the reason with the measured value and the threshold it missed.
func (e *LocalizationError) Error() string {
	who := "submap"
	if e.Result.Agent >= 0 {
		who = fmt.Sprintf("agent %d", e.Result.Agent)
	}
	switch {
	case e.Reason == slam.ErrInsufficientData && e.Wide:
		return fmt.Sprintf("%v: %s has %d occupied cells, a search of %s needs %d: %s", e.Reason, who, e.Result.Points, e.Result.Search.Name(), int(e.Threshold), WideDataAdvice(e.Result.Search))
	case e.Reason == slam.ErrInsufficientData:
		return fmt.Sprintf("%v: %s has %d occupied cells, need %d", e.Reason, who, e.Result.Points, int(e.Threshold))
	case e.Crowd:
		return fmt.Sprintf("%v: %s best pose does not stand clear of the other poses of a wide search (margin %.4f < %.4f over the best other peak, verified or not): the agent may not overlap the reference; %s%s",
			e.Reason, who, e.Result.Margin, e.Threshold, e.Result.SearchSummary(), e.CrowdHint())
	case e.Reason == slam.ErrAmbiguousMatch:
		return fmt.Sprintf("%v: %s ambiguity %.3f > %.3f (%s)", e.Reason, who, e.Result.Ambiguity, e.Threshold, e.Result.SearchSummary())
	case e.Outside != 0:
		return fmt.Sprintf("%v: %s best pose in the search window refused: a pose outside it explains the submap better (score %.3f against %.3f): the guess is farther off than the window: %s; %s",
			e.Reason, who, e.Outside, e.Result.Score, e.WidenAdvice(), e.Result.SearchSummary())
	case e.Edge:
		return fmt.Sprintf("%v: %s best pose is on the edge of the search window: the guess may be farther off: %s; %s", e.Reason, who, e.WidenAdvice(), e.Result.SearchSummary())
	case e.Verification:
		return fmt.Sprintf("%v: %s best pose refused by verification: it contradicts the reference (free conflict %.3f > %.2f: %s; %s)%s",
			e.Reason, who, e.Result.FreeConflict, e.Threshold, e.ConflictCause(), e.Result.SearchSummary(), e.Hint())
	default:
		return fmt.Sprintf("%v: %s score %.3f < %.3f (%s)%s", e.Reason, who, e.Result.Score, e.Threshold, e.Result.SearchSummary(), e.Hint())
	}
}

// CrowdHint is the advice a crowd refusal adds: a guess, after a search of
// the whole map (a window's answer has the edge's hint instead).
func (e *LocalizationError) CrowdHint() string {
	if e.Result.Search.Global {
		return "; an initial guess near the agent's pose searches a window instead, where a clear peak is not needed"
	}
	return e.Hint()
}

// ConflictCause says what a refusal by verification can mean and the one
// thing a user can do about a changed world: after a wide search (whose
// limit, Options.MaxWideFreeConflict, is below a window's), search less
// wide; around a guess, raise the mission's max_free_conflict.
func (e *LocalizationError) ConflictCause() string {
	why := "the submap's free space crosses the reference's walls there: a wrong pose, or a world that changed between the passes"
	window := e.WindowLimit
	if window == 0 {
		window = DefaultMaxFreeConflict
	}
	switch {
	case e.Threshold >= window && e.Result.FreeConflict > 1:
		// No limit the mission may set (at most 1) accepts it.
		why += fmt.Sprintf("; its conflict %.3f is past anything max_free_conflict (at most 1) accepts: most likely the pose is wrong, so check the agent's initial guess", e.Result.FreeConflict)
	case e.Threshold >= window && e.Result.FreeConflict > 0.9995:
		// "above 1.000" would read as past the largest limit, which takes
		// a conflict of 1 (the gate refuses only more than the limit).
		why += "; only max_free_conflict 1, its largest, accepts this pose: most likely the pose is wrong, so check the agent's initial guess"
	case e.Threshold >= window:
		// A window no wider than the default: its limit is the mission's.
		why += fmt.Sprintf("; in a much changed world, max_free_conflict (slamctl --max-free-conflict) above %.3f accepts this pose, and wrong ones more easily too", e.Result.FreeConflict)
	case e.Result.Search.Global:
		why += fmt.Sprintf("; a search of the whole map allows less than a guessed window's %.2f, so an initial guess near the pose accepts more change", window)
	default:
		why += fmt.Sprintf("; a window this wide allows less than the default window's %.2f, so a narrower window around a guess nearer the pose accepts more change", window)
	}
	return why
}

// SearchSummary says what was searched and what was found: the window, the
// best pose and score, and the runner-up; or that no pose scored at all (a
// window off the reference, or over none of its walls), where a "best" pose
// would only be the guess repeated.
func (r Result) SearchSummary() string {
	if r.Score == 0 && r.RunnerUpScore == 0 {
		return fmt.Sprintf("searched %s; no pose in it puts any of the submap's points near a wall of the reference (is the window over the mission map?)", r.Search)
	}
	s := fmt.Sprintf("searched %s; best (%.2f, %.2f, %.3f) score %.3f free conflict %.3f",
		r.Search, r.Pose.X, r.Pose.Y, r.Pose.Theta, r.Score, r.FreeConflict)
	if r.RunnerUpScore > 0 {
		s += fmt.Sprintf("; runner-up (%.2f, %.2f, %.3f) score %.3f", r.RunnerUp.X, r.RunnerUp.Y, r.RunnerUp.Theta, r.RunnerUpScore)
		if r.RunnerUpScore > r.Score {
			// A review read this as a runner-up that beat the best.
			s += " (poses rank by score less free-space conflict)"
		}
	} else {
		s += "; no runner-up"
	}
	return s
}

// Unwrap lets errors.Is match the sentinel.
func (e *LocalizationError) Unwrap() error { return e.Reason }
