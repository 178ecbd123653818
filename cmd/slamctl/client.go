package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls"
)

// errUsage marks command-line mistakes, which exit with status 2 like flag's.
var errUsage = errors.New("usage error")

// exitCode is the process status for err: 0 for -h (the usage was asked
// for, as flag.ExitOnError does; scripts probe flags with `slamctl cmd -h |
// grep` under pipefail), 2 for usage mistakes, 1 otherwise.
func exitCode(err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// global holds the flags every command shares.
type global struct {
	addr        string
	mappingAddr string
	json        bool
	// TLS: verify servers with cacert; present cert/key when a server asks
	// (the mapping service, for map, requires one).
	tls        meshtls.Files
	serverName string
	// token is the bearer token sent to the orchestrator.
	token string
}

// plaintextAddr is the orchestrator's address when slamctl reaches it in
// plaintext (no --cacert), else "".
func (g global) plaintextAddr() string {
	if g.tls.Enabled() {
		return ""
	}
	return g.addr
}

func parseGlobal(args []string, getenv func(string) string, stderr io.Writer) (global, []string, error) {
	g := global{
		addr:        envOr(getenv, "SLAMCTL_ADDR", "localhost:50051"),
		mappingAddr: envOr(getenv, "SLAMCTL_MAPPING_ADDR", "localhost:50052"),
		tls: meshtls.Files{
			CA:   getenv("SLAMCTL_CACERT"),
			Cert: getenv("SLAMCTL_CERT"),
			Key:  getenv("SLAMCTL_KEY"),
		},
		token: getenv("SLAMCTL_TOKEN"),
	}
	fs := flag.NewFlagSet("slamctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&g.addr, "addr", g.addr, "orchestrator address")
	fs.StringVar(&g.mappingAddr, "mapping-addr", g.mappingAddr, "mapping service address (for map)")
	fs.BoolVar(&g.json, "json", false, "print protobuf JSON")
	fs.StringVar(&g.tls.CA, "cacert", g.tls.CA, "PEM CA that signs the servers' certificates; set, slamctl uses TLS")
	fs.StringVar(&g.tls.Cert, "cert", g.tls.Cert, "PEM client certificate")
	fs.StringVar(&g.tls.Key, "key", g.tls.Key, "PEM key of --cert")
	fs.StringVar(&g.serverName, "server-name", "", "name to verify the server certificates against (default: the host of the address)")
	fs.StringVar(&g.token, "token", g.token, "bearer token for the orchestrator")
	if err := fs.Parse(args); err != nil {
		return g, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := checkAddr("addr", "SLAMCTL_ADDR", g.addr); err != nil {
		return g, nil, err
	}
	return g, fs.Args(), nil
}

// checkAddr refuses an address whose port no dial can reach (0, past
// 65535, or a name the system does not know, such as a typo "5005l"),
// which gRPC would report only as UNAVAILABLE, retried for --reconnect as
// if the server were down. Anything else is left to gRPC: a target with a
// scheme it resolves (dns:, passthrough:, unix:…), a host without a port
// (gRPC dials 443), a port by service name (https).
func checkAddr(name, env, addr string) error {
	if u, err := url.Parse(addr); err == nil && resolver.Get(u.Scheme) != nil {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 {
		return fmt.Errorf("%w: --%s %q (or %s): port %q is neither a number in 1-65535 nor a known service name", errUsage, name, addr, env, port)
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// clients bundles the connections a command may need; the mapping connection
// is only opened by commands that ask for it.
type clients struct {
	conn         *grpc.ClientConn
	orchestrator orchestratorv1.OrchestratorServiceClient
	mappingAddr  string
	// transport is how to reach the mapping service: as the orchestrator,
	// without the token.
	transport []grpc.DialOption
}

func dial(g global) (*clients, error) {
	transport, err := transportOpts(g)
	if err != nil {
		return nil, err
	}
	opts := transport
	if g.token != "" {
		if !g.tls.Enabled() && !grpcserver.IsLoopback(g.addr) {
			return nil, fmt.Errorf("%w: refusing to send --token in plaintext to %s: give --cacert (TLS)", errUsage, g.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(g.token)))
	}
	conn, err := grpc.NewClient(g.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("orchestrator at %s: %w", g.addr, err)
	}
	return &clients{conn: conn, orchestrator: orchestratorv1.NewOrchestratorServiceClient(conn), mappingAddr: g.mappingAddr, transport: transport}, nil
}

// transportOpts returns TLS credentials when a CA or certificate is given,
// else plaintext.
func transportOpts(g global) ([]grpc.DialOption, error) {
	if !g.tls.Enabled() {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	src, err := meshtls.NewSource(g.tls, meshtls.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(meshtls.ClientCredentials(src))}
	if g.serverName != "" {
		opts = append(opts, grpc.WithAuthority(g.serverName))
	}
	return opts, nil
}

// bearer sends "authorization: Bearer <token>" with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that a token reaches a loopback
// orchestrator in plaintext; dial refuses plaintext to any other address.
func (bearer) RequireTransportSecurity() bool { return false }

func (c *clients) Close() error { return c.conn.Close() }

// mapping opens a connection to the mapping service; the caller closes it.
func (c *clients) mapping() (mappingv1.MappingServiceClient, io.Closer, error) {
	if err := checkAddr("mapping-addr", "SLAMCTL_MAPPING_ADDR", c.mappingAddr); err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.mappingAddr, c.transport...)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping at %s: %w", c.mappingAddr, err)
	}
	return mappingv1.NewMappingServiceClient(conn), conn, nil
}

// rpcError turns a gRPC status into a one-line error a person can act on.
func rpcError(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %s: %s%s", op, st.Code(), st.Message(), transportHint(st))
}

// transportHint says what an UNAVAILABLE that speaks of HTTP/2's framing
// means to a user (found by a review: a plaintext slamctl against a TLS
// orchestrator printed "error reading server preface: EOF" alone).
func transportHint(st *status.Status) string {
	if st.Code() != codes.Unavailable {
		return ""
	}
	switch msg := st.Message(); {
	case httpPort(msg):
		return " (that address answers HTTP/1.1: it is an HTTP port, /metrics and the console, not the gRPC one)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the server does not speak TLS: leave out --cacert, or give its TLS address)"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"), strings.Contains(msg, "unknown certificate authority"):
		return " (the server refused this client's certificate, or its absence: a step service, the mapping one for `map` included, takes only a client certificate its CA signed for clientAuth: pass --cert and --key)"
	case strings.Contains(msg, "error reading server preface"):
		return " (the server closed the connection before it spoke gRPC: if it serves TLS, pass --cacert, and --cert/--key for mutual TLS; else the orchestrator behind that address is restarting)"
	case strings.Contains(msg, "broken pipe"), strings.Contains(msg, "connection reset by peer"):
		// TLS 1.3 ends the handshake before the server checks the client's
		// certificate: a refusal then reads as a connection cut on the
		// first write (found by a review: `map` against a mutual-TLS
		// mapping service said "broken pipe" alone).
		return " (the server cut the connection: over TLS a step service does so to a client without a certificate its CA signed for clientAuth: pass --cert and --key; else the server behind that address is restarting)"
	}
	return ""
}

// httpPort reports whether a transport error is grpc-go's for a server that
// answered HTTP/1.1: an HTTP port, which waiting does not turn into gRPC.
func httpPort(msg string) bool { return strings.Contains(msg, "looked like an HTTP/1.1 header") }

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
