// Package auth authenticates gRPC callers by bearer token and authorizes
// them by role, for slammesh's public API (the orchestrator). Tokens are
// either JWTs signed by a key of a configured JWKS (RS256 or ES256, with
// exp, nbf and aud checked and the role in a claim) or opaque tokens listed
// in a static file; see JWKS and TokenFile. The interceptors are
// go-grpc-middleware's auth interceptors around a Policy that names the
// least role of every method.
//
// Errors: a missing, malformed, unknown, expired or badly signed token is
// UNAUTHENTICATED (reason UNAUTHENTICATED); a valid token whose role is too
// low is PERMISSION_DENIED (reason ROLE_REQUIRED, metadata "role" naming
// the role needed). Error messages never echo the token.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// Role is what a caller may do; each role includes the ones below it.
type Role int

// Roles, lowest first (docs/security.md lists what each may call).
const (
	RoleNone Role = iota
	// RoleViewer reads missions, their events and maps.
	RoleViewer
	// RoleOperator also starts and cancels missions.
	RoleOperator
	// RoleAdmin also resumes and deletes missions and sends fault plans.
	RoleAdmin
)

var roleNames = [...]string{"none", "viewer", "operator", "admin"}

// String returns the role's name as written in token files and claims.
func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// ParseRole parses viewer, operator or admin (case-insensitive).
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames[1:] {
		if strings.EqualFold(s, n) {
			return Role(i + 1), nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (viewer, operator, admin)", s)
}

// Principal is an authenticated caller.
type Principal struct {
	// Subject names the caller in logs: the JWT's sub, or "token:<role>:<n>"
	// for the n-th line of a token file.
	Subject string
	Role    Role
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller authenticated by the interceptors.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// ErrInvalidToken is wrapped by the errors of a Verifier for a token it
// does not accept; the interceptors turn it into UNAUTHENTICATED.
var ErrInvalidToken = errors.New("invalid token")

// Verifier authenticates a bearer token.
type Verifier interface {
	Verify(ctx context.Context, token string) (Principal, error)
}

// Verifiers tries each verifier in turn and accepts the first principal; a
// token no verifier accepts is invalid.
type Verifiers []Verifier

// Verify implements Verifier.
func (vs Verifiers) Verify(ctx context.Context, token string) (Principal, error) {
	msgs := make([]string, 0, len(vs))
	for _, v := range vs {
		p, err := v.Verify(ctx, token)
		if err == nil {
			return p, nil
		}
		msgs = append(msgs, strings.TrimPrefix(err.Error(), ErrInvalidToken.Error()+": "))
	}
	if len(msgs) == 0 {
		return Principal{}, fmt.Errorf("%w: no verifier configured", ErrInvalidToken)
	}
	// One line for the caller: "token has invalid claims: token is
	// expired; not a known static token".
	return Principal{}, fmt.Errorf("%w: %s", ErrInvalidToken, strings.Join(msgs, "; "))
}

// ErrorInfo reasons of the interceptors' errors.
const (
	ReasonUnauthenticated = "UNAUTHENTICATED"
	ReasonRoleRequired    = "ROLE_REQUIRED"
)

// Policy says who may call what.
type Policy struct {
	// Methods maps full method names ("/pkg.Service/Method") to the least
	// role that may call them. A method absent from Methods and not Open is
	// refused to everyone: a new RPC is closed until it is given a role.
	Methods map[string]Role
	// Open reports methods served without a token (health, reflection).
	Open func(fullMethod string) bool
	// Request, when set, checks a unary request further once the method's
	// role is satisfied, e.g. that only admins send fault plans. It returns
	// a gRPC status error (use Denied).
	Request func(ctx context.Context, p Principal, fullMethod string, req any) error
}

// Denied is the PERMISSION_DENIED error naming the role needed for what.
func Denied(need Role, what string) error {
	return rpcerr.New(codes.PermissionDenied, ReasonRoleRequired,
		fmt.Sprintf("%s needs role %s", what, need), "role", need.String())
}

// authFunc authenticates the call's bearer token and checks the method's role.
func authFunc(v Verifier, pol Policy) grpcauth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		token, err := grpcauth.AuthFromMD(ctx, "bearer")
		// RFC 7235 allows more than one space after the scheme; no token
		// holds a space (RFC 6750 b64token), so edges are trimmed.
		token = strings.TrimSpace(token)
		if err == nil && token == "" {
			err = errors.New("empty token")
		}
		if err != nil {
			return nil, rpcerr.New(codes.Unauthenticated, ReasonUnauthenticated,
				`missing bearer token: send metadata "authorization: Bearer <token>"`)
		}
		p, err := v.Verify(ctx, token)
		if err != nil {
			return nil, rpcerr.New(codes.Unauthenticated, ReasonUnauthenticated, err.Error())
		}
		// Every log line of the call names its caller: who cancelled,
		// resumed or deleted a mission (found by a review: only the peer
		// address was logged, the console's always loopback). Through the
		// call scope (grpcserver.Deps.CallScope) that includes the access
		// line, written around this interceptor, and a refused call's.
		ctx = telemetry.WithCallAttrs(ctx, slog.String(LogKeyPrincipal, p.Subject))
		method, _ := grpc.Method(ctx)
		need, ok := pol.Methods[method]
		if !ok {
			return nil, rpcerr.New(codes.PermissionDenied, ReasonRoleRequired, method+" is not open to any role")
		}
		// The caller's role goes back in the response header, so that a
		// client (the console) can leave out what the role may not do
		// instead of offering it and showing the refusal. Nothing has been
		// sent yet here; should the header not take, the call goes on
		// without it, as a call without authentication does.
		_ = grpc.SetHeader(ctx, metadata.Pairs(RoleHeader, p.Role.String()))
		if p.Role < need {
			return nil, Denied(need, method)
		}
		return WithPrincipal(ctx, p), nil
	}
}

// LogKeyPrincipal is the log attribute naming an authenticated call's
// caller (Principal.Subject) on every line the call logs.
const LogKeyPrincipal = "principal"

// RoleHeader is the response header metadata key that carries the
// authenticated caller's role ("viewer", "operator" or "admin") on every
// call whose token verified, whether the role then allows the call or not;
// absent when the token did not verify, and when authentication is off.
const RoleHeader = "slammesh-role"

// notOpen selects the calls the policy guards.
func notOpen(pol Policy) selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return pol.Open == nil || !pol.Open(c.FullMethod())
	})
}

// UnaryServerInterceptor authenticates and authorizes unary calls.
func UnaryServerInterceptor(v Verifier, pol Policy) grpc.UnaryServerInterceptor {
	authn := selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authFunc(v, pol)), notOpen(pol))
	if pol.Request == nil {
		return authn
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return authn(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			if p, ok := FromContext(ctx); ok {
				if err := pol.Request(ctx, p, info.FullMethod, req); err != nil {
					return nil, err
				}
			}
			return handler(ctx, req)
		})
	}
}

// StreamServerInterceptor authenticates and authorizes streaming calls.
func StreamServerInterceptor(v Verifier, pol Policy) grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(authFunc(v, pol)), notOpen(pol))
}

// HealthAndReflection reports the methods of grpc.health.v1 and of server
// reflection (v1 and v1alpha), which a Policy leaves open: probes carry no
// token, and reflection describes an API whose protos are public anyway
// (docs/security.md).
func HealthAndReflection(fullMethod string) bool {
	for _, prefix := range []string{
		"/grpc.health.v1.Health/",
		"/grpc.reflection.v1.ServerReflection/",
		"/grpc.reflection.v1alpha.ServerReflection/",
	} {
		if strings.HasPrefix(fullMethod, prefix) {
			return true
		}
	}
	return false
}
