package localslam

import (
	"math"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/correlate"
)

// point is a point of a scan in the robot frame, in metres.
type point = correlate.Point

// Search parameters beyond Options.
const (
	// thinCells: consecutive matchable points closer than this many cells are
	// merged (the first is kept), so near walls, sampled densely by the
	// beams, do not outvote far ones; a cheap, deterministic voxel filter.
	thinCells = 2.0
	// candidates of the coarse search refined on the fine field, if their
	// weighted score is at least candidateShare of the best's.
	candidates     = 3
	candidateShare = 0.9
	// maxWideMisses: after this many wide retries in a row found nothing,
	// the next frames skip it until one fits again. Scans that fit
	// nowhere (new ground, clutter) would otherwise pay a search ten times
	// the normal one each: 3–4× the front end's time on a long run of them.
	maxWideMisses = 3
	// fineSteps: the fine search covers ±fineSteps cells and ±fineSteps
	// quarter-steps of coarse rotation around a coarse candidate.
	fineSteps = 2
	// fineRecentre bounds how often the fine search follows its best pose
	// off the border of its box.
	fineRecentre = 3
	gnIters      = 10
	// priorSigma scales the prior weight exp(-½((d/σt)²+(dθ/σθ)²)) as a
	// multiple of the window: wide, so it only decides between nearly
	// equal peaks (along a corridor), as Cartographer's delta-cost weights.
	priorSigma = 2.0
)

// scanPoints fills t.pts with the returned beams within the usable range, in
// the sensor frame, thinned, and returns the largest range among them.
func (t *Tracker) scanPoints(scan slam.LaserScan) float64 {
	cos, sin := t.beams.For(scan)
	t.pts = t.pts[:0]
	minGap2 := thinCells * t.opts.Resolution * thinCells * t.opts.Resolution
	rmax := 0.0
	last := point{X: math.Inf(1), Y: math.Inf(1)}
	for i, r := range scan.Ranges {
		rr := float64(r)
		if !(rr >= scan.RangeMin && rr < scan.RangeMax && rr <= t.opts.UsableRange) {
			continue
		}
		p := point{X: rr * cos[i], Y: rr * sin[i]}
		if dx, dy := p.X-last.X, p.Y-last.Y; dx*dx+dy*dy < minGap2 {
			continue
		}
		last = p
		t.pts = append(t.pts, p)
		rmax = max(rmax, rr)
	}
	return rmax
}

// peak is a pose with its plain score (mean likelihood) and the score
// weighted by the prior, which ranks peaks.
type peak struct {
	pose            slam.Pose2D
	score, weighted float64
}

// matchOutcome says why a search of one window kept the prediction, or
// that it matched.
type matchOutcome int

const (
	matched      matchOutcome = iota
	lowScore                  // no pose of the window fits the map well enough
	beyondWindow              // the best pose lies beyond the window (the coarse lattice reaches past it)
	lowGain                   // the best pose fits no better than the prediction
)

// match estimates res.Pose from res.Prior; see the package doc.
func (t *Tracker) match(scan slam.LaserScan, res *FrameResult) {
	rmax := t.scanPoints(scan)
	if len(t.pts) < max(t.opts.MinPoints, 3) {
		return
	}
	res.PriorScore = t.m.meanBilinear(t.pts, res.Prior)
	out := t.search(res, rmax, t.opts.WindowXY, t.opts.WindowTheta)
	if out != lowScore && out != beyondWindow {
		t.wideMisses = 0 // the scan fits near its prediction
		return
	}
	if t.wideMisses >= maxWideMisses {
		return
	}
	// Nothing in the window fits: the prediction may be farther off than
	// the window (package doc, step 5). A wide window offers more wrong
	// peaks, so a match there must fit better than the least a normal one
	// may.
	res.WideTried = true
	if t.search(res, rmax, t.opts.WideXY, t.opts.WideTheta) == matched && res.Score < t.opts.WideMinScore {
		res.Pose, res.Score, res.Matched, res.Degenerate = res.Prior, 0, false, false
	}
	res.Wide = res.Matched
	if res.Wide {
		t.wideMisses = 0
	} else {
		t.wideMisses++
	}
}

// search looks for the scan's pose (t.pts) within ±wxy, ±wth of
// res.Prior and sets res.Pose, Score and Matched on a match. The prior
// weight keeps the normal window's width whatever the window searched, so
// a wide search ranks peaks as the normal one does.
func (t *Tracker) search(res *FrameResult, rmax, wxy, wth float64) matchOutcome {
	prior := res.Prior
	cres := t.opts.Resolution * coarseFactor
	// Rotation step that moves the farthest point by about one coarse cell.
	dTheta := min(max(cres/math.Max(rmax, 1), 0.25*math.Pi/180), 2*math.Pi/180)
	cands := t.coarseSearch(prior, cres, dTheta, wxy, wth)
	if len(cands) == 0 {
		return lowScore
	}
	best := peak{weighted: -1}
	for _, c := range cands {
		if c.weighted < candidateShare*cands[0].weighted {
			break // far behind the best: not worth a fine search
		}
		if p := t.fineSearch(prior, c, dTheta/4); p.weighted > best.weighted {
			best = p
		}
	}
	if best.score < t.opts.MinScore {
		return lowScore
	}
	pose, ok := t.m.gaussNewton(t.pts, best.pose)
	if ok && math.Hypot(pose.X-best.pose.X, pose.Y-best.pose.Y) <= 2*t.opts.Resolution &&
		math.Abs(slam.AngleDiff(pose.Theta, best.pose.Theta)) <= dTheta/2 &&
		t.m.meanBilinear(t.pts, pose) >= t.m.meanBilinear(t.pts, best.pose) {
		best.pose = pose
	}
	// Degeneracy: along a translation direction the scan does not
	// constrain, keep the prediction.
	res.Degenerate = false
	if dir, degenerate := weakDirection(t.pts, t.opts.Degeneracy); degenerate {
		res.Degenerate = true
		s, c := math.Sincos(best.pose.Theta)
		wx, wy := c*dir[0]-s*dir[1], s*dir[0]+c*dir[1]
		along := (best.pose.X-prior.X)*wx + (best.pose.Y-prior.Y)*wy
		best.pose.X -= along * wx
		best.pose.Y -= along * wy
	}
	// The correction never leaves the window: a peak beyond it (the coarse
	// lattice reaches slightly past it) means the truth may lie farther
	// still, and the prediction is the safer answer.
	if math.Abs(best.pose.X-prior.X) > wxy || math.Abs(best.pose.Y-prior.Y) > wxy ||
		math.Abs(slam.AngleDiff(best.pose.Theta, prior.Theta)) > wth {
		return beyondWindow
	}
	score := t.m.meanBilinear(t.pts, best.pose)
	if score-res.PriorScore < t.opts.MinGain {
		return lowGain
	}
	res.Pose, res.Score, res.Matched = best.pose, score, true
	return matched
}

// priorWeight is the weight of a pose at offset (dx, dy, dθ) from the prior.
func (t *Tracker) priorWeight(dx, dy, dth float64) float64 {
	st, sr := priorSigma*t.opts.WindowXY, priorSigma*t.opts.WindowTheta
	return math.Exp(-0.5 * ((dx*dx+dy*dy)/(st*st) + dth*dth/(sr*sr)))
}

// coarseSearch scores every pose of the window on the coarse field, in
// steps of one coarse cell and dTheta, and returns the best few distinct
// local peaks by prior-weighted score.
func (t *Tracker) coarseSearch(prior slam.Pose2D, cres, dTheta, wxy, wth float64) []peak {
	m := t.m
	n := int(math.Ceil(wxy / cres))
	nR := int(math.Ceil(wth / dTheta))
	side := 2*n + 1
	vol := (2*nR + 1) * side * side
	if cap(t.scores) < vol {
		t.scores = make([]float32, vol)
	}
	scores := t.scores[:vol]
	clear(scores)
	for k := range 2*nR + 1 {
		th := prior.Theta + float64(k-nR)*dTheta
		correlate.Accumulate(correlate.Field{Cells: m.coarse, W: m.cw, H: m.ch, Res: cres, OX: m.ox, OY: m.oy}, t.pts, slam.Pose2D{X: prior.X, Y: prior.Y, Theta: th}, n, scores[k*side*side:(k+1)*side*side])
	}
	inv := 1 / float64(len(t.pts))
	// Prior-weighted scores; then the best few cells, each not next to a
	// better one already taken (a few passes beat sorting the volume).
	weighted := t.weighted[:0]
	for k := range 2*nR + 1 {
		for j := range side {
			for i := range side {
				w := float64(scores[(k*side+j)*side+i]) * inv
				if w > 0 {
					w *= t.priorWeight(float64(i-n)*cres, float64(j-n)*cres, float64(k-nR)*dTheta)
				}
				weighted = append(weighted, w)
			}
		}
	}
	t.weighted = weighted
	var out []peak
	var taken [candidates][3]int
	for len(out) < candidates {
		bi, bw := -1, 0.0
		for idx, w := range weighted {
			if w <= bw {
				continue // strictly greater: ties go to the lower index
			}
			k, j, i := idx/(side*side), idx/side%side, idx%side
			near := false
			for _, o := range taken[:len(out)] {
				if abs(k-o[0]) <= 1 && abs(j-o[1]) <= 1 && abs(i-o[2]) <= 1 {
					near = true
					break
				}
			}
			if !near {
				bi, bw = idx, w
			}
		}
		if bi < 0 {
			break
		}
		k, j, i := bi/(side*side), bi/side%side, bi%side
		taken[len(out)] = [3]int{k, j, i}
		out = append(out, peak{
			pose: slam.Pose2D{
				X:     prior.X + float64(i-n)*cres,
				Y:     prior.Y + float64(j-n)*cres,
				Theta: slam.NormalizeAngle(prior.Theta + float64(k-nR)*dTheta),
			},
			weighted: bw,
		})
	}
	return out
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// fineSearch refines a coarse peak on the fine field over ±fineSteps cells
// and ±fineSteps rotation steps of dTheta, re-centred (at most
// fineRecentre times) while the best pose lies on the border of that box:
// the coarse field is blurred enough to pick the neighbour of the right
// coarse cell.
func (t *Tracker) fineSearch(prior slam.Pose2D, c peak, dTheta float64) peak {
	m := t.m
	const n = fineSteps
	const side = 2*n + 1
	var scores [side * side]float32
	best := peak{weighted: -1}
	inv := 1 / float64(len(t.pts))
	center := c.pose
	for range fineRecentre + 1 {
		border := false
		for k := -n; k <= n; k++ {
			clear(scores[:])
			th := center.Theta + float64(k)*dTheta
			correlate.Accumulate(correlate.Field{Cells: m.fine, W: m.w, H: m.h, Res: m.res, OX: m.ox, OY: m.oy}, t.pts, slam.Pose2D{X: center.X, Y: center.Y, Theta: th}, n, scores[:])
			for j := range side {
				for i := range side {
					s := float64(scores[j*side+i]) * inv
					p := slam.Pose2D{X: center.X + float64(i-n)*m.res, Y: center.Y + float64(j-n)*m.res, Theta: slam.NormalizeAngle(th)}
					w := s * t.priorWeight(p.X-prior.X, p.Y-prior.Y, slam.AngleDiff(p.Theta, prior.Theta))
					if w > best.weighted {
						best.pose, best.score, best.weighted = p, s, w
						border = i == 0 || j == 0 || i == side-1 || j == side-1 || k == -n || k == n
					}
				}
			}
		}
		if !border {
			break
		}
		center = best.pose
	}
	return best
}
