package redisproc

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start is Start for a test: the server is stopped when the test ends.
func start(t *testing.T) *Process {
	t.Helper()
	p, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, s, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestStartOnServesOnTheGivenPort(t *testing.T) {
	t.Parallel()
	// A port the kernel just handed out and took back is free, but only
	// until another process (a test package running alongside) is handed
	// it: a port taken in between is refused as it must be, and the test
	// asks for another, a few times at most.
	var p *Process
	var port int
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = portOf(t, l.Addr().String())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		p, err = StartOn(t.TempDir(), port)
		var taken *PortInUseError
		if errors.As(err, &taken) && attempt < 5 {
			t.Logf("port %d was taken before StartOn: %v", port, err)
			continue
		}
		if err != nil {
			t.Fatalf("StartOn(%d): %v", port, err)
		}
		break
	}
	defer p.Stop()
	if want := "127.0.0.1:" + strconv.Itoa(port); p.Addr != want {
		t.Errorf("Addr = %s, want %s", p.Addr, want)
	}
	if pid, err := serverPID(p.Addr, login{}); err != nil || pid != p.cmd.Process.Pid {
		t.Errorf("the server on %s is pid %d (%v), want ours, %d", p.Addr, pid, err, p.cmd.Process.Pid)
	}
}

// TestStartOnRefusesABusyPort: `slammesh dev` starts its Redis on a fixed
// port, where a developer may already run one; it must fail rather than use
// theirs.
func TestStartOnRefusesABusyPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// occupy holds a loopback port for the test and returns its address.
		occupy func(t *testing.T) string
	}{
		{name: "another redis-server", occupy: func(t *testing.T) string { return start(t).Addr }},
		{name: "a plain listener", occupy: func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			return l.Addr().String()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := tt.occupy(t)
			port := portOf(t, addr)
			p, err := StartOn(t.TempDir(), port)
			if err == nil {
				p.Stop()
				t.Fatalf("StartOn(%d) succeeded on a port in use", port)
			}
			var inUse *PortInUseError
			if !errors.As(err, &inUse) || inUse.Port != port {
				t.Fatalf("StartOn(%d) = %v, want a *PortInUseError for the port", port, err)
			}
			if want := "port " + strconv.Itoa(port) + " is in use"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

// TestAwaitReadyChecksWhoseServerAnswers covers the race the port probe
// cannot: another server binds the port after the probe, answers PING, and
// ours exits on "Address already in use".
func TestAwaitReadyChecksWhoseServerAnswers(t *testing.T) {
	t.Parallel()
	other := start(t)
	port := portOf(t, other.Addr)
	tests := []struct {
		name    string
		pid     int
		wantErr bool
	}{
		{name: "ours", pid: other.cmd.Process.Pid},
		{name: "someone else's", pid: os.Getpid(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A Process whose own server never comes up: only the other answers.
			ours := &Process{Addr: other.Addr, dir: t.TempDir()}
			err := ours.awaitReady(port, tt.pid, 5*time.Second)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("awaitReady = %v, want nil", err)
				}
				return
			}
			var inUse *PortInUseError
			if !errors.As(err, &inUse) || inUse.Port != port {
				t.Fatalf("awaitReady = %v, want a *PortInUseError", err)
			}
			if want := "redis-server pid " + strconv.Itoa(other.cmd.Process.Pid); inUse.By != want {
				t.Errorf("By = %q, want %q", inUse.By, want)
			}
		})
	}
}

// TestSpawnReportsAnExitOnAddressInUse: when the port is taken after the
// probe by something that is not a Redis, ours exits on "Address already in
// use" and no server answers; that too is a port in use.
func TestSpawnReportsAnExitOnAddressInUse(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(ErrNotInstalled)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := portOf(t, l.Addr().String())
	p, err := spawn(bin, t.TempDir(), port)
	if err == nil {
		p.Stop()
		t.Fatalf("spawn(%d) succeeded on a port in use", port)
	}
	var inUse *PortInUseError
	if !errors.As(err, &inUse) || inUse.Port != port {
		t.Fatalf("spawn(%d) = %v, want a *PortInUseError for the port", port, err)
	}
}
