package grpcserver_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/grpcserver"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// A reply over the send limit fails with RESOURCE_EXHAUSTED
// (MESSAGE_TOO_LARGE), and the call log says so: gRPC's own refusal comes
// after the interceptors returned, so it used to be logged as OK.
func TestOversizedReplyIsLoggedAsFailed(t *testing.T) {
	const limit = 64 << 10
	h := start(t, &testService{unary: func(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{1}, int(req.GetResponseSize()))}}, nil
	}}, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.MaxMessageBytes = limit })

	if _, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: limit / 2}); err != nil {
		t.Fatalf("reply under the limit: %v", err)
	}
	_, err := h.client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 2 * limit})
	if status.Code(err) != codes.ResourceExhausted || rpcerr.Reason(err) != grpcserver.ReasonMessageTooLarge {
		t.Fatalf("reply over the limit: %v (reason %q), want RESOURCE_EXHAUSTED %s", err, rpcerr.Reason(err), grpcserver.ReasonMessageTooLarge)
	}
	var codesLogged []any
	for _, l := range h.logs.find(t, "finished call") {
		if l["grpc.method"] == "UnaryCall" {
			codesLogged = append(codesLogged, l["grpc.code"])
		}
	}
	if len(codesLogged) != 2 || codesLogged[0] != "OK" || codesLogged[1] != "ResourceExhausted" {
		t.Errorf("UnaryCall logged with codes %v, want [OK ResourceExhausted]", codesLogged)
	}
}

// A client of a service that was down for several seconds is connected
// again within about a second of the service's return (gRPC's default
// reconnect back-off would have grown to several seconds by then, and every
// call on the connection fails fast until it reconnects).
func TestDialReconnectsWithinASecond(t *testing.T) {
	t.Parallel()
	a := start(t, &testService{}, nil)
	addr := a.srv.Addr().String()
	if _, err := a.client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	// Calls during the outage fail; each failure lets the connection back
	// off further.
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := a.client.EmptyCall(callCtx(t), &testgrpc.Empty{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("call during the outage: %v, want UNAVAILABLE", err)
		}
	}
	start(t, &testService{}, func(c *grpcserver.Config, _ *grpcserver.Deps) { c.GRPCAddr = addr })
	back := time.Now()
	for {
		_, err := a.client.EmptyCall(callCtx(t), &testgrpc.Empty{})
		if err == nil {
			break
		}
		if took := time.Since(back); took > 3*time.Second {
			t.Fatalf("client still failing %v after the service came back: %v", took, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("reconnected %v after the service came back", time.Since(back).Round(time.Millisecond))
}

// At --log-level warn an OK call and an Info-level failure write no call
// line, and a Warn-level failure writes the line it writes at info, with the
// call's own duration (the call log runs only for it, replaying its result).
func TestCallLogAtWarnLogsOnlyTheFailuresItTakes(t *testing.T) {
	const slow = 50 * time.Millisecond
	logs := &syncBuffer{}
	h := start(t, &testService{unary: func(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		switch req.GetResponseSize() {
		case 1:
			return nil, status.Error(codes.NotFound, "no such map") // Info
		case 2:
			time.Sleep(slow)
			return nil, status.Error(codes.Unavailable, "redis down") // Warn
		}
		return &testgrpc.SimpleResponse{}, nil
	}}, func(_ *grpcserver.Config, d *grpcserver.Deps) {
		d.Logger = telemetry.NewLogger(logs, "mapping", slog.LevelWarn)
	})
	ctx, span := h.tel.Tracer().Start(callCtx(t), "caller")
	defer span.End()
	for size, want := range []codes.Code{codes.OK, codes.NotFound, codes.Unavailable} {
		if _, err := h.client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: int32(size)}); status.Code(err) != want {
			t.Fatalf("call %d = %v, want %v", size, err, want)
		}
	}
	lines := logs.find(t, "finished call")
	if len(lines) != 1 {
		t.Fatalf("call log lines = %v, want the Unavailable call's only", lines)
	}
	l := lines[0]
	if l["grpc.code"] != "Unavailable" || l["grpc.method"] != "UnaryCall" || l["grpc.error"] == nil || l["peer.address"] == nil {
		t.Errorf("call log line %v, want UnaryCall Unavailable with its error and peer", l)
	}
	if ms, _ := l["grpc.time_ms"].(float64); ms < float64(slow.Milliseconds()) {
		t.Errorf("grpc.time_ms = %v, want the call's %v at least", l["grpc.time_ms"], slow)
	}
	if l["trace_id"] != span.SpanContext().TraceID().String() {
		t.Errorf("trace_id %v, want %s", l["trace_id"], span.SpanContext().TraceID())
	}
}
