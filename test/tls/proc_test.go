//go:build tlse2e

package tls

import (
	"bufio"
	"bytes"
	"context"
	cryptotls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
)

type proc struct {
	name     string
	cmd      *exec.Cmd
	log      string
	grpcAddr string
	httpAddr string
	exited   chan struct{}
}

// start runs the binary with args and waits for its "serving" line.
func (e *env) start(ctx context.Context, name string, args ...string) *proc {
	e.t.Helper()
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(e.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), append(e.redisEnvWith(e.ca.CertFile), "OTEL_TRACES_EXPORTER=none")...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	e.t.Cleanup(func() {
		// Our own child, by PID.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(logPath)
			e.t.Logf("---- %s log:\n%s", name, tail(b, 40))
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		b, _ := os.ReadFile(logPath)
		if g, h := servingAddrs(b); g != "" {
			p.grpcAddr, p.httpAddr = g, h
			return p
		}
		select {
		case <-p.exited:
			e.t.Fatalf("%s exited before serving:\n%s", name, b)
		case <-ctx.Done():
			e.t.Fatalf("%s: %v", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not log a serving line within %v:\n%s", name, startTimeout, b)
		}
	}
}

func servingAddrs(out []byte) (string, string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
			return rec.GRPCAddr, rec.HTTPAddr
		}
	}
	return "", ""
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exec runs a command to completion (bounded by ctx and a minute) and
// returns its combined output.
func (e *env) exec(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run runs a command; wantOK says whether it must succeed (else fail).
func (e *env) run(ctx context.Context, wantOK bool, name string, args ...string) string {
	e.t.Helper()
	out, err := e.exec(ctx, nil, name, args...)
	if wantOK && err != nil {
		e.t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	if !wantOK && err == nil {
		e.t.Fatalf("%s %s succeeded, want a failure:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	}
	return out
}

// forcedCertCheck calls grpc.health.v1 at addr presenting c whatever CAs
// the server asks for.
func forcedCertCheck(ctx context.Context, addr, caFile string, c meshtlstest.Cert) error {
	pair, err := cryptotls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("load: %w (not a refusal)", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	creds := credentials.NewTLS(&cryptotls.Config{
		RootCAs:              pool,
		GetClientCertificate: func(*cryptotls.CertificateRequestInfo) (*cryptotls.Certificate, error) { return &pair, nil },
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// servedCert returns the certificate the TLS server at addr presents,
// connecting as the client c.
func servedCert(addr, caFile string, c meshtlstest.Cert) ([]byte, error) {
	pair, err := cryptotls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := cryptotls.DialWithDialer(d, "tcp", addr, &cryptotls.Config{
		RootCAs: pool, Certificates: []cryptotls.Certificate{pair}, NextProtos: []string{"h2"},
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw, nil
}
