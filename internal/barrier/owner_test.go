package barrier

import (
	"errors"
	"testing"
	"time"

	"github.com/slammesh/slammesh/internal/redistest"
)

func ownerKey(key string) string { return "slammesh:{" + key + "}:saga" }

// With an owner, a call for a mission whose owner key is gone (expired,
// deleted, never created) writes nothing at all: no mark, no business key.
func TestOwnerGoneRefusesEveryCall(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	s.b = New(s.rdb, WithOwner(ownerKey))
	ctx := t.Context()
	id := ID{Key: "m", SagaID: "saga-1", Step: "allocate"}
	if _, _, err := s.action(ctx, id, "r"); !errors.Is(err, ErrOwnerGone) {
		t.Errorf("action without owner: %v, want ErrOwnerGone", err)
	}
	var got []byte
	if _, err := s.compensate(ctx, id, &got); !errors.Is(err, ErrOwnerGone) {
		t.Errorf("compensation without owner: %v, want ErrOwnerGone", err)
	}
	if keys := redistest.Keys(t, s.rdb, "*"); len(keys) != 0 {
		t.Errorf("refused calls left keys %v", keys)
	}
	if n := s.calls.Load(); n != 0 {
		t.Errorf("callback ran %d times", n)
	}
	// With its owner, the mission's calls go through as without the option.
	if err := s.rdb.HSet(ctx, ownerKey("m"), "state", "running").Err(); err != nil {
		t.Fatal(err)
	}
	if _, out, err := s.action(ctx, id, "r"); err != nil || out != Applied {
		t.Fatalf("action with owner: %v, %v", out, err)
	}
	if out, err := s.compensate(ctx, id, &got); err != nil || out != Applied || string(got) != "r" {
		t.Fatalf("compensation with owner: %v, %v, result %q", out, err, got)
	}
	// The owner ended (its keys got their retention): a step the saga never
	// reached is refused, and creates no mark.
	if err := s.rdb.PExpire(ctx, ownerKey("m"), time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	other := ID{Key: "m", SagaID: "saga-1", Step: "never-reached"}
	if _, _, err := s.action(ctx, other, "r"); !errors.Is(err, ErrOwnerGone) {
		t.Errorf("action after the end: %v, want ErrOwnerGone", err)
	}
	if n := s.rdb.Exists(ctx, Key("m", "never-reached")).Val(); n != 0 {
		t.Error("action after the end created a barrier mark")
	}
	// The owner deleted after the end: a hanging call writes nothing again.
	s.rdb.Del(ctx, ownerKey("m"), Key("m", "allocate"), counterKey("m"), EffectsKey("m"))
	if _, _, err := s.action(ctx, id, "r"); !errors.Is(err, ErrOwnerGone) {
		t.Errorf("hanging action after deletion: %v, want ErrOwnerGone", err)
	}
	if keys := redistest.Keys(t, s.rdb, "*"); len(keys) != 0 {
		t.Errorf("hanging action left keys %v", keys)
	}
}

// With an owner that names its saga, a call of another saga of the mission
// (one deleted, whose mission was started again under its id) is refused
// with ErrSagaMismatch and writes nothing, even for a step the owner's saga
// has not reached.
func TestOwnerOfAnotherSagaRefusesTheCall(t *testing.T) {
	t.Parallel()
	s := newBusiness(t)
	s.b = New(s.rdb, WithOwner(ownerKey))
	ctx := t.Context()
	if err := s.rdb.HSet(ctx, ownerKey("m"), "state", "running", "saga_id", "saga-2").Err(); err != nil {
		t.Fatal(err)
	}
	late := ID{Key: "m", SagaID: "saga-1", Step: "allocate"}
	if _, _, err := s.action(ctx, late, "r"); !errors.Is(err, ErrSagaMismatch) {
		t.Errorf("action of the deleted saga: %v, want ErrSagaMismatch", err)
	}
	var got []byte
	if _, err := s.compensate(ctx, late, &got); !errors.Is(err, ErrSagaMismatch) {
		t.Errorf("compensation of the deleted saga: %v, want ErrSagaMismatch", err)
	}
	if keys := redistest.Keys(t, s.rdb, "*"); len(keys) != 1 {
		t.Errorf("refused calls left keys %v; want the owner alone", keys)
	}
	if _, out, err := s.action(ctx, ID{Key: "m", SagaID: "saga-2", Step: "allocate"}, "r"); err != nil || out != Applied {
		t.Errorf("action of the owner's saga: %v, %v", out, err)
	}
}
