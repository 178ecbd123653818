package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// errUsage marks command-line mistakes, which exit with status 2 like flag's.
var errUsage = errors.New("usage error")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// global holds the flags every command shares.
type global struct {
	addr        string
	mappingAddr string
	json        bool
}

func parseGlobal(args []string, getenv func(string) string, stderr io.Writer) (global, []string, error) {
	g := global{
		addr:        envOr(getenv, "SLAMCTL_ADDR", "localhost:50051"),
		mappingAddr: envOr(getenv, "SLAMCTL_MAPPING_ADDR", "localhost:50052"),
	}
	fs := flag.NewFlagSet("slamctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&g.addr, "addr", g.addr, "orchestrator address")
	fs.StringVar(&g.mappingAddr, "mapping-addr", g.mappingAddr, "mapping service address (for map)")
	fs.BoolVar(&g.json, "json", false, "print protobuf JSON")
	if err := fs.Parse(args); err != nil {
		return g, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return g, fs.Args(), nil
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
}

func dial(g global) (*clients, error) {
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("orchestrator at %s: %w", g.addr, err)
	}
	return &clients{conn: conn, orchestrator: orchestratorv1.NewOrchestratorServiceClient(conn), mappingAddr: g.mappingAddr}, nil
}

func (c *clients) Close() error { return c.conn.Close() }

// mapping opens a connection to the mapping service; the caller closes it.
func (c *clients) mapping() (mappingv1.MappingServiceClient, io.Closer, error) {
	conn, err := grpc.NewClient(c.mappingAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	return fmt.Errorf("%s: %s: %s", op, st.Code(), st.Message())
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
