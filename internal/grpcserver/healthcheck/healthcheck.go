// Package healthcheck asks a gRPC server for its grpc.health.v1 status. It
// backs `slammesh healthcheck`, which docker compose runs as the services'
// health test, so it stays small: one connection (plaintext unless the
// caller passes TLS credentials), one Check call.
package healthcheck

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ErrNotServing is wrapped by Check's error when the server answered with a
// status other than SERVING.
var ErrNotServing = errors.New("not serving")

// Check returns nil when the server at target reports service as SERVING.
// service is a fully qualified gRPC service name such as
// "slammesh.mapping.v1.MappingService", or "" for the server as a whole. The
// call fails fast when nothing listens at target; ctx should carry a deadline
// in case something listens but does not answer. opts follow the plaintext
// default, so grpc.WithTransportCredentials(meshtls.ClientCredentials(…))
// probes a TLS port.
func Check(ctx context.Context, target, service string, opts ...grpc.DialOption) (err error) {
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", target, err)
	}
	defer func() {
		if cerr := conn.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("healthcheck %s: close: %w", target, cerr))
		}
	}()

	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("healthcheck %s service %q: %w", target, service, err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck %s service %q: %w (%s)", target, service, ErrNotServing, st)
	}
	return nil
}
