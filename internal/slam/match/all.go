package match

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/fuse"
	"github.com/slammesh/slammesh/internal/slam/grid"
)

// Agent is one input of LocalizeAll.
type Agent struct {
	Submap *grid.Grid  // in the agent's own (start) frame
	Guess  slam.Pose2D // initial guess of map_from_agent; the truth for an anchor
	Anchor bool        // the pose is known (surveyed dock) and defines the map frame
	// NoGuess: the agent has no initial guess (Guess is ignored); it is
	// searched over the whole map and every heading. Not for an anchor.
	NoGuess bool
}

// Event reports progress on one agent. LocalizeAll emits one per anchor, one
// per success as it happens, and one per failure at the end of each round;
// Final is false for a failure that will be retried in the next round.
type Event struct {
	Agent     int
	Round     int
	Result    Result
	Err       error // nil on success; a *LocalizationError otherwise
	Final     bool
	Localized int // agents localized so far, anchors included
	Total     int
}

// UnlocalizedError is LocalizeAll's failure: some agents could not be
// localized in any round. It wraps the one sentinel the mission reports,
// chosen as: slam.ErrAmbiguousMatch if any agent was ambiguous, else
// slam.ErrInsufficientOverlap if any lacked overlap, else
// slam.ErrInsufficientData. An ambiguous agent is the more actionable
// diagnosis: the data is there but the world repeats itself.
type UnlocalizedError struct {
	Reason   error
	Failures []*LocalizationError // one per unlocalized agent, by index
}

// Error lists every agent that could not be localized and why.
func (e *UnlocalizedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d agent(s) not localized:", e.Reason, len(e.Failures))
	for _, f := range e.Failures {
		b.WriteString(" [")
		b.WriteString(f.Error())
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap lets errors.Is match the chosen sentinel.
func (e *UnlocalizedError) Unwrap() error { return e.Reason }

// LocalizeAll estimates map_from_agent for every agent, in a map of metadata
// meta, as described in the package doc, and returns one Result per agent
// (in input order). Agents are matched Parallelism at a time; the result does
// not depend on Parallelism, because each round's reference is fixed before
// the round starts and successes are fused in index order.
//
// onEvent, if not nil, is called from the calling goroutine only (never
// concurrently). On failure the results still hold every localized agent and
// the error is an *UnlocalizedError; a cancelled ctx returns ctx.Err().
func LocalizeAll(ctx context.Context, meta grid.Meta, agents []Agent, opts Options, onEvent func(Event)) ([]Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if len(agents) == 0 {
		return nil, fmt.Errorf("%w: no agents", slam.ErrInvalidArgument)
	}
	emit := func(ev Event) {
		if onEvent != nil {
			onEvent(ev)
		}
	}
	ref, err := grid.New(meta)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(agents))
	localized := 0
	var pending []int
	for i, a := range agents {
		results[i] = Result{Agent: i, Pose: a.Guess}
		if a.Submap == nil {
			return nil, fmt.Errorf("%w: agent %d has no submap", slam.ErrInvalidArgument, i)
		}
		if a.NoGuess && a.Anchor {
			return nil, fmt.Errorf("%w: anchor agent %d has no pose", slam.ErrInvalidArgument, i)
		}
		if err := a.Guess.Validate(); err != nil && !a.NoGuess {
			return nil, fmt.Errorf("agent %d guess: %w", i, err)
		}
		if !a.Anchor {
			pending = append(pending, i)
		}
	}
	if len(pending) == len(agents) {
		return nil, fmt.Errorf("%w: no anchor agent to define the map frame", slam.ErrInvalidArgument)
	}
	for i, a := range agents {
		if !a.Anchor {
			continue
		}
		if err := fuse.Warp(ref, a.Submap, a.Guess); err != nil {
			return nil, fmt.Errorf("agent %d: %w", i, err)
		}
		localized++
		results[i] = Result{Agent: i, Pose: a.Guess, Localized: true, Anchor: true, Score: 1, InlierRatio: 1}
		emit(Event{Agent: i, Result: results[i], Final: true, Localized: localized, Total: len(agents)})
	}

	par := opts.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	lastErr := make(map[int]*LocalizationError)
	// points[i] is agent i's extractPoints, made by its first match and
	// read again by later rounds and the refinement.
	points := make([]*pointSets, len(agents))
	for round := 1; len(pending) > 0; round++ {
		reference, err := newCroppedReference(ref, true)
		if err != nil {
			if round == 1 && errors.Is(err, slam.ErrInsufficientData) {
				// Only the anchor is in the reference yet: say which of its
				// inputs to look at, not what the matcher lacks.
				m := ref.Meta()
				err = fmt.Errorf("%w: the anchor placed at its guess leaves no wall inside the mission map (%.6g x %.6g m from (%.6g, %.6g)): the map's bounds miss the anchor's data, or the anchor saw no walls",
					slam.ErrInsufficientData, float64(m.Width)*m.Resolution, float64(m.Height)*m.Resolution, m.Origin.X, m.Origin.Y)
			}
			return results, err
		}
		outcomes := matchRound(ctx, reference, agents, points, pending, opts, par, func(i int, res Result) {
			if res.Score < opts.ConfidentScore {
				return // tentative: reported at the end of the round if accepted
			}
			res.Round = round
			emit(Event{Agent: i, Round: round, Result: res, Final: true, Localized: localized + 1, Total: len(agents)})
			localized++
		})
		if err := ctx.Err(); err != nil {
			return results, err
		}
		// Confident matches go first: if any agent matched confidently this
		// round, tentative matches (accepted score, but below ConfidentScore)
		// wait for a richer reference next round instead of fusing their
		// larger error into it.
		confident := false
		for _, i := range pending {
			if o := outcomes[i]; o.err == nil && o.res.Score >= opts.ConfidentScore {
				confident = true
			}
		}
		var still []int
		progressed := false
		for _, i := range pending { // index order: deterministic fusion
			o := outcomes[i]
			o.res.Agent = i
			o.res.Round = round
			if o.err == nil && confident && o.res.Score < opts.ConfidentScore {
				still = append(still, i) // deferred, not failed
				continue
			}
			results[i] = o.res
			if o.err == nil {
				progressed = true
				if err := fuse.Warp(ref, agents[i].Submap, o.res.Pose); err != nil {
					return results, fmt.Errorf("agent %d: %w", i, err)
				}
				if o.res.Score < opts.ConfidentScore {
					localized++
					emit(Event{Agent: i, Round: round, Result: o.res, Final: true, Localized: localized, Total: len(agents)})
				}
				continue
			}
			var le *LocalizationError
			if !errors.As(o.err, &le) {
				return results, fmt.Errorf("agent %d: %w", i, o.err)
			}
			le.Result.Agent = i
			lastErr[i] = le
			if !errors.Is(le, slam.ErrInsufficientData) { // more teammates will not create data
				still = append(still, i)
			}
		}
		for _, i := range pending {
			if outcomes[i].err != nil && lastErr[i] != nil {
				final := !progressed || errors.Is(lastErr[i], slam.ErrInsufficientData)
				emit(Event{Agent: i, Round: round, Result: results[i], Err: lastErr[i], Final: final, Localized: localized, Total: len(agents)})
			}
		}
		pending = still
		if !progressed {
			break
		}
	}
	if !opts.SkipRefinement {
		if err := refineAll(ctx, meta, agents, points, results, par); err != nil {
			return results, err
		}
	}
	var failures []*LocalizationError
	for i := range agents {
		if !results[i].Localized {
			failures = append(failures, lastErr[i])
		}
	}
	if len(failures) == 0 {
		return results, nil
	}
	reason := slam.ErrInsufficientData
	for _, f := range failures {
		switch {
		case errors.Is(f, slam.ErrAmbiguousMatch):
			reason = slam.ErrAmbiguousMatch
		case errors.Is(f, slam.ErrInsufficientOverlap) && reason != slam.ErrAmbiguousMatch:
			reason = slam.ErrInsufficientOverlap
		}
	}
	return results, &UnlocalizedError{Reason: reason, Failures: failures}
}

type outcome struct {
	res Result
	err error
}

// matchRound localizes the pending agents against one reference with at most
// par goroutines, calling onSuccess from this goroutine as successes arrive.
// It fills points[i] for every agent i it matches (one goroutine per agent,
// so no two write the same entry). It always waits for every goroutine it
// started.
func matchRound(ctx context.Context, ref *Reference, agents []Agent, points []*pointSets, pending []int, opts Options, par int, onSuccess func(int, Result)) map[int]outcome {
	type done struct {
		i int
		outcome
	}
	jobs := make(chan int)
	results := make(chan done)
	var wg sync.WaitGroup
	for range min(par, len(pending)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if points[i] == nil {
					points[i] = extractPoints(agents[i].Submap)
				}
				var guess *slam.Pose2D
				if !agents[i].NoGuess {
					guess = &agents[i].Guess // validated by LocalizeAll
				}
				res, err := ref.localize(ctx, agents[i].Submap, points[i], guess, opts)
				results <- done{i, outcome{res, err}}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, i := range pending {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	out := make(map[int]outcome, len(pending))
	for d := range results {
		out[d.i] = d.outcome
		if d.err == nil {
			d.res.Agent = d.i
			onSuccess(d.i, d.res)
		}
	}
	for _, i := range pending {
		if _, ok := out[i]; !ok {
			out[i] = outcome{err: ctx.Err()}
		}
	}
	return out
}

// refineAll polishes every localized non-anchor pose once against the fusion
// of all the other localized agents at the poses the rounds gave them. An
// agent localized in round 1 was matched against the anchor alone, often
// through a small overlap; by now the team map around it is much richer, and
// re-matching locally against it removes most of the error the rounds
// accumulate. The anchors stay fixed, so the map frame does not move.
//
// Every agent is polished against the same poses (a Jacobi pass, not
// Gauss–Seidel), so the agents are independent: they run par at a time, or
// fewer on a large map (refineCellsBudget), and the result does not depend
// on par or on scheduling.
func refineAll(ctx context.Context, meta grid.Meta, agents []Agent, points []*pointSets, results []Result, par int) error {
	var todo []int
	regions := make([]grid.Meta, len(agents))
	largest := int64(1)
	for i := range agents {
		if results[i].Localized && !results[i].Anchor {
			todo = append(todo, i)
			regions[i] = refineRegion(meta, points[i], results[i].Pose)
			largest = max(largest, regions[i].Cells())
		}
	}
	par = min(par, max(1, int(refineCellsBudget/largest)))
	refined := make([]Result, len(results))
	errs := make([]error, len(results))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(par, len(todo)) {
		wg.Go(func() {
			for i := range jobs {
				refined[i], errs[i] = refineOne(ctx, meta, regions[i], agents, points[i], results, i)
			}
		})
	}
	for _, i := range todo {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for _, i := range todo { // index order: the first error is the lowest agent's
		if errs[i] != nil {
			return errs[i]
		}
	}
	for _, i := range todo {
		results[i] = refined[i]
	}
	return nil
}

// refineCellsBudget bounds the cells that refinements running at once
// cover together: each holds a grid of the other agents over its region
// (refineRegion) and its reference (about 30 bytes per cell), so about
// 250 MB. An office refines every agent at once, and so does a 150×100 m
// map at 5 cm (6 M cells) whose agents each saw a 30 m stretch of it.
const refineCellsBudget = 1 << 23

// refineSlack is how far, in metres, ICP's trial poses may step beyond
// the fine search's widest walk before it settles.
const refineSlack = 0.25

// refinePad is how far, in metres, around agent points at its pose a
// refinement at resolution res reads the reference, for points at most
// maxRadius from the pivot: the moves it may keep (refineMaxShift, and
// refineMaxTurn at maxRadius), the fine search's widest walk (fineRounds
// boxes of fineN cells), refineSlack, and the reach of the fields, which
// a wall beyond it cannot change (fineReach2, and a cell).
func refinePad(res, maxRadius float64) float64 {
	walk := fineRounds * fineN * res
	reach := (math.Sqrt(fineReach2(res)) + 1) * res
	return refineMaxShift + refineMaxTurn*maxRadius + walk + refineSlack + reach
}

// refineRegion is the part of the mission map (meta) that agent i's
// refinement reads, with ps its points at pose: their bounding box padded
// by refinePad, clipped to the map. Within it the reference has the fields
// it would have over the whole map, so a refinement over it keeps the
// poses a refinement over the whole map keeps, for a fraction of the work
// when the agent saw a fraction of the map (Warp and the distance
// transform cost per cell). The region is cells of meta, on its lattice.
func refineRegion(meta grid.Meta, ps *pointSets, pose slam.Pose2D) grid.Meta {
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range ps.all {
		x, y := pose.Apply(p.X, p.Y)
		x0, y0 = math.Min(x0, x), math.Min(y0, y)
		x1, y1 = math.Max(x1, x), math.Max(y1, y)
	}
	if x1 < x0 {
		return meta // no points: refineOne finds nothing to do
	}
	pad := refinePad(meta.Resolution, ps.maxRadius)
	cx0 := max(int(math.Floor((x0-pad-meta.Origin.X)/meta.Resolution)), 0)
	cy0 := max(int(math.Floor((y0-pad-meta.Origin.Y)/meta.Resolution)), 0)
	cx1 := min(int(math.Floor((x1+pad-meta.Origin.X)/meta.Resolution)), meta.Width-1)
	cy1 := min(int(math.Floor((y1+pad-meta.Origin.Y)/meta.Resolution)), meta.Height-1)
	if cx1 < cx0 || cy1 < cy0 {
		return meta // the points lie off the map: as above
	}
	return grid.Meta{Resolution: meta.Resolution, Width: cx1 - cx0 + 1, Height: cy1 - cy0 + 1,
		Origin: slam.Pose2D{X: meta.Origin.X + float64(cx0)*meta.Resolution, Y: meta.Origin.Y + float64(cy0)*meta.Resolution}}
}

// refineOne is agent i's result after its refinement (or unchanged, when the
// refinement would move it too far or lose score), against the other
// localized agents at their poses in results, which it only reads, over
// region (refineRegion) of the mission map meta; ps are agent i's points.
func refineOne(ctx context.Context, meta, region grid.Meta, agents []Agent, ps *pointSets, results []Result, i int) (Result, error) {
	res := results[i]
	if err := ctx.Err(); err != nil {
		return res, err
	}
	others, err := grid.New(region)
	if err != nil {
		return res, err
	}
	for j := range agents {
		if j != i && results[j].Localized {
			if err := fuse.Warp(others, agents[j].Submap, results[j].Pose); err != nil {
				return res, err
			}
		}
	}
	ref, err := newCroppedReference(others, false) // it only polishes
	if err != nil {
		return res, nil // nothing else to refine against
	}
	ref.bounds = meta
	old := res.Pose
	oldScore, _ := ref.evaluate(ps.all, old)
	start := ref.fineSearch(ps.fine, old, ref.coarseRes/math.Max(ps.maxRadius, 1), ps.pivot)
	pose, iters := ref.icp(ps.fine, start.pose, DefaultICPIters)
	score, inliers := ref.evaluate(ps.all, pose)
	// Refinement may only polish: it must not move far or lose score.
	if score < oldScore || moved(pose, old, ps.pivot) > refineMaxShift ||
		math.Abs(slam.AngleDiff(pose.Theta, old.Theta)) > refineMaxTurn {
		return res, nil
	}
	res.Pose = pose
	res.Score = score
	res.InlierRatio = inliers
	res.Iterations += iters
	return res, nil
}
