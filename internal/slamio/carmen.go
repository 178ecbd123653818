package slamio

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/slammesh/slammesh/internal/slam"
)

// maxLineBytes bounds one log line: a 361-beam FLASER line is about 2 KiB,
// the largest CARMEN scanners a few times that. A longer line is an error,
// not an allocation.
const maxLineBytes = 1 << 20

// maxLogBytes bounds the unpacked size of one log (gzip can expand a small
// file into anything): 1 GiB is hours of logging at 75 Hz.
const maxLogBytes = 1 << 30

// Reading is one laser reading of a CARMEN log.
type Reading struct {
	// Index is the reading's 0-based position among the log's laser
	// readings (FLASER and ROBOTLASER1 lines together, in file order, a
	// FLASER line that repeats a ROBOTLASER1 line left out: Log.Twins);
	// the reading ranges of CarmenOptions.Segments count in it.
	Index int
	// Line is the reading's 1-based line in the (unpacked) log.
	Line int
	// Kind is "FLASER" or "ROBOTLASER1".
	Kind string
	// AngleMin and AngleIncrement place beam i at AngleMin+i*AngleIncrement
	// radians in the laser frame (see FLASERGeometry for FLASER lines).
	AngleMin, AngleIncrement float64
	// MaxRange is ROBOTLASER1's maximum_range in metres; 0 for FLASER, which
	// does not carry one.
	MaxRange float64
	// Ranges are the readings in metres, as logged.
	Ranges []float32
	// Laser is the laser pose on the line (FLASER x y theta, ROBOTLASER1
	// laser_pose): the sensor pose in the log's world frame. In a corrected
	// log it is the SLAM result; in a raw log, odometry.
	Laser slam.Pose2D
	// Robot is the robot pose on the line (FLASER odom_x odom_y odom_theta,
	// ROBOTLASER1 robot_pose), in the frame of Laser: Robot⁻¹∘Laser is
	// where the laser sits on the robot (Log.LaserMount).
	Robot slam.Pose2D
	// Time is the line's timestamp (the ipc timestamp), in seconds.
	Time float64
}

// Odom is one ODOM line: the robot's odometry pose at a time.
type Odom struct {
	// Line is the record's 1-based line in the (unpacked) log.
	Line int
	// Pose is the robot's pose (x, y in metres, theta in radians) in the
	// odometry frame.
	Pose slam.Pose2D
	// Time is the line's timestamp (the ipc timestamp), in seconds.
	Time float64
}

// Log is what ParseCarmen keeps of a CARMEN log: the laser readings and the
// odometry, each in file order. Lines of other types (PARAM, SYNC, NEFF,
// RLASER, TRUEPOS, ...) are skipped, as CARMEN's own log readers do with
// messages they do not subscribe to.
type Log struct {
	// Name is the file name given to ParseCarmen, used in errors.
	Name string
	// Readings are the laser readings; Readings[i].Index == i.
	Readings []Reading
	// Odom are the ODOM lines.
	Odom []Odom
	// Params are the PARAM lines' values by name (the last one of a name
	// wins, as CARMEN's param server keeps it).
	Params map[string]string
	// Twins counts the FLASER lines left out because a ROBOTLASER1 line
	// holds the same scan (same timestamp and beam count): loggers that
	// write both formats write every scan twice.
	Twins int
	// Damage, when not nil, says how the log ends early: a gzip stream cut
	// short or corrupt, or a last line cut short (a robot that lost power
	// while logging). Readings and Odom hold every line before it.
	Damage error
}

// FLASERGeometry returns the beam angles of an n-beam FLASER line, which
// carries neither start angle nor resolution. The rule was measured on real
// logs (../shared/realdata/SOURCES.md: the sharpest map over the whole log):
// n even → π/n from −π/2 (180 or 360 beams over a 180° SICK sweep, the last
// beam one step short of +π/2); n odd → π/(n−1) from −π/2 (181 or 361
// beams, both ends included). It fails for n < 2.
func FLASERGeometry(n int) (angleMin, angleIncrement float64, err error) {
	if n < 2 {
		return 0, 0, fmt.Errorf("%d beams: a FLASER sweep needs at least 2", n)
	}
	if n%2 == 0 {
		return -math.Pi / 2, math.Pi / float64(n), nil
	}
	return -math.Pi / 2, math.Pi / float64(n-1), nil
}

// OpenCarmen reads a CARMEN log from path, gunzipping it when it starts with
// the gzip magic bytes (whatever its name).
func OpenCarmen(path string) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseCarmen(f, path)
}

// ParseCarmen reads a CARMEN log (plain or gzip) from r; name is used in
// errors. Every FLASER, ROBOTLASER1 and ODOM line is checked: a missing or
// non-numeric field, a beam count that disagrees with the line, or a
// non-finite pose is a *ParseError naming the line. A log that ends in
// damage — a gzip stream cut short or corrupt, a last line without its
// newline that does not parse or lacks its hostname and logger timestamp —
// is read up to it, and Log.Damage says so: the partial line is dropped,
// never half read. A FLASER line that repeats a ROBOTLASER1 line is read
// once (Log.Twins). A log without any laser reading before the damage, or
// at all, is an error: there is nothing to build a mission from.
func ParseCarmen(r io.Reader, name string) (*Log, error) {
	src := &readErrs{r: r}
	br := bufio.NewReader(src)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		gz := &readErrs{r: zr}
		src, r = gz, gz
	} else {
		r = br
	}
	sc := bufio.NewScanner(io.LimitReader(r, maxLogBytes))
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	// unterminated: the line just scanned is the last and has no newline,
	// the shape of a log cut off while a line was being written.
	unterminated := false
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		advance, token, err := bufio.ScanLines(data, atEOF)
		if token != nil {
			unterminated = atEOF && bytes.IndexByte(data, '\n') < 0
		}
		return advance, token, err
	})
	log := &Log{Name: name}
	unread := map[string]int{} // laser lines of types not read, for the error below
	line := 0
	for sc.Scan() {
		line++
		if unterminated && src.err != nil {
			// The part of a line a damaged stream ended in: even when its
			// fields parse, the last of them may be cut.
			break
		}
		text := sc.Bytes()
		if line == 1 {
			// A byte order mark (a log saved by a Windows editor) would hide
			// the first line's message type, and a reading skipped unnoticed
			// shifts every segment's reading indices.
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf"))
		}
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		fields := strings.Fields(string(text))
		if len(fields) == 0 {
			continue
		}
		var err error
		switch fields[0] {
		case "FLASER":
			err = log.addFLASER(fields, line, unterminated)
		case "ROBOTLASER1":
			err = log.addRobotLaser(fields, line, unterminated)
		case "ODOM":
			err = log.addOdom(fields, line, unterminated)
		case "PARAM":
			log.addParam(fields)
		case "RAWLASER1", "RAWLASER2", "RAWLASER3", "RAWLASER4", "RLASER", "ROBOTLASER2":
			unread[fields[0]]++
		}
		if err != nil {
			if unterminated {
				log.Damage = lineErr(name, line, "the last line is cut short (%s: %v)", fields[0], err)
				break
			}
			return nil, lineErr(name, line, "%s: %v", fields[0], err)
		}
	}
	if src.err != nil {
		log.Damage = fmt.Errorf("%s: reading stops at line %d: %w (the file is truncated or corrupt)", name, line, src.err)
	}
	if err := sc.Err(); err != nil && src.err == nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lineErr(name, line+1, "line longer than %d bytes", maxLineBytes)
		}
		return nil, fmt.Errorf("%s: after line %d: %w", name, line, err)
	}
	log.dropTwins()
	if len(log.Readings) == 0 && log.Damage != nil {
		return nil, log.Damage
	}
	if len(log.Readings) == 0 {
		var seen []string
		for kind, n := range unread {
			seen = append(seen, fmt.Sprintf("%d %s", n, kind))
		}
		sort.Strings(seen)
		also := ""
		if len(seen) > 0 {
			also = fmt.Sprintf(" (it has %s lines, which are not read: only the front laser's FLASER and ROBOTLASER1 lines carry the pose a scan needs)", strings.Join(seen, ", "))
		}
		return nil, fmt.Errorf("%s: no FLASER or ROBOTLASER1 line in %d lines%s: %w", name, line, also, ErrSyntax)
	}
	return log, nil
}

// readErrs remembers the first read error other than io.EOF, so that a
// parse error on the last, partial line of a truncated file is reported as
// the truncation it is.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// fieldReader parses the numeric fields of one line, remembering the first
// failure so that a message parser reads as a list of fields.
type fieldReader struct {
	f   []string
	err error
}

// errDigitSeparator refuses a number with Go's '_' digit separator.
var errDigitSeparator = errors.New("'_' in a number")

// parseCFloat reads a number as C's strtod, which CARMEN's loggers and
// readers use, does: strconv.ParseFloat's syntax (decimal or hexadecimal,
// inf, nan) less Go's '_' digit separators, which strtod stops at ("1_0"
// is 1 there, 10 here), so such a field is refused rather than misread.
func parseCFloat(s string, bits int) (float64, error) {
	if strings.IndexByte(s, '_') >= 0 {
		return 0, errDigitSeparator
	}
	return strconv.ParseFloat(s, bits)
}

func (p *fieldReader) float(i int, what string) float64 {
	if p.err != nil {
		return 0
	}
	if i >= len(p.f) {
		p.err = fmt.Errorf("line ends before %s (field %d)", what, i+1)
		return 0
	}
	v, err := parseCFloat(p.f[i], 64)
	if err != nil {
		p.err = fmt.Errorf("%s %q is not a number", what, p.f[i])
	}
	return v
}

// tail checks, on a line that may have been cut (the log's last, without
// its newline), that the hostname and logger timestamp after the
// timestamp at i are there: a line cut inside its timestamp parses, with
// the wrong time.
func (p *fieldReader) tail(i int, last bool) {
	if p.err == nil && last && len(p.f) < i+3 {
		p.err = fmt.Errorf("line ends before its hostname and logger timestamp (field %d)", len(p.f)+1)
	}
}

// time reads a timestamp: it must be finite, since readings are paired
// with ODOM lines by time and a NaN would pair with anything.
func (p *fieldReader) time(i int) float64 {
	v := p.float(i, "timestamp")
	if p.err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		p.err = fmt.Errorf("timestamp %q is not a finite number", p.f[i])
	}
	return v
}

func (p *fieldReader) count(i int, what string, limit int) int {
	v := p.float(i, what)
	if p.err == nil && (v != math.Trunc(v) || v < 0 || v > float64(limit)) {
		p.err = fmt.Errorf("%s %q is not a count in 0..%d", what, p.f[i], limit)
	}
	return int(v)
}

func (p *fieldReader) ranges(from, n int) []float32 {
	if p.err != nil {
		return nil
	}
	if from+n > len(p.f) {
		p.err = fmt.Errorf("%d ranges announced, line has %d fields after the count", n, len(p.f)-from)
		return nil
	}
	out := make([]float32, n)
	for i := range out {
		v, err := parseCFloat(p.f[from+i], 32)
		// Beyond float32 (a logger's no-return sentinel, e.g. 1e39) parses
		// to ±Inf with ErrRange: +Inf is a no-return beam, as "inf" is.
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			p.err = fmt.Errorf("range %d %q is not a number", i+1, p.f[from+i])
			return nil
		}
		out[i] = float32(v)
	}
	return out
}

func (p *fieldReader) pose(i int, what string) slam.Pose2D {
	pose := slam.Pose2D{X: p.float(i, what+" x"), Y: p.float(i+1, what+" y"), Theta: p.float(i+2, what+" theta")}
	if p.err == nil {
		if err := pose.Validate(); err != nil {
			p.err = fmt.Errorf("%s: %v", what, err)
		}
		pose.Theta = slam.NormalizeAngle(pose.Theta)
	}
	return pose
}

// isNumber reports whether field parses as CARMEN's numbers do.
func isNumber(field string) bool {
	_, err := parseCFloat(field, 64)
	return err == nil
}

// flaserTail is how many fields a FLASER line has besides its n ranges:
// the tag and the count before them, the two poses, the timestamp, the
// hostname and the logger timestamp after them.
const flaserTail = 11

// addFLASER parses "FLASER n r1..rn x y theta odom_x odom_y odom_theta
// timestamp hostname logger_timestamp"; last: the line may be cut (tail).
func (l *Log) addFLASER(f []string, line int, last bool) error {
	p := &fieldReader{f: f}
	n := p.count(1, "beam count", slam.MaxBeams)
	ranges := p.ranges(2, n)
	rangesRead := p.err == nil
	laser := p.pose(2+n, "laser pose")
	robot := p.pose(5+n, "odometry pose")
	ts := p.time(8 + n)
	p.tail(8+n, last)
	if rangesRead && (p.err != nil && !last && len(f) != n+flaserTail || len(f) > n+flaserTail && !isNumber(f[n+flaserTail-1])) {
		// A count one off reads a range as the laser x and the hostname
		// as the timestamp: say so, rather than leave "timestamp "pippo"
		// is not a number" to puzzle over, or read every field after the
		// ranges one place off when the count is short, which puts the
		// hostname where the logger timestamp goes (found by a review).
		// A line with fields of its own after a numeric logger timestamp
		// is read as before; a last line cut short is damage, said
		// elsewhere.
		what := "too many fields"
		if p.err != nil {
			what = p.err.Error()
		}
		return fmt.Errorf("%s; the count announces %d ranges and %d fields after them (%d after the count), the line has %d: the beam count %d may be wrong",
			what, n, flaserTail-2, n+flaserTail-2, len(f)-2, n)
	}
	if p.err != nil {
		return p.err
	}
	amin, inc, err := FLASERGeometry(n)
	if err != nil {
		return err
	}
	l.Readings = append(l.Readings, Reading{
		Index: len(l.Readings), Line: line, Kind: "FLASER",
		AngleMin: amin, AngleIncrement: inc, Ranges: ranges, Laser: laser, Robot: robot, Time: ts,
	})
	return nil
}

// addRobotLaser parses "ROBOTLASER1 laser_type start_angle field_of_view
// angular_resolution maximum_range accuracy remission_mode num_readings
// r1..rn num_remissions m1..mk laser_x laser_y laser_theta robot_x robot_y
// robot_theta tv rv forward_safety_dist side_safety_dist turn_axis timestamp
// hostname logger_timestamp" (CARMEN's carmen_robot_laser_message); last:
// the line may be cut (tail).
func (l *Log) addRobotLaser(f []string, line int, last bool) error {
	p := &fieldReader{f: f}
	start := p.float(2, "start angle")
	res := p.float(4, "angular resolution")
	maxRange := p.float(5, "maximum range")
	n := p.count(8, "beam count", slam.MaxBeams)
	ranges := p.ranges(9, n)
	k := p.count(9+n, "remission count", slam.MaxBeams)
	at := 10 + n + k
	laser := p.pose(at, "laser pose")
	robot := p.pose(at+3, "robot pose")
	ts := p.time(at + 11)
	p.tail(at+11, last)
	if p.err != nil {
		return p.err
	}
	switch {
	case n < 1:
		return errors.New("no beams")
	case math.IsNaN(start) || math.IsInf(start, 0) || math.Abs(start) > 4*math.Pi:
		return fmt.Errorf("start angle %g rad out of range", start)
	case !(math.Abs(res) > 0 && math.Abs(res) <= 2*math.Pi):
		// Negative is a laser that sweeps right to left (mounted upside
		// down): beam i still lies at start + i·resolution.
		return fmt.Errorf("angular resolution %g rad: its size is not in (0, 2π]", res)
	case !(maxRange > 0) || math.IsInf(maxRange, 0):
		return fmt.Errorf("maximum range %g m is not positive", maxRange)
	}
	l.Readings = append(l.Readings, Reading{
		Index: len(l.Readings), Line: line, Kind: "ROBOTLASER1",
		AngleMin: start, AngleIncrement: res, MaxRange: maxRange, Ranges: ranges, Laser: laser, Robot: robot, Time: ts,
	})
	return nil
}

// addOdom parses "ODOM x y theta tv rv accel timestamp hostname
// logger_timestamp"; last: the line may be cut (tail).
func (l *Log) addOdom(f []string, line int, last bool) error {
	p := &fieldReader{f: f}
	pose := p.pose(1, "pose")
	ts := p.time(7)
	p.tail(7, last)
	if p.err != nil {
		return p.err
	}
	l.Odom = append(l.Odom, Odom{Line: line, Pose: pose, Time: ts})
	return nil
}

// dropTwins leaves out the FLASER readings that repeat a ROBOTLASER1
// reading (same timestamp and beam count), keeping the ROBOTLASER1 one,
// which carries its own beam geometry and maximum range, and numbers the
// readings again.
func (l *Log) dropTwins() {
	type scan struct {
		t     float64
		beams int
	}
	robot := map[scan]bool{}
	for _, r := range l.Readings {
		if r.Kind == "ROBOTLASER1" {
			robot[scan{r.Time, len(r.Ranges)}] = true
		}
	}
	if len(robot) == 0 {
		return
	}
	kept := l.Readings[:0]
	for _, r := range l.Readings {
		if r.Kind == "FLASER" && robot[scan{r.Time, len(r.Ranges)}] {
			l.Twins++
			continue
		}
		r.Index = len(kept)
		kept = append(kept, r)
	}
	l.Readings = kept
}

// addParam keeps "PARAM name value ...". A line without a value is
// skipped: only the laser mount's parameters are ever read, and a missing
// one falls back as an absent one does.
func (l *Log) addParam(f []string) {
	if len(f) < 3 {
		return
	}
	if l.Params == nil {
		l.Params = map[string]string{}
	}
	l.Params[f[1]] = f[2]
}
