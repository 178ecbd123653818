package slamio_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam"
	"github.com/slammesh/slammesh/internal/slamio"
)

// smallLog has two FLASER readings (4 beams: even rule), one ROBOTLASER1
// (3 beams from -0.5 rad by 0.25, max range 8) and ODOM lines with the
// readings' timestamps, out of order as in real logs, plus lines of other
// types and comments.
const smallLog = `# CARMEN log
PARAM robot_frontlaser_offset 0.0 nohost 0
ODOM 0 0 0 0 0 0 0.5 host 0.5
ODOM 1 0 0 0 0 0 2.0 host 2.0
ODOM 0.1 0.2 0.3 0 0 0 1.0 host 1.0
FLASER 4 1.0 2.0 3.0 81.83 1 2 0.5 1 2 0.5 1.0 host 1.0
NEFF 12.5
FLASER 4 1.5 2.5 3.5 4.5 2 2 0.5 2 2 0.5 2.0 host 2.0
ROBOTLASER1 0 -0.5 0.5 0.25 8.0 0.01 0 3 1 2 9 0 3 3 1.5707963267948966 3 3 1.5707963267948966 0 0 0 0 0 3.0 host 3.0
ODOM 1.5 0 0 0 0 0 3.0 host 3.0
`

func TestParseCarmenSmallLog(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(smallLog))
	_ = zw.Close()
	for name, input := range map[string][]byte{"plain": []byte(smallLog), "gzip": gz.Bytes()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			log, err := slamio.ParseCarmen(bytes.NewReader(input), "small.log")
			if err != nil {
				t.Fatal(err)
			}
			if len(log.Readings) != 3 || len(log.Odom) != 4 {
				t.Fatalf("%d readings, %d odom; want 3, 4", len(log.Readings), len(log.Odom))
			}
			r := log.Readings[0]
			if r.Line != 6 || r.Kind != "FLASER" || r.AngleMin != -math.Pi/2 || r.AngleIncrement != math.Pi/4 || r.Ranges[3] != 81.83 || r.Laser != (slam.Pose2D{X: 1, Y: 2, Theta: 0.5}) || r.Time != 1 {
				t.Errorf("reading 0: %+v", r)
			}
			rl := log.Readings[2]
			if rl.Index != 2 || rl.Kind != "ROBOTLASER1" || rl.AngleMin != -0.5 || rl.AngleIncrement != 0.25 || rl.MaxRange != 8 || len(rl.Ranges) != 3 || rl.Laser.X != 3 {
				t.Errorf("reading 2: %+v", rl)
			}
		})
	}
}

// A ROBOTLASER1 line of a laser sweeping right to left (a negative
// angular_resolution: one mounted upside down) places beam i at start +
// i·resolution, as a LaserScan with a negative angle_increment does; a
// review's was refused as out of (0, 2π].
func TestParseCarmenRightToLeftSweep(t *testing.T) {
	t.Parallel()
	line := "ROBOTLASER1 0 0.5 1 -0.25 8 0 0 3 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 1 h 1\n"
	log, err := slamio.ParseCarmen(strings.NewReader(line), "flipped.log")
	if err != nil {
		t.Fatal(err)
	}
	if r := log.Readings[0]; r.AngleMin != 0.5 || r.AngleIncrement != -0.25 || len(r.Ranges) != 3 {
		t.Errorf("reading %+v, want beams at 0.5, 0.25, 0", r)
	}
}

func TestFLASERGeometry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n   int
		inc float64
	}{{180, math.Pi / 180}, {360, math.Pi / 360}, {181, math.Pi / 180}, {361, math.Pi / 360}} {
		amin, inc, err := slamio.FLASERGeometry(tc.n)
		if err != nil || amin != -math.Pi/2 || inc != tc.inc {
			t.Errorf("FLASERGeometry(%d) = %g, %g, %v; want -π/2, %g", tc.n, amin, inc, err, tc.inc)
		}
	}
	if _, _, err := slamio.FLASERGeometry(1); err == nil {
		t.Error("1 beam accepted")
	}
}

func TestCarmenAgentsPosesGuessesAndKeyframes(t *testing.T) {
	t.Parallel()
	log, err := slamio.ParseCarmen(strings.NewReader(smallLog), "small.log")
	if err != nil {
		t.Fatal(err)
	}
	near := func(p interface{ GetX() float64 }, x float64) bool { return math.Abs(p.GetX()-x) < 1e-12 }
	// Laser poses: agent 0 = readings 0..1, agent 1 = reading 2.
	agents, err := slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 1}, {2, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	a0, a1 := agents[0], agents[1]
	if a0.GetAgentId() != "robot-0" || !a0.GetAnchor() || a1.GetAnchor() || len(a0.GetScans()) != 2 {
		t.Fatalf("agents %v", agents)
	}
	// Second scan: laser (2,2,.5) in the frame of (1,2,.5): 1 m along the heading.
	p := a0.GetScans()[1].GetOdomPose()
	if math.Abs(p.GetX()-math.Cos(0.5)) > 1e-12 || math.Abs(p.GetY()+math.Sin(0.5)) > 1e-12 || math.Abs(p.GetTheta()) > 1e-12 {
		t.Errorf("odom pose %v, want (cos .5, -sin .5, 0)", p)
	}
	if g := a0.GetInitialGuess(); !near(g, 1) || g.GetY() != 2 || g.GetTheta() != 0.5 {
		t.Errorf("anchor guess %v", g)
	}
	if g := a1.GetInitialGuess(); !near(g, 3) || g.GetY() != 3 {
		t.Errorf("agent 1 guess %v, want its laser pose", g)
	}
	if s := a1.GetScans()[0].GetScan(); s.GetRangeMax() != 8 || s.GetRangeMin() != 0.1 || s.GetAngleMin() != -0.5 {
		t.Errorf("ROBOTLASER1 scan %v: its maximum range 8 lowers the 20 m default", s)
	}
	if s := a0.GetScans()[0].GetScan(); s.GetRangeMax() != 20 || s.GetRanges()[3] != 81.83 {
		t.Errorf("FLASER scan %v: want range_max 20 and the no-return reading kept as logged", s)
	}

	// Odom poses: reading 0 at t=1 → ODOM (0.1,0.2,0.3); reading 1 at t=2
	// → (1,0,0); the agent-1 guess chains the anchor's laser pose with the
	// odometry from t=1 to t=3.
	agents, err = slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 1}, {2, 2}}, Poses: slamio.PosesOdom, AgentIDs: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	o0 := slam.Pose2D{X: 0.1, Y: 0.2, Theta: 0.3}
	want := o0.Inverse().Compose(slam.Pose2D{X: 1})
	if p := agents[0].GetScans()[1].GetOdomPose(); math.Abs(p.GetX()-want.X) > 1e-12 || math.Abs(p.GetY()-want.Y) > 1e-12 {
		t.Errorf("odom pose %v, want %v", p, want)
	}
	wantGuess := slam.Pose2D{X: 1, Y: 2, Theta: 0.5}.Compose(o0.Inverse().Compose(slam.Pose2D{X: 1.5}))
	if g := agents[1].GetInitialGuess(); math.Abs(g.GetX()-wantGuess.X) > 1e-12 || math.Abs(g.GetY()-wantGuess.Y) > 1e-12 || agents[1].GetAgentId() != "b" {
		t.Errorf("odom-chained guess %v, want %v", g, wantGuess)
	}

	// No guesses; keyframes by distance keep only the first reading (the
	// second is 1 m away, under 1.5 m).
	agents, err = slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 1}, {2, 2}}, Guesses: slamio.GuessNone, KeyframeDist: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	if agents[1].GetInitialGuess() != nil || agents[0].GetInitialGuess() == nil || len(agents[0].GetScans()) != 1 {
		t.Errorf("guess-none/keyframes: %v", agents)
	}
	agents, err = slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 1}}, KeyframeDist: 0.9})
	if err != nil || len(agents[0].GetScans()) != 2 {
		t.Errorf("keyframe 0.9 m: %v, %v; want both readings", agents, err)
	}

	for _, bad := range []slamio.CarmenOptions{
		{Segments: []slamio.Segment{{0, 3}}},
		{Segments: []slamio.Segment{{0, 1}}, AgentIDs: []string{"a", "b"}},
		{Segments: []slamio.Segment{{0, 1}}, AgentIDs: []string{"bad id"}},
		{Segments: []slamio.Segment{{0, 1}}, Poses: "gps"},
		{Segments: []slamio.Segment{{0, 1}}, RangeMin: 5, RangeMax: 1},
		{},
		// Overlapping readings, a negative stride or keyframe threshold, a
		// NaN threshold (that would switch keyframing off unnoticed).
		{Segments: []slamio.Segment{{0, 1}, {1, 2}}},
		{Segments: []slamio.Segment{{1, 2}, {0, 0}, {2, 2}}},
		{Segments: []slamio.Segment{{1, 0}}},
		{Segments: []slamio.Segment{{0, 1}}, Stride: -3},
		{Segments: []slamio.Segment{{0, 1}}, KeyframeDist: -1},
		{Segments: []slamio.Segment{{0, 1}}, KeyframeAngle: math.NaN()},
		{Segments: []slamio.Segment{{0, 1}}, KeyframeDist: math.Inf(1)},
	} {
		if _, err := slamio.CarmenAgents(log, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	_, err = slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 1}, {2, 2}, {1, 1}}})
	if err == nil || !strings.Contains(err.Error(), "segments 0:1 and 1:1 overlap (readings 1..1 would be in two agents)") {
		t.Errorf("overlapping segments: %v", err)
	}
	noOdom, err := slamio.ParseCarmen(strings.NewReader("FLASER 2 1 1 0 0 0 0 0 0 1 h 1\n"), "x.log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slamio.CarmenAgents(noOdom, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 0}}, Poses: slamio.PosesOdom}); err == nil {
		t.Error("odom poses from a log without ODOM accepted")
	}
	stale, err := slamio.ParseCarmen(strings.NewReader("ODOM 0 0 0 0 0 0 1 h 1\nFLASER 2 1 1 0 0 0 0 0 0 3.5 h 3.5\n"), "stale.log")
	if err != nil {
		t.Fatal(err)
	}
	_, err = slamio.CarmenAgents(stale, slamio.CarmenOptions{Segments: []slamio.Segment{{0, 0}}, Poses: slamio.PosesOdom})
	if err == nil || !strings.Contains(err.Error(), "stale.log:2: reading 0 at t=3.5 s: the nearest ODOM line (line 1) is 2.5 s away") {
		t.Errorf("odom 2.5 s from the reading: %v", err)
	}
}

func TestParseSegments(t *testing.T) {
	t.Parallel()
	got, err := slamio.ParseSegments("6:35, 120:149,300:329")
	if err != nil || len(got) != 3 || got[1] != (slamio.Segment{First: 120, Last: 149}) {
		t.Fatalf("ParseSegments = %v, %v", got, err)
	}
	for _, bad := range []string{"", "6", "6:", "a:b", "9:3", "-1:4", "1:2,,3:4"} {
		if _, err := slamio.ParseSegments(bad); err == nil {
			t.Errorf("ParseSegments(%q) accepted", bad)
		}
	}
}

func TestParseCarmenErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ log, want string }{
		{"PARAM x\nFLASER 3 1 2\n", "bad.log:2: FLASER: 3 ranges announced, line has 2 fields"},
		{"FLASER x 1 2\n", `bad.log:1: FLASER: beam count "x" is not a number`},
		{"FLASER 2 1 oops 0 0 0 0 0 0 1 h 1\n", `bad.log:1: FLASER: range 2 "oops" is not a number`},
		// strtod reads "1_0" as 1; Go would read 10.
		{"FLASER 2 1 1_0 0 0 0 0 0 0 1 h 1\n", `bad.log:1: FLASER: range 2 "1_0" is not a number`},
		{"ODOM 1_0 0 0 0 0 0 1 h 1\n", `bad.log:1: ODOM: pose x "1_0" is not a number`},
		{"FLASER 2 1 1 0 0 nan 0 0 0 1 h 1\n", "bad.log:1: FLASER: laser pose"},
		{"FLASER 2 1 1 0 0 0 0 0 0\n", "bad.log:1: FLASER: line ends before timestamp"},
		{"FLASER 1 1 0 0 0 0 0 0 1 h 1\n", "bad.log:1: FLASER: 1 beams"},
		// A beam count one off says so (found by a review: one too many
		// read the hostname as the timestamp; one too few read every
		// field after the ranges one place off, silently).
		{"FLASER 3 1 1 0 0 0 0 0 0 1 host 1\n", `bad.log:1: FLASER: timestamp "host" is not a number; the count announces 3 ranges and 9 fields after them (12 after the count), the line has 11: the beam count 3 may be wrong`},
		{"FLASER 2 1 1 1 0 0 0 0 0 0 1 host 1\n", `bad.log:1: FLASER: too many fields; the count announces 2 ranges and 9 fields after them (11 after the count), the line has 12: the beam count 2 may be wrong`},
		{"# c\n\nODOM 1 2\n", "bad.log:3: ODOM: line ends before pose theta"},
		{"ROBOTLASER1 0 -0.5 0.5 0 8 0 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 1 h 1\n", "bad.log:1: ROBOTLASER1: angular resolution 0 rad: its size is not in (0, 2π]"},
		{"ROBOTLASER1 0 -0.5 0.5 0.1 8 0 0 2 1\n", "bad.log:1: ROBOTLASER1: 2 ranges announced"},
		{"ODOM 0 0 0 0 0 0 1 h 1\n", "no FLASER or ROBOTLASER1 line"},
		// A log of raw laser messages (no pose on the line) says why it is
		// refused instead of only that nothing was found.
		{"ODOM 0 0 0 0 0 0 1 h 1\nRAWLASER1 0 -1.57 3.14 0.5 80 0.01 0 2 1 1 0 1 h 1\nRAWLASER1 0 -1.57 3.14 0.5 80 0.01 0 2 1 1 0 2 h 2\nRLASER 2 1 1 0 0 0 0 0 0 3 h 3\n",
			"bad.log: no FLASER or ROBOTLASER1 line in 4 lines (it has 1 RLASER, 2 RAWLASER1 lines, which are not read"},
		// A NaN timestamp would pair a reading with any ODOM line.
		{"FLASER 2 1 1 0 0 0 0 0 0 nan h 1\n", `bad.log:1: FLASER: timestamp "nan" is not a finite number`},
		{"ODOM 0 0 0 0 0 0 inf h 1\n", `bad.log:1: ODOM: timestamp "inf" is not a finite number`},
		{"ROBOTLASER1 0 -0.5 0.5 0.1 8 0 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 NaN h 1\n", `bad.log:1: ROBOTLASER1: timestamp "NaN" is not a finite number`},
		{"FLASER 2 1 1 0 0 0 0 0 0 1 h 1\nFLASER " + strings.Repeat("1 ", 600000) + "\n", "bad.log:2: line longer than"},
	} {
		_, err := slamio.ParseCarmen(strings.NewReader(tc.log), "bad.log")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, slamio.ErrSyntax) {
			t.Errorf("log %.40q: error %v, want %q wrapping ErrSyntax", tc.log, err, tc.want)
		}
	}
}

// TestParseCarmenFieldAfterTheLoggerTimestamp: a field of a logger's own
// after a numeric logger timestamp is no beam count one off (whose short
// count puts the hostname there): the line reads as without it.
func TestParseCarmenFieldAfterTheLoggerTimestamp(t *testing.T) {
	t.Parallel()
	log, err := slamio.ParseCarmen(strings.NewReader("FLASER 2 1 2 0.5 0.25 0 0 0 0 7 host 7.5 extra\n"), "extra.log")
	if err != nil {
		t.Fatal(err)
	}
	if r := log.Readings[0]; len(r.Ranges) != 2 || r.Ranges[1] != 2 || r.Laser != (slam.Pose2D{X: 0.5, Y: 0.25}) || r.Time != 7 {
		t.Errorf("reading %+v", r)
	}
}

// TestParseCarmenTruncatedGzip cuts a gzipped log inside a laser line: the
// log is read up to the cut, its partial line dropped, and Damage says the
// file is truncated, not that the partial line's fields are wrong. A log
// cut before its first reading is an error.
func TestParseCarmenTruncatedGzip(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	// Distinct ranges keep the compressed stream long, so that a cut lands
	// inside a line's text as it does in a real log.
	for i := range 2000 {
		fmt.Fprintf(zw, "FLASER 4 %d.%03d 2.%d 3.%d 81.83 1 2 0.5 1 2 0.5 %d host %d\n", i%7, i*37%1000, i%13, i%11, i, i)
	}
	_ = zw.Close()
	for _, cut := range []int{gz.Len() / 2, gz.Len() - 4} {
		log, err := slamio.ParseCarmen(bytes.NewReader(gz.Bytes()[:cut]), "cut.log.gz")
		if err != nil {
			t.Fatalf("gzip cut at %d of %d bytes: %v", cut, gz.Len(), err)
		}
		if log.Damage == nil || !strings.Contains(log.Damage.Error(), "cut.log.gz: reading stops at line") || !strings.Contains(log.Damage.Error(), "truncated or corrupt") {
			t.Errorf("gzip cut at %d of %d bytes: damage %v", cut, gz.Len(), log.Damage)
		}
		// A cut in the trailer (the CRC) loses no line, yet says so.
		n := len(log.Readings)
		if n == 0 || n > 2000 || (cut > gz.Len()-8) != (n == 2000) {
			t.Fatalf("gzip cut at %d of %d bytes: %d readings", cut, gz.Len(), n)
		}
		// Every reading kept is whole: its timestamp is its line's.
		for i, r := range log.Readings {
			if r.Time != float64(i) || r.Line != i+1 {
				t.Fatalf("reading %d: line %d at t=%g", i, r.Line, r.Time)
			}
		}
		_, err = slamio.CarmenAgents(log, slamio.CarmenOptions{Segments: []slamio.Segment{{0, n}}})
		if err == nil || !strings.Contains(err.Error(), "before its damage") {
			t.Errorf("a segment past the cut: %v", err)
		}
	}
	if _, err := slamio.ParseCarmen(bytes.NewReader(gz.Bytes()[:30]), "cut.log.gz"); err == nil || !strings.Contains(err.Error(), "truncated or corrupt") {
		t.Errorf("gzip cut before its first reading: %v", err)
	}
}

// TestParseCarmenLastLineCutShort: a plain log whose last line stops
// mid-field (written by a robot that lost power) is read up to that line;
// a last line without its newline that parses is kept, as an editor leaves
// it; a damaged line that is not the last is an error naming it.
func TestParseCarmenLastLineCutShort(t *testing.T) {
	t.Parallel()
	whole := "FLASER 2 1 1 0 0 0 0 0 0 1 h 1\nODOM 0 0 0 0 0 0 1 h 1\nFLASER 2 1 1 0 0 0 0 0 0 2 h 2\n"
	for _, tc := range []struct {
		name, text string
		readings   int
		damage     string
	}{
		{"cut in a laser line", whole + "FLASER 2 1 1 0.5 0.", 2, "cut.log:4: the last line is cut short (FLASER: line ends before"},
		{"cut in an ODOM line", whole + "ODOM 0.5 0", 2, "cut.log:4: the last line is cut short (ODOM"},
		// The fields parse, the timestamp is cut: 5 was 51.0.
		{"cut in a laser line's timestamp", whole + "FLASER 2 1 1 0 0 0 0 0 0 5", 2, "cut.log:4: the last line is cut short (FLASER: line ends before its hostname"},
		{"cut in an ODOM line's timestamp", whole + "ODOM 0 0 0 0 0 0 5", 2, "cut.log:4: the last line is cut short (ODOM: line ends before its hostname"},
		{"no newline at the end", strings.TrimSuffix(whole, "\n"), 2, ""},
	} {
		log, err := slamio.ParseCarmen(strings.NewReader(tc.text), "cut.log")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := ""
		if log.Damage != nil {
			got = log.Damage.Error()
		}
		if len(log.Readings) != tc.readings || !strings.HasPrefix(got, tc.damage) || (tc.damage == "") != (got == "") {
			t.Errorf("%s: %d readings, damage %q; want %d, %q", tc.name, len(log.Readings), got, tc.readings, tc.damage)
		}
	}
	if _, err := slamio.ParseCarmen(strings.NewReader("FLASER 2 1 1 0.5 0.\n"+whole), "mid.log"); err == nil || !strings.Contains(err.Error(), "mid.log:1") {
		t.Errorf("a damaged line mid-log: %v", err)
	}
}

// TestParseCarmenByteOrderMark: a first line behind a UTF-8 byte order mark
// is read, not skipped (which would shift every reading index by one).
func TestParseCarmenByteOrderMark(t *testing.T) {
	t.Parallel()
	log, err := slamio.ParseCarmen(strings.NewReader("\ufeff"+strings.ReplaceAll(smallLog[strings.Index(smallLog, "FLASER"):], "\n", "\r\n")), "bom.log")
	if err != nil || len(log.Readings) != 3 || log.Readings[0].Line != 1 {
		t.Fatalf("%+v, %v; want 3 readings, the first on line 1", log, err)
	}
}

// TestParseCarmenOverflowIsNoReturn: a reading too large for float32 (a
// logger's "no return" sentinel such as 1e39) is +Inf, a no-return beam
// as "inf" is, not a syntax error that calls it "not a number".
func TestParseCarmenOverflowIsNoReturn(t *testing.T) {
	t.Parallel()
	log, err := slamio.ParseCarmen(strings.NewReader("FLASER 2 1 1e39 0 0 0 0 0 0 1 h 1\n"), "big.log")
	if err != nil {
		t.Fatal(err)
	}
	if r := log.Readings[0].Ranges; len(r) != 2 || r[0] != 1 || !math.IsInf(float64(r[1]), 1) {
		t.Errorf("ranges %v, want [1 +Inf]", r)
	}
}

// TestParseCarmenTwinLines: a logger that writes every scan as FLASER and
// as ROBOTLASER1 gives each scan once, from its ROBOTLASER1 line, so that
// reading indices count scans; a FLASER line of another scan stays.
func TestParseCarmenTwinLines(t *testing.T) {
	t.Parallel()
	text := `FLASER 3 1 2 3 0 0 0 0 0 0 1.0 h 1.0
ROBOTLASER1 0 -1.5708 3.1416 1.5708 80 0.01 0 3 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 1.0 h 1.0
ROBOTLASER1 0 -1.5708 3.1416 1.5708 80 0.01 0 3 1 2 3 0 1 0 0 1 0 0 0 0 0 0 0 2.0 h 2.0
FLASER 3 1 2 3 1 0 0 1 0 0 2.0 h 2.0
FLASER 3 4 5 6 2 0 0 2 0 0 3.0 h 3.0
`
	log, err := slamio.ParseCarmen(strings.NewReader(text), "twins.log")
	if err != nil {
		t.Fatal(err)
	}
	if log.Twins != 2 || len(log.Readings) != 3 {
		t.Fatalf("%d twins, %d readings; want 2, 3", log.Twins, len(log.Readings))
	}
	for i, want := range []struct {
		kind string
		line int
	}{{"ROBOTLASER1", 2}, {"ROBOTLASER1", 3}, {"FLASER", 5}} {
		if r := log.Readings[i]; r.Index != i || r.Kind != want.kind || r.Line != want.line {
			t.Errorf("reading %d: index %d, %s on line %d; want %s on line %d", i, r.Index, r.Kind, r.Line, want.kind, want.line)
		}
	}
}
