// Package rpcerr is the one place where slammesh turns a failure into a gRPC
// status. Every status it builds carries a google.rpc.ErrorInfo in the
// slammesh.dev domain, so callers (the saga's classifier, the event writer,
// an operator reading grpcurl output) branch on a stable machine-readable
// reason instead of parsing messages.
package rpcerr

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every slammesh error.
const Domain = "slammesh.dev"

// The ErrorInfo reasons of docs/architecture.md. They are API: the saga
// classifier, events and clients match on them.
const (
	ReasonInvalidField        = "INVALID_FIELD"
	ReasonCapacityExhausted   = "CAPACITY_EXHAUSTED"
	ReasonMapNotFound         = "MAP_NOT_FOUND"
	ReasonMissionNotFound     = "MISSION_NOT_FOUND"
	ReasonInsufficientOverlap = "INSUFFICIENT_OVERLAP"
	ReasonAmbiguousMatch      = "AMBIGUOUS_MATCH"
	ReasonInsufficientData    = "INSUFFICIENT_DATA"
	ReasonInconsistentMaps    = "INCONSISTENT_MAPS"
	ReasonActionForbidden     = "ACTION_FORBIDDEN"
	ReasonInjectedFault       = "INJECTED_FAULT"
	// ReasonSagaMismatch: the step of this mission was already run by
	// another saga (FAILED_PRECONDITION); one mission has one saga.
	ReasonSagaMismatch = "SAGA_MISMATCH"
	// ReasonConflict: an optimistic transaction kept losing to concurrent
	// writers, or the map changed under a merge (ABORTED: retry).
	ReasonConflict = "CONFLICT"
	// ReasonStoreUnavailable: Redis could not be reached (UNAVAILABLE: retry).
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
	// ReasonStoreFull: Redis refused a write for want of memory
	// (RESOURCE_EXHAUSTED: retrying will not help until memory is freed,
	// by retention, deletions or the operator; the saga retries a step so
	// refused within its retry budget).
	ReasonStoreFull = "STORE_FULL"
	// ReasonDraining: the orchestrator is shutting down (UNAVAILABLE:
	// retry on another replica).
	ReasonDraining = "ORCHESTRATOR_DRAINING"
	// ReasonMissionMoved: another orchestrator replica drives the mission
	// now, handed it at a drain or taken over (UNAVAILABLE: retry to follow
	// it there). The call was served until then: a client's outage did not
	// begin before it.
	ReasonMissionMoved = "MISSION_MOVED"
	// ReasonInternal: a bug or corrupt data; details are in the server log.
	ReasonInternal = "INTERNAL"
	// ReasonMissionGone: a step call for a mission that has ended (its keys
	// carry their retention), or whose saga record expired or was deleted
	// (FAILED_PRECONDITION): the step services refuse it without writing,
	// so a late call leaves no key behind.
	ReasonMissionGone = "MISSION_GONE"
	// ReasonMissionExpired: NOT_FOUND for a mission that existed and whose
	// data expired at the end of its retention period or was deleted.
	ReasonMissionExpired = "MISSION_EXPIRED"
	// ReasonCapacityCorrupt: the mapping capacity counters were found
	// inconsistent and could not be repaired (UNAVAILABLE: retry; the
	// server log says why).
	ReasonCapacityCorrupt = "CAPACITY_CORRUPT"
	// ReasonMissionIDReused: StartMission named an existing mission with
	// another request than the one that started it (ALREADY_EXISTS): a
	// mission id is an idempotency key.
	ReasonMissionIDReused = "MISSION_ID_REUSED"
	// ReasonOrchestratorLate: the orchestrator's create or reopen of a
	// saga reached Redis more than a lease TTL after it began, its process
	// paused or its clock far from Redis's, and was refused with nothing
	// written (UNAVAILABLE: retry).
	ReasonOrchestratorLate = "ORCHESTRATOR_LATE"
	// ReasonRecordDamaged: the mission's saga record exists but cannot be
	// decoded, fields lost outside slammesh (DATA_LOSS): it can be neither
	// shown nor run, and ListMissions leaves it out.
	ReasonRecordDamaged = "RECORD_DAMAGED"
)

// MetadataField is the ErrorInfo metadata key naming the offending request
// field of an INVALID_FIELD error.
const MetadataField = "field"

// New returns a status error with code, message msg and an ErrorInfo carrying
// reason and the metadata given as alternating key, value pairs (a trailing
// key without a value is dropped rather than invented).
func New(code codes.Code, reason, msg string, md ...string) error {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: Domain}
	if len(md) >= 2 {
		info.Metadata = make(map[string]string, len(md)/2)
		for i := 0; i+1 < len(md); i += 2 {
			info.Metadata[md[i]] = md[i+1]
		}
	}
	st, err := status.New(code, msg).WithDetails(info)
	if err != nil {
		// WithDetails fails only for code OK or an unmarshalable detail; neither
		// can be fixed by the caller, so keep the code and message at least.
		return status.Error(code, msg)
	}
	return st.Err()
}

// InvalidArgument reports a bad request field: INVALID_ARGUMENT with reason
// INVALID_FIELD, metadata field=<field> and a message that names the field so
// a human reading only the message still knows what to fix.
func InvalidArgument(field, msg string) error {
	return New(codes.InvalidArgument, ReasonInvalidField, field+": "+msg, MetadataField, field)
}

// Info returns the slammesh ErrorInfo of a status error (also when wrapped
// with %w), or nil when err carries none.
func Info(err error) *errdetails.ErrorInfo {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// Reason returns the ErrorInfo reason of a status error, or "" when err
// carries no slammesh ErrorInfo.
func Reason(err error) string {
	return Info(err).GetReason()
}

// Field returns the field metadata of an INVALID_FIELD error, or "".
func Field(err error) string {
	return Info(err).GetMetadata()[MetadataField]
}

// Code returns the gRPC code of err, seeing through %w wrapping; it is
// codes.OK for nil and codes.Unknown for errors that carry no status.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}

// IsStatus reports whether err already is (or wraps) a gRPC status, so a
// handler can pass it through instead of hiding it behind INTERNAL.
func IsStatus(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se)
}

// Unexpected turns an error that no handler mapped to a domain status into
// one that leaks nothing of the server's internals: a status passes through,
// a context error keeps its code (CANCELED, DEADLINE_EXCEEDED), a store that
// cannot serve the request now but may shortly (see storeUnavailable)
// becomes UNAVAILABLE (STORE_UNAVAILABLE) so the saga retries the step, a
// store out of memory RESOURCE_EXHAUSTED (STORE_FULL), which the saga
// retries too, and anything else INTERNAL with a generic message. The
// caller logs err itself when the result is INTERNAL: the client sees none
// of its detail.
func Unexpected(err error) error {
	switch {
	case err == nil:
		return nil
	case IsStatus(err):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case storeUnavailable(err):
		return New(codes.Unavailable, ReasonStoreUnavailable, "the service's store is unavailable; retry")
	case StoreFull(err):
		// Not INTERNAL: the saga would compensate a healthy mission after
		// two attempts, with nothing naming Redis (found by a review).
		return New(codes.ResourceExhausted, ReasonStoreFull, StoreFullMessage)
	}
	return New(codes.Internal, ReasonInternal, "internal error; see the server log")
}

// StoreFullMessage is what a call refused for a Redis out of memory says
// (STORE_FULL), less the operation.
const StoreFullMessage = "the store (Redis) is out of memory (used memory past maxmemory); raise maxmemory, delete finished missions or shorten --retention"

// StoreFull reports whether err is (or wraps) Redis's OOM reply: used
// memory past maxmemory under the noeviction policy slammesh requires
// (redischeck), so every write fails until memory is freed.
func StoreFull(err error) bool {
	return redis.HasErrorPrefix(err, "OOM")
}

// storeUnavailable reports whether err says that Redis could not serve a
// request for a reason that passes: the network (a net.Error, a connection
// cut mid-reply), the client (its pool timed out or is exhausted under load,
// or it was closed because the process is shutting down) or the server's
// state (LOADING its dataset after a restart, READONLY or MASTERDOWN during a
// failover, TRYAGAIN or CLUSTERDOWN while Cluster slots move, out of client
// slots, NOREPLICAS; these are the server errors go-redis itself retries),
// or credentials it refuses (StoreRefusedCredentials).
// Mapped to INTERNAL they would make the saga compensate a healthy mission
// after two attempts; as UNAVAILABLE it retries with backoff instead.
func storeUnavailable(err error) bool {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed):
		return true
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsMasterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsClusterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsNoReplicasError(err) || StoreRefusedCredentials(err)
}

// StoreRefusedCredentials reports whether err is Redis refusing a
// connection's credentials: NOAUTH, WRONGPASS, or Redis 7's protocol error
// for a large command on a connection that has not authenticated. A
// password rotated in Redis before the service's password file has it does
// that to the service's new connections only, until the file has it
// (docs/security.md): an outage to retry, which as INTERNAL failed missions
// in seconds (found by a review).
func StoreRefusedCredentials(err error) bool {
	return redis.HasErrorPrefix(err, "NOAUTH") || redis.HasErrorPrefix(err, "WRONGPASS") ||
		redis.HasErrorPrefix(err, "Protocol error: unauthenticated")
}

// deadlineSlack is how long before a server-side call's deadline a
// cancellation still counts as that deadline (DeadlinePassed).
const deadlineSlack = 100 * time.Millisecond

// DeadlinePassed reports whether ctx, a server-side call's context that
// ended, ended at its deadline rather than by its caller's cancel. Over
// gRPC a client's deadline reaches the server as a cancellation
// (RST_STREAM), just before the server's own copy of that deadline (the
// grpc-timeout header, counted from the request's arrival), so ctx.Err()
// alone says Canceled for most calls that timed out (found by a review).
func DeadlinePassed(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= deadlineSlack
}
