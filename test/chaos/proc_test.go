//go:build chaos

package chaos

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
// through its own *os.Process, that is by its PID, never by name.
type proc struct {
	name    string
	logPath string
	// logFrom is where this process's output begins in logPath: with
	// -chaos.logs a file may hold the output of an earlier run.
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
	fmt.Fprintf(f, "==== chaos: %s %s\n", filepath.Base(bin), strings.Join(args, " "))
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
// there after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.kill()
	}
}

// errAddrInUse is what awaitServing returns, wrapped, when the process
// exited because an address it was told to listen on was taken.
var errAddrInUse = errors.New("listen address taken")

// awaitServing waits for the process's "serving" log line, which
// internal/grpcserver writes once both listeners are bound, and returns the
// gRPC address it names: the children listen on port 0 (or, for a restart,
// on a port they had before), so the line is the only place the address is
// known, and no port is reserved in advance for another process to take in
// between. It fails when the process exits first, or after healthTimeout.
func (p *proc) awaitServing(ctx context.Context) (string, error) {
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
			return "", err
		}
		if addr := servingAddr(out); addr != "" {
			return addr, nil
		}
		if exited {
			err := fmt.Errorf("%s (pid %d) exited before serving: %v", p.name, p.pid(), p.waitErr)
			if bytes.Contains(out, []byte(syscall.EADDRINUSE.Error())) {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s (pid %d) logged no serving line: %w", p.name, p.pid(), ctx.Err())
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

// servingAddr returns the grpc_addr of the first complete JSON log line in
// out whose msg is "serving", or "".
func servingAddr(out []byte) string {
	for {
		line, rest, complete := bytes.Cut(out, []byte("\n"))
		if !complete {
			// A line without its newline may still be being written.
			return ""
		}
		out = rest
		var rec struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.GRPCAddr != "" {
			return rec.GRPCAddr
		}
	}
}

// binary returns -chaos.bin, or, when it is empty, cmd/slammesh built into
// dir.
func binary(ctx context.Context, dir string) (string, error) {
	if *flagBin != "" {
		return *flagBin, nil
	}
	return buildBinary(ctx, dir)
}

// buildBinary builds cmd/slammesh into dir, so the test runs the code it is
// checked out with rather than whatever bin/ holds.
func buildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "slammesh")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/slammesh/slammesh/cmd/slammesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/slammesh: %w\n%s", err, b)
	}
	return out, nil
}

// tailLogs returns the last n lines of every log file in dir, for a failure
// report, leaving out the access log lines of the test's own ListMissions
// polling, which would crowd out everything else in the orchestrators' logs.
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
			if !strings.Contains(l, `"grpc.method":"ListMissions"`) {
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
