package grpcserver_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/slammesh/slammesh/internal/grpcserver"
)

// TestDialAddressList: a comma-separated list of host:port spreads calls
// over every address (two replicas of a step service without DNS), and
// keeps calling the one left when the other stops.
func TestDialAddressList(t *testing.T) {
	a, b := start(t, &testService{}, nil), start(t, &testService{}, nil)
	conn, err := grpcserver.Dial(a.srv.Addr().String()+", "+b.srv.Addr().String(), a.tel)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	const maxCalls = 1000
	for i := 0; a.svc.calls.Load() == 0 || b.svc.calls.Load() == 0; i++ {
		if i == maxCalls {
			t.Fatalf("after %d calls: backend a got %d, b got %d; want both used", maxCalls, a.svc.calls.Load(), b.svc.calls.Load())
		}
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	before := b.svc.calls.Load()
	for range 20 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("with one replica stopped: %v", err)
		}
	}
	if got := b.svc.calls.Load() - before; got != 20 {
		t.Fatalf("the replica left served %d of 20 calls", got)
	}
}

func TestDialAddressListRejectsBadEntries(t *testing.T) {
	h := start(t, &testService{}, nil)
	for _, target := range []string{"127.0.0.1:1,", "127.0.0.1:1,localhost", "dns:///a:1,b:2", ",127.0.0.1:1"} {
		if conn, err := grpcserver.Dial(target, h.tel); err == nil || !strings.Contains(err.Error(), "host:port") {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("Dial(%q) = %v, want an error naming host:port entries", target, err)
		}
	}
}

// CheckTarget takes the targets gRPC reads (the usual host:port, the forms
// of its dns and passthrough resolvers, address lists, and other
// resolvers' targets, which are theirs to read), and refuses those that no
// call could reach.
func TestCheckTarget(t *testing.T) {
	t.Parallel()
	for _, target := range []string{
		"localhost:50052", "mapping", "10.0.0.1:50052", "[::1]:50052", "::1", ":50052",
		"mapping.slammesh.svc.cluster.local:50052", "dns:///mapping:50052", "dns://10.0.0.53/mapping:50052",
		"passthrough:///127.0.0.1:50052", "127.0.0.1:7001,127.0.0.1:7002", "127.0.0.1:7001, 127.0.0.1:7002",
		"unix:///run/mapping.sock", "unix:mapping.sock", "xds:///mapping",
	} {
		if err := grpcserver.CheckTarget(target); err != nil {
			t.Errorf("CheckTarget(%q) = %v, want nil", target, err)
		}
	}
	for _, target := range []string{"", " ", "localhost:", ":", "dns:///", "mapping:70000", "mapping:x9", "127.0.0.1:7001,localhost:", "127.0.0.1:7001,"} {
		if err := grpcserver.CheckTarget(target); err == nil {
			t.Errorf("CheckTarget(%q) = nil, want an error", target)
		}
	}
}

// TestDialFindsNewReplicas: a client whose resolver learns of a new
// replica only when asked again (dns:///, which re-resolves only when a
// connection ends) starts calling it once the server's MaxConnectionAge
// ends the first connection: an autoscaled step service's new pods get
// calls from orchestrators that were already connected.
func TestDialFindsNewReplicas(t *testing.T) {
	a := start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.MaxConnectionAge = 300 * time.Millisecond })
	b := start(t, &testService{}, nil)
	r := manual.NewBuilderWithScheme("slammesh-test-reresolve")
	var asked atomic.Bool
	r.ResolveNowCallback = func(resolver.ResolveNowOptions) { asked.Store(true) }
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.srv.Addr().String()}}})
	conn, err := grpcserver.Dial(r.Scheme()+":///replicas", a.tel, grpc.WithResolvers(r))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	updated := false
	deadline := time.Now().Add(30 * time.Second)
	for b.svc.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the new replica got no call in 30 s (re-resolution asked: %v)", asked.Load())
		}
		if asked.Load() && !updated {
			r.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: a.srv.Addr().String()}, {Addr: b.srv.Addr().String()}}})
			updated = true
		}
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
