package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/slammesh/slammesh/internal/rpcerr"
)

// defaultReconnect is how long start and watch keep retrying while the
// orchestrator is unreachable: longer than an orchestrator takes to drain
// and restart, or a client to reach another replica.
const defaultReconnect = time.Minute

// Retry backoff in an outage: the first retry comes quickly (another
// replica is usually there), later ones no more often than every
// maxRetryBackoff.
const (
	firstRetryBackoff = 100 * time.Millisecond
	maxRetryBackoff   = 2 * time.Second
)

// servedFor is how long a failed call must have been served by an
// orchestrator to count as an answer that ends an outage, when the answer
// does not say (a dropped connection, a drain): a call refused at once is
// part of the outage, a wait that was held for seconds before its
// orchestrator went away is not.
const servedFor = time.Second

// outage follows one stretch of UNAVAILABLE answers from the orchestrator
// (draining, restarting, unreachable), for calls that are safe to make
// again: the first failure is said on stderr, each retry waits a growing
// backoff, and reconnect after the first failure the retries stop.
type outage struct {
	reconnect time.Duration
	stderr    io.Writer
	since     time.Time // zero between outages
	backoff   time.Duration
	// storeOnly: every failure of this outage was the orchestrator
	// answering that its Redis is unavailable, not the orchestrator out.
	storeOnly bool
	// plaintextTo is the orchestrator's address when slamctl speaks
	// plaintext to it (no --cacert), else "": a connection closed before
	// gRPC began is then probed for TLS (see speaksTLS).
	plaintextTo string
}

// attempt is one call, as outage needs it: when it was made and the
// orchestrator it reached (grpc.Peer fills it only when the call got a
// connection).
type attempt struct {
	began time.Time
	peer  peer.Peer
}

// begin starts an attempt; pass its CallOption to the call.
func (o *outage) begin() (*attempt, grpc.CallOption) {
	a := &attempt{began: time.Now()}
	return a, grpc.Peer(&a.peer)
}

// over ends the current outage: the orchestrator answered.
func (o *outage) over() { o.since = time.Time{} }

// retry returns nil when attempt a of the call op, which failed with err,
// is to be made again, after waiting the backoff; then says on stderr, at
// an outage's first failure, what the retry does. Otherwise it returns the
// error to end with: err when it is not UNAVAILABLE (or reconnect is 0),
// or is a TLS handshake that failed for good (see tlsRefused) or an HTTP
// port's answer (see httpPort), a timeout once
// reconnect has passed since the outage began. An attempt that an
// orchestrator served ends the outage before it (the one its failure
// begins is a new one): one ended because the mission moved to another
// replica (MISSION_MOVED), or one served for servedFor or longer, unless
// the orchestrator answered that its own store is unavailable: Redis's
// outage goes on.
func (o *outage) retry(ctx context.Context, op string, err error, then string, a *attempt) error {
	if status.Code(err) != codes.Unavailable || o.reconnect <= 0 || ctx.Err() != nil {
		return rpcError(op, err)
	}
	if tlsRefused(err) {
		return fmt.Errorf("%w (check --cacert, --cert and --key against the orchestrator's certificates)", rpcError(op, err))
	}
	if httpPort(status.Convert(err).Message()) {
		return rpcError(op, err)
	}
	if o.plaintextTo != "" && strings.Contains(status.Convert(err).Message(), "error reading server preface") && speaksTLS(ctx, o.plaintextTo) {
		return fmt.Errorf("%s: %s: the orchestrator at %s speaks TLS: pass --cacert, and --cert/--key for mutual TLS", op, codes.Unavailable, o.plaintextTo)
	}
	switch reason := rpcerr.Reason(err); {
	case reason == rpcerr.ReasonMissionMoved,
		a.peer.Addr != nil && time.Since(a.began) >= servedFor && reason != rpcerr.ReasonStoreUnavailable:
		o.over()
	}
	storeDown := rpcerr.Reason(err) == rpcerr.ReasonStoreUnavailable
	switch now := time.Now(); {
	case o.since.IsZero():
		o.since, o.backoff, o.storeOnly = now, firstRetryBackoff, storeDown
		fmt.Fprintf(o.stderr, "%v; %s for up to %v (--reconnect)\n", rpcError(op, err), then, o.reconnect)
	case now.Sub(o.since) >= o.reconnect:
		switch {
		case o.storeOnly && storeDown:
			// The orchestrator answered every time: its Redis is what is
			// down (found by a review: it read as the orchestrator's
			// outage).
			return fmt.Errorf("%s: the orchestrator answered, but its store (Redis) was unavailable for %v (--reconnect): %w", op, o.reconnect, rpcError("last attempt", err))
		case o.storeOnly || storeDown:
			return fmt.Errorf("%s: the orchestrator, or its store (Redis), was unavailable for %v (--reconnect): %w", op, o.reconnect, rpcError("last attempt", err))
		}
		return fmt.Errorf("%s: the orchestrator was unreachable for %v (--reconnect): %w", op, o.reconnect, rpcError("last attempt", err))
	}
	o.storeOnly = o.storeOnly && storeDown
	select {
	case <-ctx.Done():
		return rpcError(op, status.FromContextError(ctx.Err()).Err())
	case <-time.After(o.backoff):
	}
	o.backoff = min(2*o.backoff, maxRetryBackoff)
	return nil
}

// speaksTLS reports whether the server at the gRPC target addr completes a
// TLS handshake, or answers one with a TLS alert: what tells a TLS
// orchestrator, which closes a plaintext client's connection before gRPC
// begins, from a proxy whose orchestrator is restarting, which does the
// same (both read "error reading server preface: EOF"). The probe sends no
// request and no credential, so the server's certificate need not verify;
// it is made once per failed attempt, within probeTimeout. A target it
// cannot dial over TCP (unix:) is not probed.
func speaksTLS(ctx context.Context, target string) bool {
	addr, ok := tcpAddr(target)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		// Only the protocol is probed: nothing is sent over the
		// connection, which is closed at once.
		InsecureSkipVerify: true,
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var alert tls.AlertError
		return errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls: ")
	}
	_ = conn.Close()
	return true
}

// probeTimeout bounds speaksTLS: a loopback handshake takes milliseconds,
// but a review's probe of one second missed a TLS orchestrator on a
// loaded two-core machine, and a miss costs the whole --reconnect.
const probeTimeout = 3 * time.Second

// tcpAddr is the host:port that gRPC target dials: the dns:/// and
// passthrough:/// schemes taken off, and gRPC's default port 443 added to
// a host without one; ok is false for a target not over TCP (unix:).
func tcpAddr(target string) (addr string, ok bool) {
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		target = strings.TrimPrefix(target, scheme)
	}
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") || target == "" {
		return "", false
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return net.JoinHostPort(target, "443"), true
	}
	return target, true
}

// tlsRefused reports whether err is grpc-go's UNAVAILABLE for a TLS
// connection that the certificates or the configuration refused: a server
// certificate that does not verify (crypto/x509's errors), a TLS alert
// from the server (one that refused the client's certificate, which over
// TLS 1.3 arrives with the server's preface, after the client's side of
// the handshake), or a server that does not speak TLS. Waiting does not
// mend those, so they are no outage; a handshake cut short (EOF, a reset:
// a proxy whose orchestrator restarts) is one.
func tlsRefused(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "remote error: tls: ") || strings.Contains(msg, "first record does not look like a TLS handshake") ||
		strings.Contains(msg, "authentication handshake failed") && (strings.Contains(msg, "x509: ") || strings.Contains(msg, "tls: failed to verify"))
}

// reconnectFlagHelp is the --reconnect flag's help on start and watch.
const reconnectFlagHelp = "how long to keep retrying while the orchestrator is unreachable (UNAVAILABLE: draining, restarting): "
