// Package match localizes an agent's submap in a reference map: it estimates
// map_from_agent by correlative scan matching around an initial guess,
// coarse to fine, on likelihood fields of the reference, and refines the best
// peak with ICP against the nearest occupied reference cells. It reports a
// score, an inlier ratio and an ambiguity (second-best distinct peak / best
// peak), and refuses to answer, with a typed error, when the data is too thin,
// the overlap too small or the answer ambiguous.
//
// LocalizeAll localizes a whole team. The anchor agents (poses given: a
// surveyed dock) define the map frame; every other agent is matched against
// the fusion of the agents localized so far, in rounds: within a round the
// remaining agents are matched in parallel (at most Options.Parallelism at a
// time) against the same reference, the successes are fused into the
// reference in agent-index order, and the failures are retried next round,
// until a round localizes nobody. Matching against the fused team map rather
// than the anchor alone is what lets an agent that never saw the anchor's
// area be localized through a teammate. Two refinements, both measured to
// matter (docs/slam.md):
//
//   - confident first: in a round where some agent scored at least
//     ConfidentScore, agents that merely passed MinScore are not fused yet
//     but retried next round against the richer reference, so a thin
//     overlap does not bake its larger error into everybody's reference;
//   - a final pass re-matches each agent locally (fine search and ICP)
//     against the fusion of all the others, anchors fixed, which removes
//     most of the error an early, thin match carried.
//
// Failures are typed: if some agents remain unlocalized, the error wraps
// slam.ErrAmbiguousMatch when any of them was ambiguous, else
// slam.ErrInsufficientOverlap, else slam.ErrInsufficientData.
package match

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Default thresholds, calibrated on 100 seeded worlds of each kind with 2–4
// agents (docs/slam.md has the distributions):
//   - MinScore 0.30: a sealed agent scores at most 0.08, office agents at
//     least 0.49 once localized; matches between 0.30 and ConfidentScore are
//     accepted only when nothing better is possible (see LocalizeAll).
//   - MaxAmbiguity 0.90: office agents stay below 0.67, the changed agent
//     of a ChangedWorld below 0.85, a symmetric corridor is above 0.95.
//   - distinctXY 0.4 m: competing peaks closer than that are the same basin
//     sliding along a wall; the corridor's repetition (0.6 m) is farther.
const (
	DefaultWindowXY       = 1.0                // metres, ± around the guess
	DefaultWindowTheta    = 20 * math.Pi / 180 // radians, ± around the guess
	DefaultMinPoints      = 100
	DefaultMinScore       = 0.25
	DefaultMaxAmbiguity   = 0.90
	DefaultConfidentScore = 0.55
	DefaultICPIters       = 30
	// DefaultMaxFreeConflict: see Options and verify.go; calibrated in
	// docs/slam.md.
	DefaultMaxFreeConflict = 0.5
	// DefaultMaxWideFreeConflict: see Options.MaxWideFreeConflict and
	// Options.freeConflictLimit; calibrated in docs/slam.md §5.
	DefaultMaxWideFreeConflict = 0.25
	// DefaultMinWideMargin: see Options.MinWideMargin; calibrated in
	// docs/slam.md §5.
	DefaultMinWideMargin = 0.07
	// DefaultMinWidePoints: see Options.MinWidePoints.
	DefaultMinWidePoints = 300
	// wideSearchRatio is the search volume, in default windows, from which
	// a search counts as wide: its verification limit is
	// MaxWideFreeConflict (see Options.freeConflictLimit). A whole-map
	// search of the smallest real map (Intel, 31×33 m) is about 2300
	// default windows; the far-guess window of TestRealMissions (±3.5 m,
	// ±100°) about 61.
	wideSearchRatio = 64
	// crossCheckMargin: a windowed match is refused when a pose outside
	// the window scores higher by more than this (see crossCheck).
	crossCheckMargin = 0.10
	// A windowed match that explains at least crossCheckSkipScore of its
	// walls with at most crossCheckSkipConflict of contradiction is not
	// cross-checked: no wrong pose in the offset sweep came that close
	// (their conflicts start at 0.1), and the global search is most of the
	// cost of a windowed match.
	crossCheckSkipScore    = 0.5
	crossCheckSkipConflict = 0.05
	// MaxWindowXY and MaxWindowTheta bound a requested search window;
	// larger windows are clipped to the map anyway.
	MaxWindowXY    = 1000.0
	MaxWindowTheta = math.Pi
	candidates     = 8
	refineMaxShift = 0.2               // metres the refinement pass may move a pose
	refineMaxTurn  = 2 * math.Pi / 180 // radians, likewise
	distinctXY     = 0.4               // metres between two peaks that count as distinct
	distinctTheta  = 3 * math.Pi / 180 // radians, likewise
)

// Options tune Localize and LocalizeAll; zero fields select the defaults.
type Options struct {
	WindowXY    float64 // search half-width in x and y, metres
	WindowTheta float64 // search half-width in heading, radians
	MinPoints   int     // fewer occupied submap cells: slam.ErrInsufficientData
	MinScore    float64 // lower final score: slam.ErrInsufficientOverlap
	// ConfidentScore is the score LocalizeAll fuses a match at without
	// waiting: in a round where some agent reached it, agents between
	// MinScore and ConfidentScore are retried next round against the richer
	// reference instead (see LocalizeAll).
	ConfidentScore float64
	MaxAmbiguity   float64 // higher ambiguity: slam.ErrAmbiguousMatch
	// MaxFreeConflict is the verification: a pose whose reference walls
	// crossing the agent's free space (in cells, over the agent's occupied
	// cells) exceed it is refused with slam.ErrInsufficientOverlap.
	MaxFreeConflict float64
	// MaxWideFreeConflict is the verification limit of a wide search (no
	// initial guess: the whole map at every heading; or a window of
	// wideSearchRatio default windows or more); between the default window
	// and that, the limit falls from MaxFreeConflict log-linearly in the
	// search volume. Multiple comparisons: a search over thousands of
	// times more poses than a guessed window finds, by chance, some wrong
	// pose whose score passes MinScore where the agent barely overlaps the
	// reference (0.26 for Freiburg 079 segments whose truth scores 0.055);
	// such a pose lines up some walls but lays others across the agent's
	// open floor, so what a wide search accepts must explain the agent's
	// free space much better than a guessed one must.
	MaxWideFreeConflict float64
	// MinWideMargin is the margin (Result.Margin) a wide search's answer
	// must keep over every other refined peak, verified or not, scaled by
	// wideness (0 for a default window); less is slam.ErrInsufficientOverlap.
	// Multiple comparisons again: where the agent's true pose is not in
	// the reference (a sealed room, segments that barely overlap), the
	// best of thousands of poses is one of a crowd of similar chance
	// peaks, most of which fail verification; the truth of an agent that
	// does overlap stands clear of them.
	MinWideMargin float64
	// MinWidePoints is the fewest occupied submap cells a wide search
	// accepts, scaled by wideness from MinPoints (a default window);
	// fewer is slam.ErrInsufficientData. Multiple comparisons once more: a
	// few scans (an Intel scan occupies 100–170 cells) match some wrong
	// place of a whole map as well as their own, uniquely or 180° turned,
	// and their walls are too few for the merge to judge (docs/slam.md
	// §5: of 452 whole-map searches of 1–10 Intel scans that merged, 12
	// were wrong poses, 2 of them at 300 cells or more).
	MinWidePoints int
	ICPIters      int // ICP iteration cap
	Parallelism   int // LocalizeAll: agents matched, and refined, at once (0: GOMAXPROCS)
	// SkipRefinement turns off LocalizeAll's final pass that re-matches
	// each agent against the rest of the team (see refineAll).
	SkipRefinement bool
}

func (o Options) withDefaults() (Options, error) {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.WindowXY, DefaultWindowXY)
	def(&o.WindowTheta, DefaultWindowTheta)
	def(&o.MinScore, DefaultMinScore)
	def(&o.MaxAmbiguity, DefaultMaxAmbiguity)
	def(&o.ConfidentScore, DefaultConfidentScore)
	def(&o.MaxFreeConflict, DefaultMaxFreeConflict)
	def(&o.MaxWideFreeConflict, DefaultMaxWideFreeConflict)
	def(&o.MinWideMargin, DefaultMinWideMargin)
	if o.MinPoints == 0 {
		o.MinPoints = DefaultMinPoints
	}
	if o.MinWidePoints == 0 {
		o.MinWidePoints = DefaultMinWidePoints
	}
	if o.ICPIters == 0 {
		o.ICPIters = DefaultICPIters
	}
	for _, v := range []float64{o.WindowXY, o.WindowTheta, o.MinScore, o.MaxAmbiguity, o.ConfidentScore, o.MaxFreeConflict, o.MaxWideFreeConflict, o.MinWideMargin} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return o, fmt.Errorf("%w: match options must be finite and not negative", slam.ErrInvalidArgument)
		}
	}
	if o.WindowXY > MaxWindowXY || o.WindowTheta > MaxWindowTheta || o.MinPoints < 0 || o.MinWidePoints < 0 || o.ICPIters < 0 || o.Parallelism < 0 {
		return o, fmt.Errorf("%w: match options out of range (window ≤ %g m, ≤ π rad)", slam.ErrInvalidArgument, MaxWindowXY)
	}
	return o, nil
}

// Result is the outcome of localizing one agent. On failure it still holds
// the best attempt, which is what an operator wants to see.
type Result struct {
	Agent       int         // index in LocalizeAll's input; -1 from Localize
	Pose        slam.Pose2D // estimated map_from_agent
	Localized   bool
	Anchor      bool    // the pose was given, not estimated
	Round       int     // LocalizeAll round that localized it (0 for anchors)
	Score       float64 // mean fine likelihood of all submap points at Pose, 0..1
	InlierRatio float64 // fraction of submap points within 2 cells of an occupied reference cell
	Ambiguity   float64 // best distinct competing peak / best peak, 0..1
	Iterations  int     // ICP iterations used
	Points      int     // occupied submap cells matched
	// FreeConflict is the verification measure at Pose: reference wall
	// cells in the agent's free space over the agent's occupied cells.
	FreeConflict float64
	// Merit is Score − conflictWeight × FreeConflict: what the pose
	// explains net of what it contradicts.
	Merit float64
	// RunnerUp and RunnerUpScore are the best refined peak distinct from
	// Pose (and not in its basin), the one Ambiguity compares with; zero
	// when there was none.
	RunnerUp      slam.Pose2D
	RunnerUpScore float64
	// Search is the window that was searched.
	Search Window
	// CellsFromOrigin is the distance in metres from the agent frame's
	// origin to the centroid of the submap's occupied cells when the
	// origin lies outside the submap's free space (0 when it lies in it:
	// the start pose of a submap built from scans): a guess whose heading
	// is off by δ but whose cells lie right has its origin about
	// CellsFromOrigin·δ off (see LocalizationError.WidenAdvice).
	CellsFromOrigin float64
	// Margin is the answer's fine-search score less the best fine-search
	// score of a refined peak distinct from it, verified or not (the
	// answer's score if there is none): how far the answer stands out of
	// the crowd of chance peaks. A wide search needs at least
	// Options.MinWideMargin (see Options.wideness).
	Margin float64
}

// Localize estimates map_from_agent for submap (in the agent's frame) against
// the reference grid ref, searching opts' window around guess. It prepares
// the reference on every call; use NewReference and Reference.Localize to
// match several submaps against one reference.
func Localize(ctx context.Context, ref, submap *grid.Grid, guess slam.Pose2D, opts Options) (Result, error) {
	r, err := NewReference(ref)
	if err != nil {
		return Result{Agent: -1}, err
	}
	return r.Localize(ctx, submap, guess, opts)
}

// peak is a pose and its score at some level of the search.
type peak struct {
	pose  slam.Pose2D
	score float64
}

// Localize matches submap against the prepared reference, searching opts'
// window around guess; see the package doc. It is safe to call concurrently
// on one Reference.
func (r *Reference) Localize(ctx context.Context, submap *grid.Grid, guess slam.Pose2D, opts Options) (Result, error) {
	if err := guess.Validate(); err != nil {
		return Result{Agent: -1, Pose: guess}, fmt.Errorf("initial guess: %w", err)
	}
	return r.localize(ctx, submap, nil, &guess, opts)
}

// LocalizeGlobal matches submap against the prepared reference with no
// initial guess: the whole map, every heading (global localization). The
// acceptance tests are Localize's.
func (r *Reference) LocalizeGlobal(ctx context.Context, submap *grid.Grid, opts Options) (Result, error) {
	return r.localize(ctx, submap, nil, nil, opts)
}

// localize is Localize (guess not nil) or LocalizeGlobal (guess nil). ps
// holds submap's extractPoints when the caller has them already, else nil.
func (r *Reference) localize(ctx context.Context, submap *grid.Grid, ps *pointSets, guess *slam.Pose2D, opts Options) (Result, error) {
	res := Result{Agent: -1}
	if guess != nil {
		res.Pose = *guess
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return res, err
	}
	if submap == nil {
		return res, fmt.Errorf("%w: no submap", slam.ErrInvalidArgument)
	}
	if err := submap.Meta().Validate(); err != nil {
		return res, fmt.Errorf("submap: %w", err)
	}
	if ps == nil {
		ps = extractPoints(submap)
	}
	res.Points = len(ps.all)
	res.CellsFromOrigin = math.Hypot(ps.pivot.X, ps.pivot.Y)
	if len(ps.all) < max(opts.MinPoints, 3) {
		return res, &LocalizationError{Reason: slam.ErrInsufficientData, Result: res, Threshold: float64(opts.MinPoints)}
	}
	pts := thinPoints(ps.coarse, bnbMaxPoints)
	var peaks []peak
	if guess == nil {
		if n := opts.minPoints(Window{Global: true}); len(ps.all) < n {
			res.Search = Window{Global: true, HalfTheta: math.Pi}
			return res, &LocalizationError{Reason: slam.ErrInsufficientData, Result: res, Threshold: float64(n), Wide: true}
		}
		peaks, res.Search, err = r.globalSearch(ctx, *ps, pts)
	} else {
		sp, window := r.searchSpace(&r.coarseBnB, ps, *guess, opts.WindowXY, opts.WindowTheta, point{})
		res.Search = window
		if n := opts.minPoints(window); len(ps.all) < n {
			return res, &LocalizationError{Reason: slam.ErrInsufficientData, Result: res, Threshold: float64(n), Wide: true}
		}
		peaks, err = branchAndBound(ctx, &r.coarseBnB, pts, sp, peakRatio)
	}
	if err != nil {
		return res, err
	}
	if len(peaks) == 0 {
		// Nothing in the window reaches even the coarse floor.
		return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: opts.MinScore}
	}
	peaks = peaks[:min(len(peaks), candidates)]
	// Refine every peak on the fine field; the best refined peak that
	// passes verification is the answer, and the best refined peak far
	// from it measures the ambiguity.
	free := extractFree(submap)
	refined, err := r.refine(ctx, *ps, free, peaks)
	if err != nil {
		return res, err
	}
	// The verification limit tightens with the search volume (see
	// Options.freeConflictLimit).
	limit := opts.freeConflictLimit(res.Search)
	best := refined[0]
	for _, v := range refined {
		if v.conflict <= limit {
			best = v
			break
		}
	}
	res.Ambiguity = 0
	// A runner-up that fails verification is no alternative: it puts
	// reference walls across the agent's open floor.
	for _, p := range refined {
		if p.conflict <= limit && distinct(p.pose, best.pose, ps.pivot) && best.score > 0 {
			res.Ambiguity = math.Min(math.Max(p.merit, 0)/math.Max(best.merit, 1e-9), 1)
			res.RunnerUp = p.pose
			res.RunnerUpScore = p.score
			break
		}
	}

	// The crowd of chance peaks: the best distinct refined peak, verified
	// or not, that a wide search's answer must stand clear of.
	crowd := 0.0
	for _, p := range refined {
		if distinct(p.pose, best.pose, ps.pivot) {
			crowd = math.Max(crowd, p.score)
		}
	}
	res.Margin = best.score - crowd

	pose, iters := r.icp(ps.fine, best.pose, opts.ICPIters)
	// Guard against ICP sliding off into a wrong basin: it may polish the
	// search result, not replace it.
	if moved(pose, best.pose, ps.pivot) > 2*r.coarseRes ||
		math.Abs(slam.AngleDiff(pose.Theta, best.pose.Theta)) > 2*math.Pi/180 {
		pose = best.pose
	}
	res.Pose = pose
	res.Iterations = iters
	res.Score, res.InlierRatio = r.evaluate(ps.all, pose)
	res.FreeConflict = r.freeConflict(free, ps.all, pose)
	res.Merit = res.Score - conflictWeight*res.FreeConflict

	onEdge := res.Search.onEdge(pose, r.coarseRes)
	switch {
	case res.Score < opts.MinScore:
		return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: opts.MinScore, OnEdge: onEdge}
	case res.FreeConflict > limit:
		return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: limit, WindowLimit: opts.MaxFreeConflict, Verification: true, OnEdge: onEdge}
	case res.Ambiguity > opts.MaxAmbiguity:
		// No edge hint: a wider window makes an ambiguity worse (found by
		// a review).
		return res, &LocalizationError{Reason: slam.ErrAmbiguousMatch, Result: res, Threshold: opts.MaxAmbiguity}
	case res.Margin < opts.wideness(res.Search)*opts.MinWideMargin:
		return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: opts.wideness(res.Search) * opts.MinWideMargin, Crowd: true, OnEdge: onEdge}
	case onEdge:
		return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: opts.MinScore, Edge: true, OnEdge: true}
	}
	if guess != nil && (res.Score < crossCheckSkipScore || res.FreeConflict > crossCheckSkipConflict) {
		better, err := r.crossCheck(ctx, *ps, pts, free, res, opts)
		if err != nil {
			return res, err
		}
		if better != nil {
			res.RunnerUp, res.RunnerUpScore = better.pose, better.score
			return res, &LocalizationError{Reason: slam.ErrInsufficientOverlap, Result: res, Threshold: crossCheckMargin, Outside: better.score}
		}
	}
	res.Localized = true
	return res, nil
}

// refine runs the fine search from every peak and verifies the result;
// the outcome is sorted by merit, best first.
func (r *Reference) refine(ctx context.Context, ps pointSets, free []point, peaks []peak) ([]verified, error) {
	refined := make([]verified, 0, len(peaks))
	for _, c := range peaks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := r.fineSearch(ps.fine, c.pose, r.coarseRes/math.Max(ps.maxRadius, 1), ps.pivot)
		v := verified{peak: p, conflict: r.freeConflict(free, ps.all, p.pose)}
		v.merit = p.score - conflictWeight*v.conflict
		refined = append(refined, v)
	}
	slices.SortStableFunc(refined, func(a, b verified) int { return cmp.Compare(b.merit, a.merit) })
	return refined, nil
}

// crossCheckCandidates is how many peaks of the global search crossCheck
// refines.
const crossCheckCandidates = 4

// crossCheck is the verification of a windowed match against the rest of
// the map: the global search (every pose, every heading) must not find a
// pose outside the window that passes verification and scores more than
// crossCheckMargin above res.Score. If it does, the window did not hold the truth — the
// guess is farther off than the window — and the window's best is only the
// least bad pose in it: that pose is returned and the match must be
// refused. The margin is what keeps a changed world from tripping it: its
// furniture moved, an agent's submap may fit a flipped pose a few percent
// better (0.835 against 0.807 in one of 30 worlds), while a guess 90° off
// leaves the window's best at half the truth's score.
func (r *Reference) crossCheck(ctx context.Context, ps pointSets, pts, free []point, res Result, opts Options) (*verified, error) {
	peaks, _, err := r.globalSearch(ctx, ps, pts)
	if err != nil {
		return nil, err
	}
	refined, err := r.refine(ctx, ps, free, peaks[:min(len(peaks), crossCheckCandidates)])
	if err != nil {
		return nil, err
	}
	for _, v := range refined {
		if !res.Search.contains(v.pose) && v.conflict <= opts.MaxFreeConflict && v.score > res.Score+crossCheckMargin {
			return &v, nil
		}
	}
	return nil, nil
}

// verified is a refined peak with its free-space conflict and its merit:
// the score less conflictWeight × the conflict, by which peaks are ranked
// and compared for ambiguity.
type verified struct {
	peak
	conflict float64
	merit    float64
}

// conflictWeight ranks peaks by what they explain, walls and free space:
// when a long room lets a submap slide along its walls, the wall score alone
// can prefer a pose half a metre off by a few percent; the reference walls
// that pose puts across the agent's open floor (conflict 0.02) tip it back.
const conflictWeight = 2

// globalSearch is the search without a guess: branch and bound over the
// whole map and every heading on the global field (cells of 2 coarse
// cells), then, around each of its peaks, a windowed branch and bound on
// the coarse field (± one global cell, ± one global rotation step) that
// brings the peak to the resolution of a windowed search. Both place the
// submap's pivot, not its origin: the cells lie in the map wherever the
// frame's origin falls.
func (r *Reference) globalSearch(ctx context.Context, ps pointSets, pts []point) ([]peak, Window, error) {
	m := r.bounds
	w, h := m.SizeM()
	g := &r.globalBnB
	center := slam.Pose2D{X: m.Origin.X + w/2, Y: m.Origin.Y + h/2}
	sp, _ := r.searchSpace(g, &ps, center, math.Max(w, h)/2+g.res, math.Pi, ps.pivot)
	win := Window{Global: true, MinX: m.Origin.X, MinY: m.Origin.Y, MaxX: m.Origin.X + w, MaxY: m.Origin.Y + h, HalfTheta: math.Pi}
	coarsePeaks, err := branchAndBound(ctx, g, pts, sp, globalPeakRatio)
	if err != nil {
		return nil, win, err
	}
	globalStep := g.res / math.Max(ps.searchRadius, 1)
	var out []peak
	for _, p := range coarsePeaks[:min(len(coarsePeaks), candidates)] {
		at := p.pose
		at.X, at.Y = p.pose.Apply(ps.pivot.X, ps.pivot.Y)
		sp, _ := r.searchSpace(&r.coarseBnB, &ps, at, g.res, globalStep, ps.pivot)
		local, err := branchAndBound(ctx, &r.coarseBnB, pts, sp, peakRatio)
		if err != nil {
			return nil, win, err
		}
		if len(local) > 0 {
			out = append(out, local[0])
		}
	}
	slices.SortStableFunc(out, func(a, b peak) int { return cmp.Compare(b.score, a.score) })
	return out, win, nil
}

// searchSpace is the set of leaves on field f that put the submap's point
// placed (in the agent frame) within ±wxy metres of center, at headings
// within ±wth radians of center's: translations in whole cells of f,
// rotations in steps that move a point at ps.searchRadius from the pivot by
// about one cell of f (every heading when wth ≥ π). The translations are
// clipped to the poses that can put the pivot inside the map (an agent's
// cells lie in the mission map).
func (r *Reference) searchSpace(f *bnbField, ps *pointSets, center slam.Pose2D, wxy, wth float64, placed point) (searchSpace, Window) {
	res := f.res
	dTheta := math.Min(res/math.Max(ps.searchRadius, 1), 2*math.Pi/180)
	m := r.bounds
	w, h := m.SizeM()
	n := int(math.Ceil(wxy / res))
	sp := searchSpace{cx: center.X, cy: center.Y, x0: -n, x1: n, y0: -n, y1: n, placed: placed, pivot: ps.pivot}
	// At some heading the pivot lands this far from placed.
	grow := math.Hypot(ps.pivot.X-placed.X, ps.pivot.Y-placed.Y)
	cx0 := max(sp.x0, int(math.Ceil((m.Origin.X-grow-center.X)/res)))
	cx1 := min(sp.x1, int(math.Floor((m.Origin.X+w+grow-center.X)/res)))
	cy0 := max(sp.y0, int(math.Ceil((m.Origin.Y-grow-center.Y)/res)))
	cy1 := min(sp.y1, int(math.Floor((m.Origin.Y+h+grow-center.Y)/res)))
	if cx0 <= cx1 && cy0 <= cy1 {
		sp.x0, sp.x1, sp.y0, sp.y1 = cx0, cx1, cy0, cy1
	}
	win := Window{Center: center, MinX: sp.cx + float64(sp.x0)*res, MaxX: sp.cx + float64(sp.x1)*res,
		MinY: sp.cy + float64(sp.y0)*res, MaxY: sp.cy + float64(sp.y1)*res, HalfTheta: math.Min(wth, math.Pi)}
	if wth >= math.Pi-dTheta/2 {
		k := int(math.Ceil(2 * math.Pi / dTheta))
		dTheta = 2 * math.Pi / float64(k)
		for i := range k {
			sp.thetas = append(sp.thetas, center.Theta+float64(i)*dTheta-math.Pi)
		}
	} else {
		nR := int(math.Ceil(wth / dTheta))
		for i := -nR; i <= nR; i++ {
			sp.thetas = append(sp.thetas, center.Theta+float64(i)*dTheta)
		}
	}
	return sp, win
}

// distinct reports whether poses a and b of an agent are different
// answers: they put its pivot (pointSets.pivot) more than distinctXY apart,
// or differ in heading by more than distinctTheta. Compared at the
// origin instead, two poses that lay the cells on each other would count
// as distinct once the origin lies far from the cells.
func distinct(a, b slam.Pose2D, pivot point) bool {
	return moved(a, b, pivot) > distinctXY || math.Abs(slam.AngleDiff(a.Theta, b.Theta)) > distinctTheta
}

// moved is the distance in metres between where poses a and b put the
// agent-frame point pivot.
func moved(a, b slam.Pose2D, pivot point) float64 {
	ax, ay := a.Apply(pivot.X, pivot.Y)
	bx, by := b.Apply(pivot.X, pivot.Y)
	return math.Hypot(ax-bx, ay-by)
}
