package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
	"github.com/slammesh/slammesh/internal/missionid"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/slamio"
)

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		// One write: a script that reads only the start of the usage
		// (`slamctl bench -h | grep -q`, as sidebyside.sh probes it under
		// pipefail) closes the pipe early, and a later write would kill
		// slamctl with SIGPIPE (1 probe in 30 did, a line per write).
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: slamctl %s\n\nFlags:\n", synopsis)
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
		_, _ = io.WriteString(stderr, b.String())
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// oneMissionID takes the single positional mission id of get, cancel, watch and map.
func oneMissionID(fs *flag.FlagSet) (string, error) {
	for _, a := range fs.Args()[min(1, fs.NArg()):] {
		// Flags end at the first argument that is none (Go's flag package):
		// `get ID --json` leaves --json an argument (found by a review).
		if strings.HasPrefix(a, "-") {
			return "", fmt.Errorf("%w: %s after the mission id: flags go before it, and global flags (--json, --addr, ...) before the command: slamctl --json %s [flags] ID", errUsage, a, fs.Name())
		}
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", fmt.Errorf("%w: want exactly one mission id, got %d arguments", errUsage, fs.NArg())
	}
	return fs.Arg(0), nil
}

var kinds = map[string]typesv1.ScenarioKind{
	"office":             typesv1.ScenarioKind_SCENARIO_KIND_OFFICE,
	"sealed-agent":       typesv1.ScenarioKind_SCENARIO_KIND_SEALED_AGENT,
	"symmetric-corridor": typesv1.ScenarioKind_SCENARIO_KIND_SYMMETRIC_CORRIDOR,
	"changed-world":      typesv1.ScenarioKind_SCENARIO_KIND_CHANGED_WORLD,
}

var faultKinds = map[string]typesv1.FaultKind{
	"business":   typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR,
	"transient":  typesv1.FaultKind_FAULT_KIND_TRANSIENT,
	"stall":      typesv1.FaultKind_FAULT_KIND_STALL,
	"drop-reply": typesv1.FaultKind_FAULT_KIND_DROP_REPLY,
}

// faultFlags collects repeated --fault step:kind[:times][:compensation]
// values; the times may be left out before compensation.
type faultFlags []*typesv1.Fault

func (f *faultFlags) String() string { return fmt.Sprint(len(*f), " faults") }

func (f *faultFlags) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 4 {
		return fmt.Errorf("want step:kind[:times][:compensation], got %q", v)
	}
	kind, ok := faultKinds[parts[1]]
	if !ok {
		return fmt.Errorf("unknown fault kind %q (business, transient, stall, drop-reply)", parts[1])
	}
	fault := &typesv1.Fault{Step: parts[0], Kind: kind}
	rest := parts[2:]
	if n := len(rest); n > 0 && rest[n-1] == "compensation" {
		fault.Compensation = true
		rest = rest[:n-1]
	}
	switch {
	case len(rest) > 1:
		return fmt.Errorf("fault's last part must be 'compensation', got %q", rest[1])
	case len(rest) == 1:
		if kind == typesv1.FaultKind_FAULT_KIND_BUSINESS_ERROR {
			return fmt.Errorf("fault %q: a business fault fails every attempt; times applies to transient, stall and drop-reply", v)
		}
		n, err := strconv.ParseUint(rest[0], 10, 32)
		if err != nil {
			return fmt.Errorf("fault times %q: %w", rest[0], err)
		}
		fault.Times = uint32(n)
	}
	*f = append(*f, fault)
	return nil
}

func cmdStart(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("start", "start [flags] (a scenario, or real data: --carmen LOG --segments LIST | --ros-map MAP.yaml...)", stderr)
	id := fs.String("id", "", "mission id (idempotency key); generated when empty")
	seed := fs.Uint64("seed", 1, "scenario seed")
	agents := fs.Uint("agents", 3, "number of agents")
	kind := fs.String("kind", "office", "scenario: office, sealed-agent, symmetric-corridor, changed-world")
	width := fs.Float64("width", 0, "world width in metres, 10 to 200 (0: 20)")
	height := fs.Float64("height", 0, "world height in metres, 8 to 200 (0: 15)")
	wait := fs.Bool("wait", false, "block until the mission ends; exit 1 unless it completed")
	watch := fs.Bool("watch", false, "follow the mission's progress until it ends, resuming as watch does if the orchestrator is lost; exit 1 unless it completed")
	reconnect := fs.Duration("reconnect", defaultReconnect, reconnectFlagHelp+"the start is retried with the same mission id, so it starts one mission, and --wait and --watch go on waiting (0: fail at once)")
	var faults faultFlags
	fs.Var(&faults, "fault", "inject a fault step:kind[:times][:compensation]: kind business (fails every attempt), transient, stall or drop-reply (the first times attempts, default 1); compensation: on the step's compensation (repeatable; needs --allow-fault-injection on the services)")
	var imp importFlags
	imp.register(fs)
	var gates gateFlags
	gates.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	if *reconnect < 0 {
		return fmt.Errorf("%w: --reconnect %v: want 0 or more", errUsage, *reconnect)
	}
	if err := checkModeFlags(fs, imp.given()); err != nil {
		return err
	}
	var req *orchestratorv1.StartMissionRequest
	if imp.given() {
		var err error
		if req, err = imp.request(*id, stderr); err != nil {
			return err
		}
	} else {
		k, ok := kinds[*kind]
		if !ok {
			return fmt.Errorf("%w: unknown --kind %q", errUsage, *kind)
		}
		if *agents == 0 {
			// The API reads 0 as its default of 3; typed, it is a mistake.
			return fmt.Errorf("%w: --agents 0: want 1 or more", errUsage)
		}
		req = &orchestratorv1.StartMissionRequest{
			MissionId: *id,
			Scenario: &typesv1.Scenario{
				Seed: *seed, Agents: uint32(*agents), WidthM: *width, HeightM: *height, Kind: k,
			},
		}
	}
	if err := gates.apply(req); err != nil {
		return err
	}
	req.Wait = *wait && !*watch
	if len(faults) > 0 {
		req.Faults = &typesv1.FaultPlan{Faults: faults}
	}
	// The id is made here, not by the orchestrator, so that a start retried
	// after an UNAVAILABLE (sent or not, the reply lost) is the same mission.
	generated := req.MissionId == ""
	if generated {
		req.MissionId = missionid.New(time.Now())
	}
	var resp *orchestratorv1.StartMissionResponse
	o := outage{reconnect: *reconnect, stderr: stderr, plaintextTo: g.plaintextAddr()}
	for {
		a, opt := o.begin()
		var err error
		if resp, err = c.orchestrator.StartMission(ctx, req, opt); err == nil {
			break
		}
		if rpcerr.Reason(err) == rpcerr.ReasonMissionIDReused {
			return fmt.Errorf("%w\n(%s: slamctl get %s shows that mission)", rpcError("start mission", err), rpcerr.ReasonMissionIDReused, req.MissionId)
		}
		if err := o.retry(ctx, "start mission", err, "retrying mission "+req.MissionId, a); err != nil {
			return err
		}
	}
	if *watch {
		// With --json, stdout is the events alone, one JSON object each.
		head := stdout
		if g.json {
			head = stderr
		}
		fmt.Fprintf(head, "mission %s  trace %s\n", resp.GetMission().GetMissionId(), resp.GetMission().GetTraceId())
		return watchMission(ctx, c, g, resp.GetMission().GetMissionId(), "", *reconnect, stdout, stderr)
	}
	if g.json {
		if err := printJSON(stdout, resp); err != nil {
			return err
		}
	} else {
		// A generated id that exists is this command's own retried start.
		if !resp.GetCreated() && !generated {
			fmt.Fprintln(stdout, "(mission already existed; showing it)")
		}
		missionfmt.Mission(stdout, resp.GetMission())
	}
	if req.Wait {
		return endError(resp.GetMission().GetMissionId(), resp.GetMission().GetState())
	}
	return nil
}

// scenarioFlags are start's flags that describe a scenario world.
var scenarioFlags = map[string]bool{"seed": true, "agents": true, "kind": true, "width": true, "height": true}

// checkModeFlags refuses, as a usage error, a flag of start that the mode
// given does not read: a scenario flag with real data (--carmen, --ros-map),
// or a real-data flag without it. Set and ignored, it would make the
// mission a different one than the user asked for, silently.
func checkModeFlags(fs *flag.FlagSet, realData bool) error {
	var imp importFlags
	importOnly := flag.NewFlagSet("", flag.ContinueOnError)
	imp.register(importOnly)
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if (realData && scenarioFlags[f.Name]) || (!realData && importOnly.Lookup(f.Name) != nil) {
			bad = append(bad, "--"+f.Name)
		}
	})
	switch {
	case len(bad) == 0:
		return nil
	case realData:
		return fmt.Errorf("%w: %s: scenario flags, not read with real data (--carmen, --ros-map)", errUsage, strings.Join(bad, ", "))
	default:
		return fmt.Errorf("%w: %s: real-data flags; give --carmen or --ros-map, or leave them out for a scenario", errUsage, strings.Join(bad, ", "))
	}
}

func cmdGet(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("get", "get MISSION_ID", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	resp, err := c.orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
	if err != nil {
		return rpcError("get mission", err)
	}
	if g.json {
		return printJSON(stdout, resp)
	}
	missionfmt.Mission(stdout, resp.GetMission())
	return nil
}

func cmdList(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("list", "list [flags]", stderr)
	limit := fs.Uint("limit", 20, "at most this many missions, newest first (0: the server's default page, 50; at most 1000)")
	state := fs.String("state", "", "only missions in this state (pending, running, compensating, completed, compensated, failed)")
	if err := parse(fs, args); err != nil {
		return err
	}
	req := &orchestratorv1.ListMissionsRequest{PageSize: uint32(*limit)}
	if *state != "" {
		v, ok := orchestratorv1.MissionState_value["MISSION_STATE_"+strings.ToUpper(*state)]
		if !ok {
			return fmt.Errorf("%w: unknown --state %q", errUsage, *state)
		}
		req.State = orchestratorv1.MissionState(v)
	}
	resp, err := c.orchestrator.ListMissions(ctx, req)
	if err != nil {
		return rpcError("list missions", err)
	}
	if g.json {
		return printJSON(stdout, resp)
	}
	fmt.Fprintf(stdout, "%-28s %-13s %-7s %-20s %s\n", "MISSION", "STATE", "AGENTS", "CREATED", "ERROR")
	for _, m := range resp.GetMissions() {
		fmt.Fprintf(stdout, "%-28s %-13s %-7d %-20s %s\n", m.GetMissionId(),
			missionfmt.State(m.GetState()), m.GetAgents(),
			missionfmt.Stamp(m.GetCreatedAt()), m.GetError().GetReason())
	}
	return nil
}

func cmdCancel(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cancel", "cancel [flags] MISSION_ID", stderr)
	reason := fs.String("reason", "cancelled with slamctl", "why; recorded on the mission's events")
	wait := fs.Bool("wait", false, "block until the compensation ends; exit 1 unless the mission is COMPENSATED")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	resp, err := c.orchestrator.CancelMission(ctx, &orchestratorv1.CancelMissionRequest{MissionId: id, Reason: *reason, Wait: *wait})
	if err != nil {
		return rpcError("cancel mission", err)
	}
	st := resp.GetMission().GetState()
	if g.json {
		if err := printJSON(stdout, resp); err != nil {
			return err
		}
	} else {
		missionfmt.Mission(stdout, resp.GetMission())
		switch st {
		case orchestratorv1.MissionState_MISSION_STATE_PENDING, orchestratorv1.MissionState_MISSION_STATE_RUNNING, orchestratorv1.MissionState_MISSION_STATE_COMPENSATING:
			// The state printed is the one the cancel found (found by a review:
			// "state RUNNING" read as a cancel that did nothing).
			fmt.Fprintf(stdout, "cancel requested: the mission compensates in the background (slamctl watch %s, or cancel --wait)\n", id)
		}
	}
	// A FAILED mission is one whose compensation gave up: a cancel cannot
	// carry it on, and with --wait it is a cancel that did not undo the
	// mission. Either way a script must not read it as done (found by a
	// review: it exited 0).
	switch {
	case st == orchestratorv1.MissionState_MISSION_STATE_FAILED:
		return fmt.Errorf("mission %s is FAILED: a compensation gave up, and a cancel cannot carry it on; once its cause is repaired, slamctl resume %s does", id, id)
	case *wait && st != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED:
		return fmt.Errorf("mission %s is %s, not COMPENSATED", id, missionfmt.State(st))
	}
	return nil
}

// cmdResume carries on the compensation of a FAILED mission
// (ResumeMission), once the fault that made it give up is repaired.
func cmdResume(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resume", "resume [flags] MISSION_ID", stderr)
	wait := fs.Bool("wait", false, "block until the compensation ends; exit 1 unless the mission is COMPENSATED")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	resp, err := c.orchestrator.ResumeMission(ctx, &orchestratorv1.ResumeMissionRequest{MissionId: id, Wait: *wait})
	if err != nil {
		return rpcError("resume mission", err)
	}
	if g.json {
		if err := printJSON(stdout, resp); err != nil {
			return err
		}
	} else {
		missionfmt.Mission(stdout, resp.GetMission())
		if !resp.GetResumed() {
			fmt.Fprintln(stdout, "(nothing to resume: the mission was compensating or compensated already)")
		}
	}
	if st := resp.GetMission().GetState(); *wait && st != orchestratorv1.MissionState_MISSION_STATE_COMPENSATED {
		return fmt.Errorf("mission %s ended %s: the compensation gave up again", id, missionfmt.State(st))
	}
	return nil
}

func cmdMap(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("map", "map [flags] MISSION_ID", stderr)
	out := fs.String("o", "", "file to write: the PNG (default <mission>.png; - : stdout), or for --format ros the base name of BASE.yaml + BASE.pgm (default <mission>; a trailing .yaml or .pgm is taken off)")
	version := fs.Uint("version", 0, "map version (0: current)")
	format := fs.String("format", "png", "png (a picture) or ros (a map_server .yaml + .pgm pair that Nav2 loads)")
	rosMode := fs.String("ros-mode", "trinary", "with --format ros: trinary (occupied >= 65 %, free <= 25 %, the rest unknown; what every ROS consumer reads) or raw (every cell value kept exactly)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "png" && *format != "ros" {
		return fmt.Errorf("%w: --format %q: want png or ros", errUsage, *format)
	}
	if *rosMode != string(slamio.ExportTrinary) && *rosMode != string(slamio.ExportRaw) {
		return fmt.Errorf("%w: --ros-mode %q: want trinary or raw", errUsage, *rosMode)
	}
	// A PNG written under another picture's name is read as that format,
	// and fails, by whoever opens it (found by a review: -o map.jpg).
	switch ext := strings.ToLower(filepath.Ext(*out)); {
	case *format == "ros" && *out == "-":
		return fmt.Errorf("%w: -o -: --format ros writes two files, BASE.yaml and BASE.pgm; give the base name", errUsage)
	case *format == "png" && pictureExt[ext]:
		return fmt.Errorf("%w: -o %s: the map is written as PNG; name it .png (or --format ros for a map_server pair)", errUsage, *out)
	case *format == "ros" && (ext == ".yaml" || ext == ".yml" || ext == ".pgm"):
		// The pair's own names: -o merged.yaml means the base merged.
		*out = strings.TrimSuffix(*out, filepath.Ext(*out))
	case *format == "ros" && (ext == ".png" || pictureExt[ext]):
		return fmt.Errorf("%w: -o %s: --format ros writes BASE.yaml and BASE.pgm; give the base name", errUsage, *out)
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	mc, closer, err := c.mapping()
	if err != nil {
		return err
	}
	defer closer.Close()
	m, err := fetchMap(ctx, mc, &mappingv1.StreamMapRequest{MissionId: id, Version: uint32(*version), IncludePng: *format == "png"})
	if err != nil {
		return mapError(ctx, c, id, err)
	}
	path := *out
	if path == "" {
		path = id
	}
	if *format == "ros" {
		grid := &typesv1.OccupancyGrid{Meta: m.header.GetMeta(), Data: m.cells}
		if err := slamio.WriteROSMap(path, grid, slamio.ExportMode(*rosMode)); err != nil {
			return err
		}
		path += ".yaml + .pgm"
	} else {
		if *out == "" {
			path += ".png"
		}
		if path == "-" {
			// The picture alone on stdout, for a pipe; what was written
			// goes to stderr (found by a review: a file named "-").
			if _, err := stdout.Write(m.png); err != nil {
				return err
			}
			path, stdout = "stdout", stderr
		} else if err := os.WriteFile(path, m.png, 0o644); err != nil {
			return err
		}
	}
	meta := m.header.GetMeta()
	fmt.Fprintf(stdout, "wrote %s: map %s version %d of %d, %dx%d cells at %.3f m\n", path,
		m.header.GetMapId(), m.header.GetVersion(), m.header.GetCurrentVersion(), meta.GetWidth(), meta.GetHeight(), meta.GetResolution())
	return nil
}

// pictureExt are the extensions of picture formats other than PNG.
var pictureExt = map[string]bool{
	".jpg": true, ".jpeg": true, ".gif": true, ".bmp": true, ".pgm": true, ".ppm": true, ".tif": true, ".tiff": true,
	".webp": true, ".svg": true, ".avif": true, ".heic": true, ".ico": true,
}

// streamedMap is a map fetched with StreamMap: the first message's header,
// and the cells and PNG put back together.
type streamedMap struct {
	header *mappingv1.StreamMapResponse
	cells  []byte
	png    []byte
}

// mapMissionTimeout bounds mapError's question to the orchestrator.
const mapMissionTimeout = 3 * time.Second

// mapError says why fetchMap failed. The mapping service knows maps, not
// missions: its NOT_FOUND lists every way a map goes. When the
// orchestrator does not know the mission either (never started, deleted
// or expired), its own NOT_FOUND says which, and is what the user needs;
// when it cannot be asked, the mapping service's answer stands, with the
// orchestrator's refusal when it refused the token.
func mapError(ctx context.Context, c *clients, id string, err error) error {
	if status.Code(err) != codes.NotFound {
		return rpcError("get map", err)
	}
	ctx, cancel := context.WithTimeout(ctx, mapMissionTimeout)
	defer cancel()
	resp, gerr := c.orchestrator.GetMission(ctx, &orchestratorv1.GetMissionRequest{MissionId: id})
	switch st := status.Convert(gerr); st.Code() {
	case codes.OK:
		if why := mapGone(resp.GetMission()); why != "" {
			return fmt.Errorf("get map: %s: mission %s has no map: %s", codes.NotFound, id, why)
		}
	case codes.NotFound:
		return rpcError("get map", gerr)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%w (the orchestrator, asked whether the mission exists, answered %s: %s)", rpcError("get map", err), st.Code(), st.Message())
	}
	return rpcError("get map", err)
}

// mapGone is which of the ways a map goes the mission's record tells,
// instead of the mapping service's list of them all (found by a review:
// a torn-down mission's answer listed every cause); "" when the record
// does not tell (a compensation that gave up may or may not have released
// it). The allocate_map step tells it: a compensated step's output, the
// map id, is cleared from the record (found by a second review).
func mapGone(m *orchestratorv1.Mission) string {
	var alloc *orchestratorv1.Step
	nextRan := false // a step after allocate_map was attempted
	for _, s := range m.GetSteps() {
		switch {
		case s.GetName() == "allocate_map":
			alloc = s
		case alloc != nil && s.GetAttempts() > 0:
			nextRan = true
		}
	}
	st := m.GetState()
	switch as := alloc.GetState(); {
	case alloc == nil:
		return ""
	case as == orchestratorv1.StepState_STEP_STATE_COMPENSATED && alloc.GetError() != nil && !nextRan && alloc.GetCompensationAttempts() <= 1:
		// The saga compensates a failed step too, so a failed allocation
		// ends COMPENSATED: its error, and no step after it, tell it
		// (found by a review). A retried compensation's error may be the
		// compensation's own, and says nothing of the action.
		return "allocate_map failed (" + strings.TrimSpace(alloc.GetError().GetCode()+" "+alloc.GetError().GetReason()) + "): none was allocated"
	case as == orchestratorv1.StepState_STEP_STATE_COMPENSATED && alloc.GetError() != nil && !nextRan:
		return ""
	case as == orchestratorv1.StepState_STEP_STATE_COMPENSATED:
		return "it was undone (" + missionfmt.State(st) + ": cancelled, torn down or failed), and undoing allocate_map released its map"
	case as == orchestratorv1.StepState_STEP_STATE_PENDING, as == orchestratorv1.StepState_STEP_STATE_FAILED:
		return "allocate_map " + strings.TrimPrefix(as.String(), "STEP_STATE_") + ": none was allocated"
	case as == orchestratorv1.StepState_STEP_STATE_RUNNING:
		return "none is allocated yet (allocate_map RUNNING)"
	case st == orchestratorv1.MissionState_MISSION_STATE_COMPLETED && m.GetMapId() != "":
		return "its map " + m.GetMapId() + " was evicted, oldest first, to keep the retained maps within the mapping service's --retained-cells"
	}
	return ""
}

// fetchMap reads a map with MappingService.StreamMap, which serves a map of
// any size in chunks that fit gRPC's default 4 MiB receive limit, and
// checks that it got every byte the header announced. A failed call's
// gRPC status is returned as it is, for mapError.
func fetchMap(ctx context.Context, mc mappingv1.MappingServiceClient, req *mappingv1.StreamMapRequest) (*streamedMap, error) {
	stream, err := mc.StreamMap(ctx, req)
	if err != nil {
		return nil, err
	}
	var m streamedMap
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if m.header == nil {
			m.header = resp
			m.cells = make([]byte, 0, resp.GetTotalCells())
			m.png = make([]byte, 0, resp.GetPngBytes())
		}
		m.cells = append(m.cells, resp.GetCells()...)
		m.png = append(m.png, resp.GetPng()...)
	}
	if m.header == nil {
		return nil, fmt.Errorf("the stream ended without a message")
	}
	if uint64(len(m.cells)) != m.header.GetTotalCells() || uint64(len(m.png)) != m.header.GetPngBytes() {
		return nil, fmt.Errorf("got %d cells and %d PNG bytes, the header announced %d and %d",
			len(m.cells), len(m.png), m.header.GetTotalCells(), m.header.GetPngBytes())
	}
	return &m, nil
}
