// Package redisproc runs a private redis-server child process on a loopback
// port: a free one (Start) or one given (StartOn), never a port another
// process already holds. Tests use it through internal/redistest; `slammesh
// dev` uses it when no REDIS_URL is given and redis-server is installed.
// StartCluster runs a whole Redis Cluster of such processes (masters and
// replicas), with Failover, KillMaster and Restart for the fault tests.
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SlammeshACL is the permissions docs/security.md gives the slammesh Redis
// user, and the default user beside it (turned off, so that nobody logs in
// as it, but allowed what slammesh writes, which Redis replays from its AOF
// as the default user). Tests that run Redis as docs/security.md has it
// use it.
var SlammeshACL = []string{"~slammesh:*", "resetchannels", "-@all",
	"+@read", "+@write", "+@keyspace", "+@stream", "+@hash", "+@sortedset", "+@string", "+@list", "+@set",
	"+@scripting", "+@transaction", "+@connection", "-@dangerous", "+info", "+time", "+cluster|slots", "+cluster|info"}

// ErrNotInstalled is returned when redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH (install it with: apt-get install -y redis-server)")

// PortInUseError says the port asked for belongs to another process. StartOn
// refuses it rather than hand out an address whose server is not ours: a
// Redis someone else runs there would answer PING too, and a caller writing
// scratch data to it would clobber theirs.
type PortInUseError struct {
	// Port is the port asked for.
	Port int
	// By names the other process when it is known, e.g. "redis-server pid 4242".
	By string
}

// Error says which port is taken, and by whom when known.
func (e *PortInUseError) Error() string {
	if e.By != "" {
		return fmt.Sprintf("port %d is in use by %s", e.Port, e.By)
	}
	return fmt.Sprintf("port %d is in use", e.Port)
}

// Process is a running redis-server.
type Process struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	cmd  *exec.Cmd
	dir  string
	// No goroutine waits for the child (a test binary's shared cluster
	// outlives its tests, and goleak would report the waiters): exited
	// polls, Stop waits.
	mu      sync.Mutex
	reaped  bool
	waitErr error
	// login is who the readiness checks authenticate as.
	login login
}

// URL is the redis:// URL of the server.
func (p *Process) URL() string { return "redis://" + p.Addr + "/0" }

// Start launches redis-server with its data and log in dir (which must exist)
// and waits until it answers PING. Persistence is off: the data is scratch.
// The port is a free one; StartOn takes a fixed port.
func Start(dir string) (*Process, error) {
	return startFree(dir, login{})
}

// startFree starts redis-server on a free port, its readiness checks
// logged in as who, with extra arguments.
func startFree(dir string, who login, extra ...string) (*Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	// redis-server does not accept port 0, so pick a free port and retry on
	// the rare race where another process takes it first; other failures
	// would repeat on any port.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		p, err := launchAs(bin, dir, port, who, extra...)
		if err == nil {
			return p, nil
		}
		lastErr = err
		var inUse *PortInUseError
		if !errors.As(err, &inUse) {
			return nil, err
		}
	}
	return nil, lastErr
}

// StartArgs is Start with extra redis-server arguments, e.g. a TLS port
// and an ACL user; the plain port stays, with its default user, for the
// readiness check.
func StartArgs(dir string, extra ...string) (*Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	if err := probe(port); err != nil {
		return nil, err
	}
	return spawn(bin, dir, port, extra...)
}

// StartOn is Start on a given loopback port, for an address people can
// type, with extra redis-server arguments as StartArgs takes them (a
// server restarted with appendonly yes). It fails with a *PortInUseError
// when another process listens there, whether it is found before the
// start or, having taken the port in between, answers in our server's
// place.
func StartOn(dir string, port int, extra ...string) (*Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	return launch(bin, dir, port, extra...)
}

// StartAs is Start with extra redis-server arguments for a server whose
// default user is off (extra holds its --user lines): the readiness checks
// log in as user with password.
func StartAs(dir, user, password string, extra ...string) (*Process, error) {
	return startFree(dir, login{user, password}, extra...)
}

// login is the user the readiness checks authenticate as; empty for the
// default user.
type login struct{ user, password string }

// Stop kills the server (SIGKILL, by its PID) and waits for it to exit.
func (p *Process) Stop() {
	_ = p.cmd.Process.Kill()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		p.waitErr, p.reaped = p.cmd.Wait(), true
	}
}

// exited reports, without blocking, whether the server has exited (and
// reaps it), with its exit error.
func (p *Process) exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		done, err := reapNoHang(p.cmd.Process.Pid)
		if !done {
			return false, nil
		}
		p.reaped, p.waitErr = true, err
	}
	return true, p.waitErr
}

func launch(bin, dir string, port int, extra ...string) (*Process, error) {
	return launchAs(bin, dir, port, login{}, extra...)
}

func launchAs(bin, dir string, port int, who login, extra ...string) (*Process, error) {
	// redis-server exits on "Address already in use", but a server already
	// listening there answers PING long before ours has given up; so look
	// first, and check whose server answered below.
	if err := probe(port); err != nil {
		return nil, err
	}
	return spawnAs(bin, dir, port, who, extra...)
}

// spawn starts redis-server on port and waits until it is ready; see
// awaitReady.
func spawn(bin, dir string, port int, extra ...string) (*Process, error) {
	return spawnAs(bin, dir, port, login{}, extra...)
}

// spawnAs is spawn with the readiness checks logged in as who.
func spawnAs(bin, dir string, port int, who login, extra ...string) (*Process, error) {
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
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	p := &Process{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir, login: who}
	if err := p.awaitReady(port, cmd.Process.Pid, 10*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// probe fails with a *PortInUseError when the loopback port cannot be bound.
func probe(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &PortInUseError{Port: port}
		}
		return fmt.Errorf("port %d: %w", port, err)
	}
	return l.Close()
}

// awaitReady waits until the server at p.Addr answers PING and then checks
// that it is process pid, ours: another process may have bound the port
// between the probe and our start, in which case ours is exiting on "Address
// already in use" while theirs answers.
func (p *Process) awaitReady(port, pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for ping(p.Addr, p.login) != nil {
		if done, err := p.exited(); done {
			if strings.Contains(p.log(), "Address already in use") {
				return &PortInUseError{Port: port}
			}
			return fmt.Errorf("redis-server on port %d exited: %v; log: %s", port, err, p.log())
		}
		time.Sleep(5 * time.Millisecond)
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d did not answer PING within %v; log: %s", port, timeout, p.log())
		}
	}
	got, err := serverPID(p.Addr, p.login)
	if err != nil {
		return fmt.Errorf("redis-server on port %d: INFO server: %w", port, err)
	}
	if got != pid {
		return &PortInUseError{Port: port, By: "redis-server pid " + strconv.Itoa(got)}
	}
	return nil
}

// ping speaks raw RESP so that readiness polling opens no client pool.
func ping(addr string, who login) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if err := authenticate(conn, r, who); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// authenticate logs conn in as who, unless who is the default user.
func authenticate(conn net.Conn, r *bufio.Reader, who login) error {
	if who.user == "" {
		return nil
	}
	cmd := fmt.Sprintf("*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(who.user), who.user, len(who.password), who.password)
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("AUTH as %s: %q", who.user, strings.TrimSpace(line))
	}
	return nil
}

// serverPID asks the server at addr for its process_id (INFO server), in raw
// RESP like ping.
func serverPID(addr string, who login) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if err := authenticate(conn, r, who); err != nil {
		return 0, err
	}
	if _, err := conn.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 {
		return 0, fmt.Errorf("unexpected reply %q", strings.TrimSpace(head))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("no process_id in the reply")
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
