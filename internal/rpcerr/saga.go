package rpcerr

import (
	"fmt"

	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/progress"
)

// MaxIDLen bounds mission and saga ids. They are embedded in every Redis key
// of a mission, so they must stay short and must not contain the braces of a
// Redis Cluster hash tag.
const MaxIDLen = 128

// CheckSaga validates the SagaContext of a step or compensation request for
// the service step named step: the context must be present, mission_id and
// saga_id must be ids (see CheckID), saga.step must name this service's
// step, because the barrier and the events are keyed by it and a mismatch
// means a misrouted call, and saga.progress_stream must be empty or the
// mission's own stream (progress.MissionStream), because the step service
// appends events to it: any other value would let a caller make the service
// write to an arbitrary Redis key. It returns an INVALID_FIELD status or nil.
func CheckSaga(sc *typesv1.SagaContext, step string) error {
	if sc == nil {
		return InvalidArgument("saga", "required")
	}
	if err := CheckID("saga.mission_id", sc.GetMissionId()); err != nil {
		return err
	}
	if err := CheckID("saga.saga_id", sc.GetSagaId()); err != nil {
		return err
	}
	if sc.GetStep() != step {
		return InvalidArgument("saga.step", fmt.Sprintf("must be %s, not %.64q", step, sc.GetStep()))
	}
	if ps := sc.GetProgressStream(); ps != "" && ps != progress.MissionStream(sc.GetMissionId()) {
		return InvalidArgument("saga.progress_stream", fmt.Sprintf("must be empty or %s, not %.64q", progress.MissionStream(sc.GetMissionId()), ps))
	}
	return nil
}

// CheckID validates an identifier that ends up in Redis keys: 1..MaxIDLen
// characters of [A-Za-z0-9_.:-]. It returns an INVALID_FIELD status naming
// field, or nil.
func CheckID(field, id string) error {
	switch {
	case id == "":
		return InvalidArgument(field, "required")
	case len(id) > MaxIDLen:
		return InvalidArgument(field, fmt.Sprintf("longer than %d characters", MaxIDLen))
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return InvalidArgument(field, "may contain only letters, digits and _ . : -")
		}
	}
	return nil
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-'
}
