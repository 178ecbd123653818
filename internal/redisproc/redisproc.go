// Package redisproc runs a private redis-server child process on a free
// loopback port. Tests use it through internal/redistest; `slammesh dev` uses
// it when no REDIS_URL is given and redis-server is installed.
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNotInstalled is returned when redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH (install it with: apt-get install -y redis-server)")

// Process is a running redis-server.
type Process struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	cmd  *exec.Cmd
	done chan error
	dir  string
}

// URL is the redis:// URL of the server.
func (p *Process) URL() string { return "redis://" + p.Addr + "/0" }

// Start launches redis-server with its data and log in dir (which must exist)
// and waits until it answers PING. Persistence is off: the data is scratch.
// The port is a free one; StartOn takes a fixed port.
func Start(dir string) (*Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	// redis-server does not accept port 0, so pick a free port and retry on
	// the rare race where another process takes it first.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		p, err := launch(bin, dir, port)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// StartOn is Start on a given loopback port, for a address people can type.
func StartOn(dir string, port int) (*Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	return launch(bin, dir, port)
}

// Stop kills the server and waits for it to exit.
func (p *Process) Stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func launch(bin, dir string, port int) (*Process, error) {
	args := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	p := &Process{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan error, 1), dir: dir}
	go func() { p.done <- cmd.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for ping(p.Addr) != nil {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("redis-server on port %d exited: %v; log: %s", port, err, p.log())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING within 10s; log: %s", port, p.log())
		}
	}
	return p, nil
}

// ping speaks raw RESP so that readiness polling opens no client pool.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *Process) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
	return strings.TrimSpace(string(b))
}
