package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/console"
	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/meshtls"
	"github.com/slammesh/slammesh/services/orchestrator"
)

// consoleRedisPool bounds the console's own Redis connections: its live
// feeds block in XREAD, and they must never take the connections the saga's
// writes use, so the console has a client (and pool) of its own.
const consoleRedisPool = 16

// mountConsole serves the mission console at the root of the orchestrator's
// HTTP port. The console reads missions through a gRPC client of this very
// orchestrator, so its pages and buttons obey the same rules as any client's
// calls, and maps through the mapping client the saga uses.
//
// With TLS the self-client pins the orchestrator's own certificate
// (meshtls.SelfCredentials); with authentication on, every page needs the
// user's token, which the console forwards on its calls (docs/security.md).
func mountConsole(cfg serviceConfig, n *node, maps console.Maps) error {
	var dialOpts []grpc.DialOption
	if n.tls != nil {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(meshtls.SelfCredentials(n.tls)))
	}
	self, err := grpcserver.Dial(selfTarget(n.srv.Addr()), n.tel, dialOpts...)
	if err != nil {
		return fmt.Errorf("console: dial the orchestrator itself: %w", err)
	}
	n.closers = append(n.closers, self.Close)
	rdb := n.redis.client(consoleRedisPool)
	n.closers = append(n.closers, rdb.Close)
	c, err := console.New(console.Deps{
		Orchestrator: orchestratorv1.NewOrchestratorServiceClient(self),
		Redis:        rdb,
		Maps:         maps,
		Metrics:      n.tel.MetricsHandler(),
		JaegerURL:    cfg.jaegerURL,
		Logger:       n.log,
		RequireToken: cfg.sec.authConfigured(),
		// Without tokens on loopback (the demo modes), only the user's own
		// browser tabs may drive it, not a rebound page of another site.
		LoopbackHosts: !cfg.sec.authConfigured() && grpcserver.IsLoopback(cfg.httpAddr),
		ExtraHosts:    splitList(cfg.consoleHosts),
		MethodRoles:   orchestrator.MethodRoles,
	})
	if err != nil {
		return err
	}
	n.srv.Handle("/", c)
	return nil
}

// selfTarget is a dial target for a server bound to addr: a wildcard bind
// (":50051") is reached over loopback.
func selfTarget(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// httpURL is the root URL of an HTTP port for people, from its
// bound address (the console, /metrics): localhost for a wildcard bind or
// the loopback address localhost names, else the address bound (another
// loopback address, such as dev --host 127.0.0.2, is not what localhost
// reaches: found by a review).
func httpURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String() + "/"
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() || tcp.IP.Equal(net.IPv4(127, 0, 0, 1)) || tcp.IP.Equal(net.IPv6loopback) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port)) + "/"
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
