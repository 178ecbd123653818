//go:build soak

package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// proc is one child process this test started. It is only ever signalled
// through its own *os.Process, that is by its PID, never by name. (The
// process helpers follow test/chaos; they are copied, not shared, so that
// neither test's harness can break the other.)
type proc struct {
	name    string
	logPath string
	// logFrom is where this process's output begins in logPath, which may
	// hold the output of earlier incarnations.
	logFrom int64
	cmd     *exec.Cmd
	// exited is closed once the process has been reaped; waitErr is set
	// before.
	exited  chan struct{}
	waitErr error
}

// startProc runs bin with args, its stdout and stderr appended to logPath.
func startProc(name, logPath, bin string, env []string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	// The child holds its own descriptor; ours is not needed after Start.
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	fmt.Fprintf(f, "==== soak: %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, logFrom: fi.Size(), cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited yet.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is reaped, so that its
// ports are free when kill returns.
func (p *proc) kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid(), err)
	}
	<-p.exited
	return nil
}

// stop asks the process to shut down (SIGTERM) and kills it if it is still
// there after grace. It reports whether the process exited by itself.
func (p *proc) stop(grace time.Duration) bool {
	if !p.alive() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		_ = p.kill()
		return false
	}
}

// errAddrInUse is what awaitServing returns, wrapped, when the process
// exited because an address it was told to listen on was taken.
var errAddrInUse = errors.New("listen address taken")

// healthTimeout bounds a child's start, generous for a loaded machine.
const healthTimeout = 60 * time.Second

// addrs are the addresses a service listens on.
type addrs struct {
	grpc, http string
}

// awaitServing waits for the process's "serving" log line, which
// internal/grpcserver writes once both listeners are bound, and returns the
// addresses it names: the children listen on port 0 (or, for a restart, on
// the gRPC port they had before), so the line is the only place an address
// is known. It fails when the process exits first, or after healthTimeout.
func (p *proc) awaitServing(ctx context.Context) (addrs, error) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Read before looking at exited, so that a line written just
		// before the process died is still seen.
		exited := !p.alive()
		out, err := p.output()
		if err != nil {
			return addrs{}, err
		}
		if a, ok := servingAddrs(out); ok {
			return a, nil
		}
		if exited {
			err := fmt.Errorf("%s (pid %d) exited before serving: %v", p.name, p.pid(), p.waitErr)
			if bytes.Contains(out, []byte(syscall.EADDRINUSE.Error())) {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return addrs{}, err
		}
		select {
		case <-ctx.Done():
			return addrs{}, fmt.Errorf("%s (pid %d) logged no serving line: %w", p.name, p.pid(), ctx.Err())
		case <-p.exited:
		case <-tick.C:
		}
	}
}

// output returns what the process has written to its log so far.
func (p *proc) output() ([]byte, error) {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", p.name, err)
	}
	return data[min(p.logFrom, int64(len(data))):], nil
}

// servingAddrs returns the grpc_addr and http_addr of the first complete
// JSON log line in out whose msg is "serving" and that names both.
func servingAddrs(out []byte) (addrs, bool) {
	for {
		line, rest, complete := bytes.Cut(out, []byte("\n"))
		if !complete {
			// A line without its newline may still be being written.
			return addrs{}, false
		}
		out = rest
		var rec struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.GRPCAddr != "" && rec.HTTPAddr != "" {
			return addrs{grpc: rec.GRPCAddr, http: rec.HTTPAddr}, true
		}
	}
}

// binary returns -soak.bin, or, when it is empty, cmd/slammesh built into
// dir, so the test runs the code it is checked out with rather than
// whatever bin/ holds.
func binary(ctx context.Context, dir string) (string, error) {
	if *flagBin != "" {
		return *flagBin, nil
	}
	out := filepath.Join(dir, "slammesh")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/slammesh/slammesh/cmd/slammesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/slammesh: %w\n%s", err, b)
	}
	return out, nil
}

// tailLogs returns the last n lines of every log file in dir, for a failure
// report, leaving out the access log lines of the test's own polling, which
// would crowd out everything else in the orchestrators' logs.
func tailLogs(dir string, n int) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", dir, err)
	}
	var b strings.Builder
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintf(&b, "---- %s: %v\n", name, err)
			continue
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if !strings.Contains(l, `"grpc.method":"GetMission"`) && !strings.Contains(l, `"grpc.method":"ListMissions"`) {
				lines = append(lines, l)
			}
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "---- %s (last %d lines)\n%s\n", name, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
