//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	fmt.Fprintf(f, "==== chaos: %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
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

// freePorts reserves n distinct loopback ports by listening on them all at
// once, then releases them for the children to bind.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
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
