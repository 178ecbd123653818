package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slam/match"
	"github.com/slammesh/slammesh/internal/slamio"
	"github.com/slammesh/slammesh/internal/slamproto"
)

// importFlags are the flags of start and import that build a mission from
// real files: a CARMEN log cut into agents, or ROS map_server maps.
type importFlags struct {
	carmen      string
	segments    string
	poses       string
	guessFrom   string
	stride      int
	kfDist      float64
	kfDeg       float64
	rangeMin    float64
	rangeMax    float64
	rosMaps     stringList
	occThresh   optFloat
	freeThresh  optFloat
	agentIDs    string
	guesses     guessFlags
	mapBounds   string
	resolution  float64
	margin      float64
	windowM     float64
	windowDeg   float64
	missionJSON string
}

func (f *importFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.carmen, "carmen", "", "CARMEN log (plain or .gz) to cut into agents with --segments (FLASER, ROBOTLASER1 and ODOM lines)")
	fs.StringVar(&f.segments, "segments", "", "with --carmen: inclusive 0-based reading ranges, one agent each, e.g. 6:35,120:149,300:329; the first is the anchor")
	fs.StringVar(&f.poses, "poses", "laser", "with --carmen: scan poses from the laser line (laser: FLASER x y theta / ROBOTLASER1 laser pose) or the ODOM lines at the reading's time, interpolated, with the laser's mount on the robot (odom)")
	fs.StringVar(&f.guessFrom, "guess-from", "", "with --carmen: non-anchor guesses from each agent's first laser pose (laser), the anchor's chained with odometry (odom), or none (none: localization searches the whole map); default: as --poses")
	fs.IntVar(&f.stride, "stride", 1, "with --carmen: keep every N-th reading of a segment")
	fs.Float64Var(&f.kfDist, "keyframe-dist", 0, "with --carmen: keep a reading only after moving this many metres (or turning --keyframe-deg) since the last kept one; 0: off")
	fs.Float64Var(&f.kfDeg, "keyframe-deg", 0, "with --carmen: keep a reading only after turning this many degrees (or moving --keyframe-dist); 0: off")
	fs.Float64Var(&f.rangeMin, "range-min", slamio.DefaultRangeMin, "with --carmen: readings below this many metres are invalid")
	fs.Float64Var(&f.rangeMax, "range-max", slamio.DefaultRangeMax, "with --carmen: readings at or beyond this many metres are no-return beams (a ROBOTLASER1's own maximum range lowers it)")
	fs.Var(&f.rosMaps, "ros-map", "ROS map_server map MAP.yaml[,occupied_thresh=V][,free_thresh=V][,mode=M] (the YAML names its image: PGM, PNG, BMP, JPEG or GIF; the options replace the YAML's for this map) to send as an agent's submap (repeatable; the first is the anchor: its YAML frame is the map frame unless --guess places it; the others are placed by --guess or searched for over the whole map)")
	fs.Var(&f.occThresh, "occupied-thresh", "with --ros-map: occupied threshold replacing every YAML's (e.g. 0.22 for maps whose walls an image editor blended with grey)")
	fs.Var(&f.freeThresh, "free-thresh", "with --ros-map: free threshold replacing every YAML's")
	fs.StringVar(&f.agentIDs, "agent-ids", "", "comma-separated agent ids, one per agent (default: robot-0, robot-1, ... for --carmen; file names for --ros-map)")
	fs.Var(&f.guesses, "guess", "initial guess ID=x,y,theta (metres, radians) of an agent's start pose in the map frame (for a --ros-map: of its YAML frame) (repeatable; overrides the imported one)")
	fs.StringVar(&f.mapBounds, "map", "", "mission map bounds x,y,width,height in metres (default: what the agents saw at their guesses plus --map-margin)")
	fs.Float64Var(&f.resolution, "resolution", 0.05, "mission map resolution, metres per cell")
	fs.Float64Var(&f.margin, "map-margin", slamio.DefaultMapMargin, "metres added around what the agents saw when --map is not given")
	fs.Float64Var(&f.windowM, "search-window-m", 0, "localization's translational search half-width around each guess, metres (0: the service's 1 m; a best pose within 4 map cells of the bounds is refused as one they may cut off, so a guess is found up to 0.2 m short of them on a 0.05 m map)")
	fs.Float64Var(&f.windowDeg, "search-window-deg", 0, "localization's rotational search half-width around each guess, degrees (0: the service's 20°, 180: every heading; a best heading within 2° of the bounds is refused likewise)")
}

// gateFlags are the merge's gates for one mission, of start (real data or
// a scenario) and import.
type gateFlags struct {
	maxChanged, minConsist, maxFreeConflict float64
}

func (g *gateFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&g.maxChanged, "max-changed-share", 0, "the merge's region test: the share of shared cells that may disagree in contradicted 1 m regions, 0..1 (0: the service's 0.0095, which refuses a changed world; raise it for a building whose glass or doors the passes saw differently, to the share INCONSISTENT_MAPS reported; 1: off)")
	fs.Float64Var(&g.minConsist, "min-consistency", 0, "the merge's floor under the overall consistency, 0..1 (0: the service's 0.95; lower it to the consistency INCONSISTENT_MAPS reported)")
	fs.Float64Var(&g.maxFreeConflict, "max-free-conflict", 0, "localization's verification around a guess: the share of an agent's walls whose free space may cross the team map's, 0..1 (0: the service's 0.5, which refuses a pose in a much changed world; raise it to the free conflict INSUFFICIENT_OVERLAP reported; a wrong pose gets through more easily too)")
}

// apply checks the gates against the API's limits, so that a request the
// orchestrator would refuse is refused naming the flag, and sets them on
// req.
func (g *gateFlags) apply(req *orchestratorv1.StartMissionRequest) error {
	if !(g.maxChanged >= 0 && g.maxChanged <= 1) {
		return fmt.Errorf("%w: --max-changed-share %g: want 0..1 (0: the service's default)", errUsage, g.maxChanged)
	}
	if !(g.minConsist >= 0 && g.minConsist <= 1) {
		return fmt.Errorf("%w: --min-consistency %g: want 0..1 (0: the service's default)", errUsage, g.minConsist)
	}
	if !(g.maxFreeConflict >= 0 && g.maxFreeConflict <= 1) {
		return fmt.Errorf("%w: --max-free-conflict %g: want 0..1 (0: the service's default)", errUsage, g.maxFreeConflict)
	}
	req.MaxChangedShare, req.MinConsistency, req.MaxFreeConflict = g.maxChanged, g.minConsist, g.maxFreeConflict
	return nil
}

// given reports whether any real-data source was named.
func (f *importFlags) given() bool { return f.carmen != "" || len(f.rosMaps) > 0 }

// request builds the StartMissionRequest the flags describe; summary gets a
// line per agent saying what was imported.
func (f *importFlags) request(missionID string, summary io.Writer) (*orchestratorv1.StartMissionRequest, error) {
	if f.carmen != "" && len(f.rosMaps) > 0 {
		return nil, fmt.Errorf("%w: give either --carmen or --ros-map, not both (their frames are unrelated)", errUsage)
	}
	// The API's limits (StartMissionRequest.search_window_*), checked here so
	// that import never writes a request the orchestrator refuses, and the
	// error names the flag the user typed.
	if !(f.windowM >= 0 && f.windowM <= 1000) {
		return nil, fmt.Errorf("%w: --search-window-m %g: want 0..1000 metres (0: the service's default)", errUsage, f.windowM)
	}
	if !(f.windowDeg >= 0 && f.windowDeg <= 180) {
		return nil, fmt.Errorf("%w: --search-window-deg %g: want 0..180 degrees (0: the service's default)", errUsage, f.windowDeg)
	}
	var ids []string
	if f.agentIDs != "" {
		ids = strings.Split(f.agentIDs, ",")
	}
	var agents []*typesv1.Agent
	var err error
	switch {
	case f.carmen != "":
		agents, err = f.carmenAgents(ids, summary)
	case len(f.rosMaps) > 0:
		agents, err = f.rosMapAgents(ids, summary)
	default:
		return nil, fmt.Errorf("%w: name a --carmen log or --ros-map files", errUsage)
	}
	if err != nil {
		return nil, err
	}
	var spec *typesv1.MapSpec
	if f.mapBounds != "" {
		v, err := floats(f.mapBounds, 4)
		if err != nil || !(v[2] > 0 && v[3] > 0) {
			return nil, fmt.Errorf("%w: --map %q: want x,y,width,height with positive sizes", errUsage, f.mapBounds)
		}
		spec = &typesv1.MapSpec{OriginX: v[0], OriginY: v[1], WidthM: v[2], HeightM: v[3], Resolution: f.resolution}
	}
	req, err := slamio.Request(missionID, agents, f.guesses.m, spec, f.resolution, f.margin)
	if err != nil {
		return nil, err
	}
	req.SearchWindowM = f.windowM
	req.SearchWindowRad = f.windowDeg * math.Pi / 180
	for _, a := range req.GetAgents() {
		what := fmt.Sprintf("%d scans", len(a.GetScans()))
		if sm := a.GetSubmap(); sm != nil {
			what = fmt.Sprintf("submap %dx%d at %g m", sm.GetMeta().GetWidth(), sm.GetMeta().GetHeight(), sm.GetMeta().GetResolution())
		}
		guess := "no guess"
		if g := a.GetInitialGuess(); g != nil {
			guess = fmt.Sprintf("guess (%.3f, %.3f, %.4f)", g.GetX(), g.GetY(), g.GetTheta())
		}
		role := ""
		if a.GetAnchor() {
			role = " anchor"
		}
		fmt.Fprintf(summary, "agent %s%s: %s, %s\n", a.GetAgentId(), role, what, guess)
	}
	m := req.GetMap()
	fmt.Fprintf(summary, "map %g x %g m from (%g, %g) at %g m\n", m.GetWidthM(), m.GetHeightM(), m.GetOriginX(), m.GetOriginY(), m.GetResolution())
	return req, nil
}

// carmenAgents cuts the --carmen log into agents; when odometry is used,
// summary gets the laser mount it was composed with and where that came
// from.
func (f *importFlags) carmenAgents(ids []string, summary io.Writer) ([]*typesv1.Agent, error) {
	segs, err := slamio.ParseSegments(f.segments)
	if err != nil {
		return nil, fmt.Errorf("%w: --segments: %w", errUsage, err)
	}
	if f.stride < 1 {
		// The library reads 0 as 1; typed, it is a mistake.
		return nil, fmt.Errorf("%w: --stride %d: want 1 or more (1 keeps every reading)", errUsage, f.stride)
	}
	log, err := slamio.OpenCarmen(f.carmen)
	if err != nil {
		return nil, err
	}
	if log.Damage != nil {
		fmt.Fprintf(summary, "warning: %v: using the %d readings before it\n", log.Damage, len(log.Readings))
	}
	if log.Twins > 0 {
		fmt.Fprintf(summary, "%d FLASER lines repeat a ROBOTLASER1 line's scan (same time and beams): each scan read once, from its ROBOTLASER1 line; %d readings\n", log.Twins, len(log.Readings))
	}
	agents, err := slamio.CarmenAgents(log, slamio.CarmenOptions{
		Segments: segs, AgentIDs: ids,
		Poses: slamio.PoseSource(f.poses), Guesses: slamio.GuessSource(f.guessFrom),
		Stride: f.stride, KeyframeDist: f.kfDist, KeyframeAngle: f.kfDeg * math.Pi / 180,
		RangeMin: f.rangeMin, RangeMax: f.rangeMax,
	})
	if err != nil && !strings.Contains(err.Error(), f.carmen) {
		// Errors about the options do not name the log; those about its
		// content already do (with the line), once is enough.
		err = fmt.Errorf("%s: %w", f.carmen, err)
	}
	if err != nil {
		return nil, err
	}
	if f.poses == string(slamio.PosesOdom) || f.guessFrom == string(slamio.GuessOdom) {
		m := log.LaserMount()
		fmt.Fprintf(summary, "odometry: ODOM lines at each reading's time, laser at %v on the robot (%s)\n", m.Pose, m.Source)
	}
	return agents, nil
}

// minGreyAsFree is how many pixels of grey 205 read as free make slamctl
// warn: a few are an image's greys, many the unknown of an edited Nav2
// save (found by a review: five pixels of grey 128 added to a save turned
// off its detection and 146,000 unknown pixels silently into floor).
const minGreyAsFree = 1000

// rosMapAgents makes one agent per map. The anchor's YAML frame is the
// map frame (guess: identity); the others get a guess only from --guess,
// given for their YAML frame.
func (f *importFlags) rosMapAgents(ids []string, summary io.Writer) ([]*typesv1.Agent, error) {
	if ids != nil && len(ids) != len(f.rosMaps) {
		return nil, fmt.Errorf("%w: %d --agent-ids for %d maps", errUsage, len(ids), len(f.rosMaps))
	}
	var agents []*typesv1.Agent
	seen := map[string]bool{}
	for i, arg := range f.rosMaps {
		path, opts, err := f.rosMapArg(arg)
		if err != nil {
			return nil, err
		}
		m, err := slamio.ReadROSMap(path, opts)
		if err != nil {
			return nil, err
		}
		if m.SaverGreyAsFree >= minGreyAsFree {
			fmt.Fprintf(summary, "warning: %s: its free_thresh reads its %d pixels of grey 205 as free floor; if they are unknown, as map_saver writes unknown (a Nav2 save edited since, or with an alpha channel), --ros-map %s,free_thresh=%g reads them so\n",
				path, m.SaverGreyAsFree, path, m.SaverGreyFreeThresh)
		}
		if m.SaverUnknown > 0 {
			fmt.Fprintf(summary, "warning: %s: its free_thresh reads the %d pixels of grey 205, map_saver's unknown, as free floor (Nav2's map_saver writes free_thresh 0.25 beside them); read as unknown, with ROS 1's free_thresh %g (--ros-map %s,free_thresh=V reads the map by V)\n",
				path, m.SaverUnknown, slamio.ROS1FreeThresh, path)
		}
		id := slamio.AgentIDFromPath(path)
		if ids != nil {
			id = ids[i]
		}
		if err := slamio.CheckAgentID(id); err != nil {
			return nil, fmt.Errorf("%w: %s: %w (name it with --agent-ids)", errUsage, path, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: agent id %q twice: name the maps with --agent-ids", errUsage, id)
		}
		seen[id] = true
		var mapFromYAML *slam.Pose2D
		if g, ok := f.guesses.m[id]; ok {
			mapFromYAML = &g
			delete(f.guesses.m, id) // applied here: it is the YAML frame's guess
		} else if i == 0 {
			mapFromYAML = &slam.Pose2D{}
		}
		a := slamio.ROSMapAgent(m, id, i == 0, mapFromYAML)
		if sub, k := slamio.CoarsenToFit(a.GetSubmap(), slamproto.MaxSubmapCells, f.resolution); k > 1 {
			fine := a.GetSubmap().GetMeta()
			fmt.Fprintf(summary, "note: %s: %dx%d cells at %g m, more than the %d an agent may send: sent at %g m (the mission's resolution is %g m), each cell the largest value of the %dx%d it covers (a wall in any is a wall)\n",
				path, fine.GetWidth(), fine.GetHeight(), fine.GetResolution(), slamproto.MaxSubmapCells, sub.GetMeta().GetResolution(), f.resolution, k, k)
			a.Submap = sub
		} else if fine := a.GetSubmap().GetMeta(); uint64(fine.GetWidth())*uint64(fine.GetHeight()) > slamproto.MaxSubmapCells && fine.GetResolution() < f.resolution {
			k := slamio.FitFactor(int(fine.GetWidth()), int(fine.GetHeight()), slamproto.MaxSubmapCells)
			fmt.Fprintf(summary, "note: %s: %dx%d cells at %g m fit what an agent may send only %dx%d cells to one, %g m, coarser than the mission's --resolution %g: give that --resolution to have it sent so\n",
				path, fine.GetWidth(), fine.GetHeight(), fine.GetResolution(), k, k, float64(k)*fine.GetResolution(), f.resolution)
		}
		if err := f.fewWalls(summary, path, opts, m, a); err != nil {
			return nil, err
		}
		agents = append(agents, a)
	}
	return agents, nil
}

// fewWalls warns, before anything is sent, when map m (read from path with
// opts) holds fewer walls than localization needs to match agent a made of
// it (match.Options.RequiredPoints for the mission's window, or without a
// guess), and names the highest occupied_thresh that would keep enough: a
// review sent the Willow map at its YAML's 0.65, where the grey an image
// editor blended its walls with reads as unknown, and got
// INSUFFICIENT_DATA telling it to send more scans.
func (f *importFlags) fewWalls(summary io.Writer, path string, opts slamio.ROSMapOptions, m *slamio.ROSMap, a *typesv1.Agent) error {
	if a.GetAnchor() {
		// An anchor is not localized; its walls are the reference, whose
		// own check (no wall inside the map) names the anchor.
		return nil
	}
	window := match.Options{WindowXY: f.windowM, WindowTheta: f.windowDeg * math.Pi / 180}
	guessed := a.GetInitialGuess() != nil
	need := window.RequiredPoints(guessed)
	walls := func(m *slamio.ROSMap) (int, error) {
		sub, _ := m.Submap()
		g, err := slamproto.GridFromProto(sub)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		return match.OccupiedCells(g), nil
	}
	n, err := walls(m)
	if err != nil || n >= need {
		return err
	}
	advice := "the map holds too few walls to be matched: send a larger part of the building"
	if withGuess := window.RequiredPoints(true); !guessed && n >= withGuess {
		advice = fmt.Sprintf("give it a guess near its pose (a window around a guess needs %d), or send a larger part of the building", withGuess)
	}
	if m.YAML.Mode != slamio.ModeRaw {
		for _, th := range []float64{0.5, 0.4, 0.3, 0.25, 0.22} {
			if th >= m.YAML.OccupiedThresh {
				continue
			}
			o := opts
			o.OccupiedThresh = &th
			option, which := fmt.Sprintf("occupied_thresh=%g", th), "a lower threshold keeps"
			if th <= m.YAML.FreeThresh {
				// Grey walls under the free threshold read as free: it
				// must come down too, below the occupied one.
				free := math.Min(0.196, th/2)
				o.FreeThresh = &free
				option += fmt.Sprintf(",free_thresh=%g", free)
				which = "lower thresholds keep"
			}
			lower, err := slamio.ReadROSMap(path, o)
			if err != nil {
				return err
			}
			if k, err := walls(lower); err != nil {
				return err
			} else if k >= need {
				advice = fmt.Sprintf("if its walls are grey (as an image editor may blend them), %s them: --ros-map %s,%s gives %d", which, path, option, k)
				break
			}
		}
	}
	fmt.Fprintf(summary, "warning: %s: %d occupied cells at occupied_thresh %g, localization needs %d: %s\n", path, n, m.YAML.OccupiedThresh, need, advice)
	return nil
}

// rosMapArg splits one --ros-map value into the YAML path and its options,
// which start from --occupied-thresh / --free-thresh.
func (f *importFlags) rosMapArg(arg string) (string, slamio.ROSMapOptions, error) {
	opts := slamio.ROSMapOptions{OccupiedThresh: f.occThresh.p, FreeThresh: f.freeThresh.p}
	parts := strings.Split(arg, ",")
	for _, kv := range parts[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "occupied_thresh", "free_thresh":
			var o optFloat
			if err := o.Set(v); err != nil {
				return "", opts, fmt.Errorf("%w: --ros-map %s: %s %q: %w", errUsage, arg, k, v, err)
			}
			if k == "occupied_thresh" {
				opts.OccupiedThresh = o.p
			} else {
				opts.FreeThresh = o.p
			}
		case "mode":
			opts.Mode = slamio.MapMode(v)
			if opts.Mode != slamio.ModeTrinary && opts.Mode != slamio.ModeScale && opts.Mode != slamio.ModeRaw {
				return "", opts, fmt.Errorf("%w: --ros-map %s: mode %q: want trinary, scale or raw", errUsage, arg, v)
			}
		default:
			return "", opts, fmt.Errorf("%w: --ros-map %s: unknown option %q (occupied_thresh, free_thresh, mode)", errUsage, arg, kv)
		}
	}
	return parts[0], opts, nil
}

// writeMissionJSON writes req as proto3 JSON, the form grpcurl -d @ reads.
func writeMissionJSON(path string, req *orchestratorv1.StartMissionRequest, stdout io.Writer) error {
	b, err := protojson.Marshal(req)
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// stringList collects a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// optFloat is a float flag that knows whether it was given.
type optFloat struct{ p *float64 }

func (o *optFloat) String() string {
	if o.p == nil {
		return ""
	}
	return strconv.FormatFloat(*o.p, 'g', -1, 64)
}

func (o *optFloat) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		return errors.New("want a number in [0, 1]")
	}
	o.p = &f
	return nil
}

// guessFlags collects repeated --guess ID=x,y,theta values.
type guessFlags struct{ m map[string]slam.Pose2D }

func (g *guessFlags) String() string { return fmt.Sprint(len(g.m), " guesses") }

func (g *guessFlags) Set(v string) error {
	id, pose, ok := strings.Cut(v, "=")
	if !ok || id == "" {
		return fmt.Errorf("want ID=x,y,theta, got %q", v)
	}
	p, err := floats(pose, 3)
	if err != nil {
		return fmt.Errorf("guess %q: %w", v, err)
	}
	if g.m == nil {
		g.m = map[string]slam.Pose2D{}
	}
	if _, dup := g.m[id]; dup {
		return fmt.Errorf("agent %q guessed twice", id)
	}
	g.m[id] = slam.Pose2D{X: p[0], Y: p[1], Theta: p[2]}
	return nil
}

// floats parses n comma-separated finite numbers.
func floats(s string, n int) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("want %d comma-separated numbers", n)
	}
	out := make([]float64, n)
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a finite number", p)
		}
		out[i] = v
	}
	return out, nil
}

func cmdImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("import", "import [flags] (--carmen LOG --segments LIST | --ros-map MAP.yaml...) -o mission.json", stderr)
	var imp importFlags
	imp.register(fs)
	var gates gateFlags
	gates.register(fs)
	id := fs.String("id", "", "mission id (idempotency key); generated by the orchestrator when empty")
	out := fs.String("o", "-", "where to write the StartMission JSON (- : stdout); send it with grpcurl -d @ ... < mission.json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	req, err := imp.request(*id, stderr)
	if err != nil {
		return err
	}
	if err := gates.apply(req); err != nil {
		return err
	}
	return writeMissionJSON(*out, req, stdout)
}
