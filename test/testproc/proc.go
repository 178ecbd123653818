// Package testproc runs the child processes of the process-level test
// harnesses (test/chaos, test/soak, test/scale): it starts a binary with its
// output appended to a log file, finds the addresses a slammesh service
// names in its "serving" log line, waits for grpc.health.v1 SERVING, and
// stops or kills a child by its PID only, never by name. It is a plain
// (non-test) package so that every harness imports one copy.
package testproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slammesh/slammesh/internal/grpcserver/healthcheck"
)

// Proc is one child process a test started. It is only ever signalled
// through its own *os.Process, that is by its PID, never by name.
type Proc struct {
	// Name labels the process in errors, e.g. "mapping" or "orchestrator-a".
	Name    string
	logPath string
	// logFrom is where this process's output begins in logPath, which may
	// hold the output of earlier incarnations or runs.
	logFrom int64
	cmd     *exec.Cmd
	// exited is closed once the process has been reaped; waitErr is set
	// before.
	exited  chan struct{}
	waitErr error
}

// Start runs bin with args and the extra env (KEY=value, appended to this
// process's environment), its stdout and stderr appended to logPath after a
// "==== name: bin args" banner line. On Linux the child gets SIGKILL if the
// test process dies without cleaning up.
func Start(name, logPath, bin string, env []string, args ...string) (*Proc, error) {
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
	fmt.Fprintf(f, "==== %s: %s %s\n", name, filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, logPath: logPath, logFrom: fi.Size(), cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error (nil for exit status 0); only meaningful
// once Exited is closed.
func (p *Proc) Err() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits until the process is reaped, so that its
// ports are free when Kill returns.
func (p *Proc) Kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID(), err)
	}
	<-p.exited
	return nil
}

// Stop asks the process to shut down (SIGTERM) and kills it if it is still
// there after grace. It reports whether the process exited by itself.
func (p *Proc) Stop(grace time.Duration) bool {
	if !p.Alive() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		_ = p.Kill()
		return false
	}
}

// Output returns what the process has written to its log so far.
func (p *Proc) Output() ([]byte, error) {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", p.Name, err)
	}
	return data[min(p.logFrom, int64(len(data))):], nil
}

// ErrAddrInUse is what AwaitServing returns, wrapped, when the process
// exited because an address it was told to listen on was taken.
var ErrAddrInUse = errors.New("listen address taken")

// Addrs are the addresses a slammesh service listens on (host:port).
type Addrs struct {
	// GRPC is the gRPC listener, HTTP the metrics/health/pprof listener.
	GRPC, HTTP string
}

// AwaitServing waits for the process's "serving" log line, which
// internal/grpcserver writes once both listeners are bound, and returns the
// addresses it names: the children listen on port 0 (or, for a restart, on
// a port they had before), so the line is the only place an address is
// known, and no port is reserved in advance for another process to take in
// between. It fails when the process exits first (wrapping ErrAddrInUse
// when its output says EADDRINUSE), or after timeout.
func (p *Proc) AwaitServing(ctx context.Context, timeout time.Duration) (Addrs, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Read before looking at exited, so that a line written just
		// before the process died is still seen.
		exited := !p.Alive()
		out, err := p.Output()
		if err != nil {
			return Addrs{}, err
		}
		if a, ok := ServingAddrs(out); ok {
			return a, nil
		}
		if exited {
			err := fmt.Errorf("%s (pid %d) exited before serving: %v", p.Name, p.PID(), p.waitErr)
			if bytes.Contains(out, []byte(syscall.EADDRINUSE.Error())) {
				err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
			}
			return Addrs{}, err
		}
		select {
		case <-ctx.Done():
			return Addrs{}, fmt.Errorf("%s (pid %d) logged no serving line: %w", p.Name, p.PID(), ctx.Err())
		case <-p.exited:
		case <-tick.C:
		}
	}
}

// ServingAddrs returns the grpc_addr and http_addr of the first complete
// JSON log line in out whose msg is "serving" and that names both.
func ServingAddrs(out []byte) (Addrs, bool) {
	for {
		line, rest, complete := bytes.Cut(out, []byte("\n"))
		if !complete {
			// A line without its newline may still be being written.
			return Addrs{}, false
		}
		out = rest
		var rec struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.GRPCAddr != "" && rec.HTTPAddr != "" {
			return Addrs{GRPC: rec.GRPCAddr, HTTP: rec.HTTPAddr}, true
		}
	}
}

// WaitHealthy polls grpc.health.v1 at addr until it reports SERVING, p
// exits, or timeout passes.
func WaitHealthy(ctx context.Context, addr string, p *Proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := healthcheck.Check(cctx, addr, "")
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s (pid %d) exited before it was healthy: %v", p.Name, p.PID(), p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) at %s not healthy: %w", p.Name, p.PID(), addr, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}
