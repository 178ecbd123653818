//go:build tlse2e

// Package tls is the end-to-end test of issue 12's security: the built
// slammesh binary as separate processes over mutual TLS, with certificates
// generated here, bearer tokens on the orchestrator, and Redis over TLS as
// an ACL user with only the rights docs/security.md lists. grpcurl (pinned
// in tools/go.mod) drives it like a user would. Run by `make tls-e2e`.
package tls

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/meshtls/meshtlstest"
	"github.com/slammesh/slammesh/internal/redisproc"
)

var (
	flagBin     = flag.String("tls.bin", "", "slammesh binary (default: built from this checkout)")
	flagGrpcurl = flag.String("tls.grpcurl", "", "grpcurl binary (default: built from tools/go.mod)")
)

// startTimeout bounds how long a process may take to log its serving line.
const startTimeout = 60 * time.Second

// redisACL is the ACL of the slammesh Redis user, as docs/security.md
// gives it: slammesh's keys only, no admin or dangerous commands.
var redisACL = append([]string{"on"}, redisproc.SlammeshACL...)

type env struct {
	t       *testing.T
	dir     string
	bin     string
	grpcurl string
	ca      *meshtlstest.CA
	rogue   *meshtlstest.CA
	certs   map[string]meshtlstest.Cert
	redis   []string // environment of the services' Redis connection
	tokens  map[string]string
}

func TestMeshOverMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := setup(ctx, t)

	steps := map[string]*proc{}
	for _, name := range []string{"mapping", "localization", "merge"} {
		args := append(e.tlsArgs(name), "--tls-allowed-clients", "orchestrator")
		if name == "mapping" {
			args = append(args, "--capacity-cells", "4000000")
		}
		steps[name] = e.start(ctx, name, args...)
	}
	orchArgs := append(e.tlsArgs("orchestrator"), "--auth-tokens", filepath.Join(e.dir, "tokens"))
	for _, name := range []string{"mapping", "localization", "merge"} {
		// Dialled by name: the authority must match the step's certificate.
		orchArgs = append(orchArgs, "--"+name+"-addr", "localhost:"+port(steps[name].grpcAddr))
	}
	orch := e.start(ctx, "orchestrator", orchArgs...)

	// Health probes over TLS: the step services want the orchestrator's
	// client certificate, the orchestrator only the CA.
	for _, p := range steps {
		e.run(ctx, true, e.bin, "healthcheck", "--addr", p.grpcAddr, "--tls-ca", e.ca.CertFile,
			"--tls-cert", e.certs["orchestrator"].CertFile, "--tls-key", e.certs["orchestrator"].KeyFile)
	}
	e.run(ctx, true, e.bin, "healthcheck", "--addr", orch.grpcAddr, "--tls-ca", e.ca.CertFile, "--tls-server-name", "localhost")

	cli := e.certs["operator-cli"]
	grpcurlTLS := []string{"-cacert", e.ca.CertFile, "-cert", cli.CertFile, "-key", cli.KeyFile}
	start := `{"mission_id":"tls-ok","scenario":{"seed":7,"agents":3},"wait":true}`

	t.Run("grpcurl with mTLS and an operator token completes a mission", func(t *testing.T) {
		out := e.run(ctx, true, e.grpcurl, append(grpcurlTLS, "-H", "authorization: Bearer "+e.tokens["operator"],
			"-d", start, orch.grpcAddr, "slammesh.orchestrator.v1.OrchestratorService/StartMission")...)
		if !strings.Contains(out, `"state": "MISSION_STATE_COMPLETED"`) {
			t.Fatalf("mission did not complete:\n%s", out)
		}
		out = e.run(ctx, true, e.grpcurl, append(grpcurlTLS, "-H", "authorization: Bearer "+e.tokens["viewer"],
			"-d", `{"mission_id":"tls-ok"}`, orch.grpcAddr, "slammesh.orchestrator.v1.OrchestratorService/GetMission")...)
		if !strings.Contains(out, "MISSION_STATE_COMPLETED") {
			t.Fatalf("viewer GetMission:\n%s", out)
		}
	})
	t.Run("a compensated mission as the Redis ACL user", func(t *testing.T) {
		out := e.run(ctx, true, e.grpcurl, append(grpcurlTLS, "-H", "authorization: Bearer "+e.tokens["operator"],
			"-d", `{"mission_id":"tls-sealed","scenario":{"seed":3,"agents":3,"kind":"SCENARIO_KIND_SEALED_AGENT"},"wait":true}`,
			orch.grpcAddr, "slammesh.orchestrator.v1.OrchestratorService/StartMission")...)
		if !strings.Contains(out, `"state": "MISSION_STATE_COMPENSATED"`) {
			t.Fatalf("mission did not compensate:\n%s", out)
		}
	})
	t.Run("the orchestrator refuses missing tokens and too low roles", func(t *testing.T) {
		out := e.run(ctx, false, e.grpcurl, append(grpcurlTLS, "-d", start, orch.grpcAddr,
			"slammesh.orchestrator.v1.OrchestratorService/StartMission")...)
		if !strings.Contains(out, "Unauthenticated") {
			t.Fatalf("no token: %s", out)
		}
		out = e.run(ctx, false, e.grpcurl, append(grpcurlTLS, "-H", "authorization: Bearer "+e.tokens["viewer"],
			"-d", start, orch.grpcAddr, "slammesh.orchestrator.v1.OrchestratorService/StartMission")...)
		if !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "operator") {
			t.Fatalf("viewer StartMission: %s", out)
		}
		// Reflection stays open, so grpcurl needs no proto files.
		out = e.run(ctx, true, e.grpcurl, append(grpcurlTLS, orch.grpcAddr, "list")...)
		if !strings.Contains(out, "slammesh.orchestrator.v1.OrchestratorService") {
			t.Fatalf("reflection: %s", out)
		}
	})
	t.Run("step services refuse clients other than the orchestrator", func(t *testing.T) {
		mapping := steps["mapping"].grpcAddr
		rogue := e.certs["rogue-orchestrator"]
		for name, args := range map[string][]string{
			"certificate of another CA":          {"-cacert", e.ca.CertFile, "-cert", rogue.CertFile, "-key", rogue.KeyFile},
			"no client certificate":              {"-cacert", e.ca.CertFile},
			"mesh certificate not in allow list": {"-cacert", e.ca.CertFile, "-cert", cli.CertFile, "-key", cli.KeyFile},
		} {
			out := e.run(ctx, false, e.grpcurl, append(args, mapping, "list")...)
			if strings.Contains(out, "slammesh.mapping.v1.MappingService") {
				t.Errorf("%s: the mapping service answered:\n%s", name, out)
			}
			t.Logf("%s: %s", name, strings.TrimSpace(out))
		}
		// grpcurl keeps a certificate the server's CA list does not name to
		// itself; a client that presents it anyway is refused too.
		if err := forcedCertCheck(ctx, mapping, e.ca.CertFile, rogue); err == nil {
			t.Error("a presented certificate of another CA was accepted")
		} else {
			t.Logf("presented certificate of another CA: %v", err)
		}
		orchCert := e.certs["orchestrator"]
		out := e.run(ctx, true, e.grpcurl, "-cacert", e.ca.CertFile, "-cert", orchCert.CertFile, "-key", orchCert.KeyFile,
			mapping, "list")
		if !strings.Contains(out, "slammesh.mapping.v1.MappingService") {
			t.Fatalf("the orchestrator's certificate was refused:\n%s", out)
		}
	})
	t.Run("plaintext to a TLS port fails", func(t *testing.T) {
		for _, addr := range []string{orch.grpcAddr, steps["merge"].grpcAddr} {
			out := e.run(ctx, false, e.grpcurl, "-plaintext", addr, "list")
			if strings.Contains(out, "slammesh.") {
				t.Errorf("plaintext to %s answered:\n%s", addr, out)
			}
			t.Logf("plaintext to %s: %s", addr, strings.TrimSpace(out))
		}
	})
	t.Run("a step service serves a rotated certificate without a restart", func(t *testing.T) {
		merge := steps["merge"].grpcAddr
		orchCert := e.certs["orchestrator"]
		before, err := servedCert(merge, e.ca.CertFile, orchCert)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, e.certs["merge"].DER) {
			t.Fatal("merge does not serve its certificate")
		}
		rotated, err := e.ca.Issue("merge", meshtlstest.Server, "localhost", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := servedCert(merge, e.ca.CertFile, orchCert)
			if err == nil && bytes.Equal(got, rotated.DER) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("merge still serves the old certificate 30 s after the rotation (err %v)", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The orchestrator keeps working against the rotated service.
		out := e.run(ctx, true, e.grpcurl, append(grpcurlTLS, "-H", "authorization: Bearer "+e.tokens["operator"],
			"-d", `{"mission_id":"tls-rotated","scenario":{"seed":11,"agents":2},"wait":true}`,
			orch.grpcAddr, "slammesh.orchestrator.v1.OrchestratorService/StartMission")...)
		if !strings.Contains(out, `"state": "MISSION_STATE_COMPLETED"`) {
			t.Fatalf("mission after the rotation:\n%s", out)
		}
	})
	t.Run("pprof is not served unless enabled", func(t *testing.T) {
		for _, p := range []*proc{orch, steps["localization"]} {
			resp, err := http.Get("http://" + p.httpAddr + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s /debug/pprof/ = %d, want 404", p.name, resp.StatusCode)
			}
		}
	})
	t.Run("a Redis certificate from the wrong CA stops the start with a clear message", func(t *testing.T) {
		env := append(e.redisEnvWith(e.rogue.CertFile), "OTEL_TRACES_EXPORTER=none")
		out, err := e.exec(ctx, env, e.bin, append(e.tlsArgs("merge"), "--tls-allowed-clients", "orchestrator")...)
		if err == nil || !strings.Contains(out, "not signed by the Redis CA") {
			t.Fatalf("start with the wrong Redis CA: err %v, output:\n%s", err, out)
		}
	})
	t.Run("a wrong Redis password stops the start naming the user", func(t *testing.T) {
		wrong := filepath.Join(e.dir, "wrong-password")
		if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := append(e.redisEnvWith(e.ca.CertFile), "REDIS_PASSWORD_FILE="+wrong, "OTEL_TRACES_EXPORTER=none")
		out, err := e.exec(ctx, env, e.bin, append(e.tlsArgs("merge"), "--tls-allowed-clients", "orchestrator")...)
		if err == nil || !strings.Contains(out, `authentication as "slammesh" refused`) {
			t.Fatalf("start with a wrong Redis password: err %v, output:\n%s", err, out)
		}
	})
	t.Run("plaintext off loopback is refused without --insecure", func(t *testing.T) {
		out, err := e.exec(ctx, append(e.redis, "OTEL_TRACES_EXPORTER=none"), e.bin, "mapping", "--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0")
		if err == nil || !strings.Contains(out, "refusing to serve plaintext") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
		out, err = e.exec(ctx, append(e.redis, "OTEL_TRACES_EXPORTER=none"), e.bin, append(e.tlsArgs("orchestrator"), "--grpc-addr", "0.0.0.0:0")...)
		if err == nil || !strings.Contains(out, "without authentication") {
			t.Fatalf("orchestrator without tokens off loopback: err %v, output:\n%s", err, out)
		}
	})
}

func setup(ctx context.Context, t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, certs: map[string]meshtlstest.Cert{}}
	var err error
	if e.ca, err = meshtlstest.NewCA(dir, "mesh"); err != nil {
		t.Fatal(err)
	}
	rogueDir := filepath.Join(dir, "rogue")
	if err := os.Mkdir(rogueDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if e.rogue, err = meshtlstest.NewCA(rogueDir, "rogue"); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *meshtlstest.CA, key, name string, u meshtlstest.Usage, hosts ...string) {
		c, err := ca.Issue(name, u, hosts...)
		if err != nil {
			t.Fatal(err)
		}
		e.certs[key] = c
	}
	for _, s := range []string{"mapping", "localization", "merge"} {
		issue(e.ca, s, s, meshtlstest.Server, "localhost", "127.0.0.1")
	}
	issue(e.ca, "orchestrator", "orchestrator", meshtlstest.Server|meshtlstest.Client, "localhost", "127.0.0.1")
	issue(e.ca, "operator-cli", "operator-cli", meshtlstest.Client)
	issue(e.ca, "redis", "redis", meshtlstest.Server, "localhost", "127.0.0.1")
	issue(e.rogue, "rogue-orchestrator", "orchestrator", meshtlstest.Client)

	e.tokens = map[string]string{}
	var tokens strings.Builder
	for _, role := range []string{"viewer", "operator", "admin"} {
		e.tokens[role] = role + "-e2e-token-0123456789abcdef"
		fmt.Fprintf(&tokens, "%s %s\n", role, e.tokens[role])
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(tokens.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	e.bin = *flagBin
	if e.bin == "" {
		e.bin = filepath.Join(dir, "slammesh")
		e.build(ctx, "go", "build", "-o", e.bin, "github.com/slammesh/slammesh/cmd/slammesh")
	}
	e.grpcurl = *flagGrpcurl
	if e.grpcurl == "" {
		e.grpcurl = filepath.Join(dir, "grpcurl")
		e.build(ctx, "go", "build", "-modfile="+repoRoot(t)+"/tools/go.mod", "-o", e.grpcurl, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	}
	e.startRedis()
	return e
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

func (e *env) build(ctx context.Context, name string, args ...string) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot(e.t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startRedis runs redis-server with a TLS port (certificate from the mesh
// CA, no client certificates) and the slammesh ACL user, and sets the
// services' Redis environment: rediss:// as that user, the password from a
// file, the CA by SLAMMESH_REDIS_CA.
func (e *env) startRedis() {
	tlsPort := freePort(e.t)
	password := "redis-e2e-password-0123456789"
	redisDir := filepath.Join(e.dir, "redis")
	if err := os.Mkdir(redisDir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	rc := e.certs["redis"]
	args := []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", rc.CertFile, "--tls-key-file", rc.KeyFile, "--tls-ca-cert-file", e.ca.CertFile,
		"--tls-auth-clients", "no",
		"--user", "slammesh", ">" + password,
	}
	p, err := redisproc.StartArgs(redisDir, append(args, redisACL...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Stop)
	pwFile := filepath.Join(e.dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.redis = []string{
		"REDIS_URL=rediss://slammesh@localhost:" + strconv.Itoa(tlsPort) + "/0",
		"REDIS_PASSWORD_FILE=" + pwFile,
	}
}

func (e *env) redisEnvWith(ca string) []string {
	return append(append([]string{}, e.redis...), "SLAMMESH_REDIS_CA="+ca)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// tlsArgs are the flags of service name: its own certificate, the mesh CA,
// loopback ports picked by the kernel.
func (e *env) tlsArgs(name string) []string {
	c := e.certs[name]
	return []string{name, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--tls-cert", c.CertFile, "--tls-key", c.KeyFile, "--tls-ca", e.ca.CertFile}
}
