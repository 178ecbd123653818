package stepserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/stepserver"
)

// With a firehose, a handler committing through stepserver.Commit gets its
// step.started and step.completed written by the barrier's script (after
// any step.progress), also when the commit is answered as a duplicate; the
// firehose gets their copies; a handler that does not commit gets them from
// the interceptor, as without a firehose.
func TestCommitCarriesTheStepEvents(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	fh := progress.NewFirehose(rdb, progress.FirehoseOptions{Logger: slog.New(slog.DiscardHandler)})
	defer func() { _ = fh.Close(context.Background()) }()
	b := barrier.New(rdb)
	ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, nil, false, stepserver.WithFirehose(fh))

	types := func(mission string) []progress.Type {
		t.Helper()
		events, err := progress.Range(ctx, rdb, progress.MissionStream(mission))
		if err != nil {
			t.Fatal(err)
		}
		var out []progress.Type
		for _, ev := range events {
			out = append(out, ev.Type)
		}
		return out
	}
	commits := 0
	call := chain(ics, actionMethod, func(ctx context.Context, req any) (any, error) {
		sc := req.(*mappingv1.AllocateMapRequest).GetSaga()
		if sc.GetMissionId() == "quiet" {
			return &mappingv1.AllocateMapResponse{}, nil // no commit
		}
		progress.ReporterFrom(ctx).Progress(ctx, 0.5, "half")
		tx := b.NewTx()
		tx.Write(func(p redis.Pipeliner) { p.Set(ctx, "slammesh:{"+sc.GetMissionId()+"}:business", "x", 0) })
		if _, _, err := stepserver.Commit(ctx, b, stepserver.BarrierID(sc, "s"), tx, []byte("r")); err != nil {
			return nil, err
		}
		commits++
		return &mappingv1.AllocateMapResponse{}, nil
	})
	req := func(mission string) *mappingv1.AllocateMapRequest {
		return &mappingv1.AllocateMapRequest{Saga: &typesv1.SagaContext{MissionId: mission, SagaId: "saga-1", Step: "s", Attempt: 1}}
	}
	for range 2 { // the second call is a duplicate
		if _, err := call(ctx, req("m")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := call(ctx, req("quiet")); err != nil {
		t.Fatal(err)
	}
	once := []progress.Type{progress.StepStarted, progress.StepProgress, progress.StepCompleted}
	if got, want := types("m"), slices.Concat(once, once); !slices.Equal(got, want) || commits != 2 {
		t.Errorf("events %v after %d commits, want %v", got, commits, want)
	}
	if got, want := types("quiet"), []progress.Type{progress.StepStarted, progress.StepCompleted}; !slices.Equal(got, want) {
		t.Errorf("events without a commit %v, want %v", got, want)
	}
	// Every event reaches the firehose, the in-script ones through fh.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := rdb.XLen(ctx, progress.GlobalStream).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("firehose holds %d events, want 8", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A long step's progress reaches the mission stream while it runs (within
// ProgressDelay), after step.started.
func TestProgressIsWrittenWhileTheStepRuns(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, nil, false)
	stream := progress.MissionStream("m")
	call := chain(ics, actionMethod, func(ctx context.Context, _ any) (any, error) {
		progress.ReporterFrom(ctx).Progress(ctx, 0.5, "half")
		for deadline := time.Now().Add(30 * time.Second); rdb.XLen(ctx, stream).Val() < 2; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return nil, errors.New("step.progress not written while the step runs")
			}
		}
		return &mappingv1.AllocateMapResponse{}, nil
	})
	sc := &typesv1.SagaContext{MissionId: "m", SagaId: "saga-1", Step: "s", Attempt: 1}
	if _, err := call(ctx, &mappingv1.AllocateMapRequest{Saga: sc}); err != nil {
		t.Fatal(err)
	}
	wantTypes(t, rdb, stream, progress.StepStarted, progress.StepProgress, progress.StepCompleted)
}

// With a longer delay, progress waits for the call's end and goes out with
// it.
func TestProgressWaitsForItsDelay(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	ctx := t.Context()
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, nil, false, stepserver.WithProgressDelay(time.Hour))
	stream := progress.MissionStream("m")
	call := chain(ics, actionMethod, func(ctx context.Context, _ any) (any, error) {
		progress.ReporterFrom(ctx).Progress(ctx, 0.5, "half")
		time.Sleep(10 * stepserver.ProgressDelay)
		if n := rdb.XLen(ctx, stream).Val(); n != 0 {
			return nil, fmt.Errorf("%d events written before the call's end, want 0", n)
		}
		return &mappingv1.AllocateMapResponse{}, nil
	})
	sc := &typesv1.SagaContext{MissionId: "m", SagaId: "saga-1", Step: "s", Attempt: 1}
	if _, err := call(ctx, &mappingv1.AllocateMapRequest{Saga: sc}); err != nil {
		t.Fatal(err)
	}
	wantTypes(t, rdb, stream, progress.StepStarted, progress.StepProgress, progress.StepCompleted)
}

// wantTypes checks the types of the events on stream, in order.
func wantTypes(t *testing.T, rdb redis.UniversalClient, stream string, want ...progress.Type) {
	t.Helper()
	events, err := progress.Range(t.Context(), rdb, stream)
	if err != nil {
		t.Fatal(err)
	}
	var got []progress.Type
	for _, ev := range events {
		got = append(got, ev.Type)
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// A call its caller abandons (a cancel, or an orchestrator killed mid-call)
// ends in a step.failed that says so, rather than a bare "context
// canceled" that reads as the step's own failure (found by a review).
func TestCallerLeavingSaysSo(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, nil, false)
	ctx, cancel := context.WithCancel(t.Context())
	call := chain(ics, actionMethod, func(ctx context.Context, _ any) (any, error) {
		cancel() // the caller leaves while the step works
		<-ctx.Done()
		return nil, ctx.Err()
	})
	sc := &typesv1.SagaContext{MissionId: "left", SagaId: "saga-1", Step: "s", Attempt: 1}
	if _, err := call(ctx, &mappingv1.AllocateMapRequest{Saga: sc}); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v, want context.Canceled", err)
	}
	events, err := progress.Range(t.Context(), rdb, progress.MissionStream("left"))
	if err != nil || len(events) != 2 {
		t.Fatalf("events %v (%v), want step.started and step.failed", events, err)
	}
	if e := events[1]; e.Type != progress.StepFailed || e.ErrorCode != "CANCELLED" || !strings.Contains(e.Message, "caller cancelled the call or went away") {
		t.Errorf("last event %s %s %q, want step.failed CANCELLED naming the caller", e.Type, e.ErrorCode, e.Message)
	}
}

// A call that ends at its deadline says that (gRPC may deliver the
// deadline as a cancel: rpcerr.DeadlinePassed), not that its caller left.
func TestDeadlineSaysSo(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Universal(t)
	pub := progress.NewPublisher(rdb, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	ics := stepserver.Interceptors(pub, "svc", []string{actionMethod}, nil, false)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	call := chain(ics, actionMethod, func(ctx context.Context, _ any) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	sc := &typesv1.SagaContext{MissionId: "late", SagaId: "saga-1", Step: "s", Attempt: 1}
	_, _ = call(ctx, &mappingv1.AllocateMapRequest{Saga: sc})
	events, err := progress.Range(t.Context(), rdb, progress.MissionStream("late"))
	if err != nil || len(events) != 2 {
		t.Fatalf("events %v (%v), want step.started and step.failed", events, err)
	}
	if e := events[1]; e.Type != progress.StepFailed || !strings.Contains(e.Message, "the attempt's deadline passed") {
		t.Errorf("last event %s %q, want step.failed naming the deadline", e.Type, e.Message)
	}
}
