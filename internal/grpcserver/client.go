package grpcserver

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/slammesh/slammesh/internal/telemetry"
)

// defaultServiceConfig spreads calls over every address the resolver returns,
// so a headless Kubernetes service (one DNS record per pod) is load-balanced
// by the client. It deliberately has no retryPolicy: the saga classifies
// errors and retries with its own backoff and attempt budget, and a second,
// hidden retry layer would multiply attempts and hide them from its records.
const defaultServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Client keepalive: ping an idle connection every clientKeepaliveTime so a
// vanished peer is noticed; it must stay above the servers'
// Config.KeepaliveMinTime or they disconnect the client for pinging too much.
const (
	clientKeepaliveTime    = 30 * time.Second
	clientKeepaliveTimeout = 10 * time.Second
)

// reconnectBackoff paces the reconnection of a client to a service that went
// away. gRPC's default grows to 120 s, so a connection that failed for a
// minute during a rolling restart stays down for up to two minutes after the
// service is back, and every call on it fails fast with UNAVAILABLE. Capped
// at a second, a connection is back within about a second of its service
// (the saga's own back-off, also capped at a second, does the rest); the
// cost is one connection attempt per second per address while a service is
// down.
var reconnectBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   time.Second,
}

// minConnectTimeout bounds one connection attempt.
const minConnectTimeout = 5 * time.Second

// Dial returns a client connection to target (a gRPC target such as
// "localhost:50052" or "dns:///mapping.slammesh.svc:50052", or a
// comma-separated list of host:port such as "127.0.0.1:7001,127.0.0.1:7002"
// for several replicas without DNS, balanced like a headless service's
// records) instrumented with
// tel's tracer and meter providers and the W3C propagator, so the server's
// spans join the caller's trace. Create one connection per target and share
// it: grpc.NewClient connects lazily and multiplexes calls.
//
// The connection is plaintext: slammesh services talk over loopback or inside
// a mesh that provides mTLS; pass grpc.WithTransportCredentials in opts to
// override. The service config is fixed to round_robin without retries (any
// config published by the resolver, such as a DNS TXT record, is ignored);
// only gRPC's transparent retry of calls that never reached the server
// remains. A connection whose service went away reconnects within about a
// second of its return (reconnectBackoff). Messages up to
// DefaultMaxMessageBytes are accepted. opts are applied after these
// defaults.
func Dial(target string, tel *telemetry.Telemetry, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if tel == nil {
		return nil, errors.New("grpcserver: Dial needs a Telemetry")
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider()),
			otelgrpc.WithMeterProvider(tel.MeterProvider()),
			otelgrpc.WithPropagators(tel.Propagator()),
		)),
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultServiceConfig(defaultServiceConfig),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: minConnectTimeout}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                clientKeepaliveTime,
			Timeout:             clientKeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(DefaultMaxMessageBytes),
			grpc.MaxCallSendMsgSize(DefaultMaxMessageBytes),
		),
	}
	if strings.Contains(target, ",") {
		var err error
		if target, base, err = listTarget(target, base); err != nil {
			return nil, err
		}
	}
	conn, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: dial %s: %w", target, err)
	}
	return conn, nil
}

// listAddrs are the entries of an address list (listTarget).
func listAddrs(list string) ([]resolver.Address, error) {
	var addrs []resolver.Address
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if strings.Contains(a, "/") || checkHostPort(a) != nil {
			return nil, fmt.Errorf("grpcserver: dial %q: an address list takes host:port entries, not %q", list, a)
		}
		addrs = append(addrs, resolver.Address{Addr: a})
	}
	return addrs, nil
}

// checkHostPort refuses a host:port whose port is missing or not a port,
// as gRPC's dns resolver does when it dials ("localhost:", ":").
func checkHostPort(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err == nil && port == "" {
		err = errors.New("missing port")
	}
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	return err
}

// CheckTarget reports an error for a target that Dial would accept but
// that no call could ever reach: empty, a host:port whose port is missing
// or not a port, or an address list with such an entry (found by reviews:
// an orchestrator given "", "localhost:" or ":" for a step service started,
// and every mission then retried that step until its budget ran out, and
// its compensation after it). It checks the forms gRPC's dns resolver
// reads (host, host:port, an IP literal, dns:///host:port,
// dns://server/host:port), passthrough:/// and address lists; targets of
// other resolvers (unix:, xds:///, ...) are left to them. Call it at start,
// before anything waits.
func CheckTarget(target string) error {
	endpoint := strings.TrimSpace(target)
	if strings.Contains(endpoint, ",") {
		_, err := listAddrs(endpoint)
		return err
	}
	switch scheme, rest, ok := strings.Cut(endpoint, "://"); {
	case !ok:
		if strings.HasPrefix(endpoint, "unix:") {
			return nil
		}
	case scheme == "dns" || scheme == "passthrough":
		_, endpoint, _ = strings.Cut(rest, "/") // after the authority, if any
	default:
		return nil
	}
	switch {
	case endpoint == "":
		return errors.New("empty: give host:port")
	case net.ParseIP(endpoint) != nil || !strings.Contains(endpoint, ":"):
		return nil // an IP literal, or a host on gRPC's default port
	}
	return checkHostPort(endpoint)
}

// listScheme is the scheme of the static resolver a comma-separated target
// gets; it is registered on its own connection only (grpc.WithResolvers).
const listScheme = "slammesh-list"

// listTarget turns "host:port,host:port,…" into a target of a static
// resolver holding those addresses, balanced round_robin by the default
// service config. The authority (the TLS server name and :authority header)
// is the first address, as a one-address target would have it; a list
// with an empty entry, a scheme, or an entry without a port is an error.
func listTarget(list string, base []grpc.DialOption) (string, []grpc.DialOption, error) {
	addrs, err := listAddrs(list)
	if err != nil {
		return "", nil, err
	}
	r := manual.NewBuilderWithScheme(listScheme)
	r.InitialState(resolver.State{Addresses: addrs})
	return listScheme + ":///" + addrs[0].Addr, append(base, grpc.WithResolvers(r), grpc.WithAuthority(addrs[0].Addr)), nil
}
