package steptest_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/slam/world"
	"github.com/slammesh/slammesh/internal/steptest"
)

// TestMain checks, through steptest.Main's goleak, that Start's server and
// connection are gone when the tests end.
func TestMain(m *testing.M) { steptest.Main(m) }

// noService registers nothing: the server still serves grpc.health.v1.
type noService struct{}

func (noService) Register(grpc.ServiceRegistrar) {}

func start(t *testing.T) *steptest.Env {
	t.Helper()
	return steptest.Start(t, steptest.Service{
		Name: "svc",
		Step: "s",
		New: func(redis.UniversalClient, *barrier.Barrier, *slog.Logger) (steptest.Registrar, error) {
			return noService{}, nil
		},
	})
}

func TestStartServes(t *testing.T) {
	t.Parallel()
	e := start(t)
	resp, err := healthpb.NewHealthClient(e.Conn).Check(steptest.Context(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", resp, err)
	}
	if sc := e.Saga("m-1"); sc.GetMissionId() != "m-1" || sc.GetSagaId() != "saga-m-1" || sc.GetStep() != "s" || sc.GetAttempt() != 1 {
		t.Errorf("Saga = %v", sc)
	}
}

func TestMissionState(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := steptest.Context(t)
	const m = "m-1"
	_, meta := steptest.SeedWorld(t, e.Redis, m, "map-1", world.Config{Seed: 1, Agents: 2})
	if got, err := mapstore.ReadMeta(ctx, e.Redis, m, "map-1"); err != nil || got != meta {
		t.Fatalf("seeded map meta = %+v, %v; want %+v", got, err, meta)
	}

	id := barrier.ID{Key: m, SagaID: "saga-1", Step: "s"}
	if _, _, err := e.Barrier.Action(ctx, id, func(ctx context.Context, tx *barrier.Tx) ([]byte, error) {
		tx.Write(func(p redis.Pipeliner) { p.Set(ctx, "slammesh:{"+m+"}:mine", "1", 0) })
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	pub := progress.NewPublisher(e.Redis, progress.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := pub.Publish(ctx,
		progress.Event{MissionID: m, Type: progress.StepStarted},
		progress.Event{MissionID: m, Type: progress.StepCompleted}); err != nil {
		t.Fatal(err)
	}

	keys := e.MissionKeys(t, m)
	slices.Sort(keys)
	if want := []string{mapstore.Key(m), "slammesh:{" + m + "}:mine"}; !slices.Equal(keys, want) {
		t.Errorf("MissionKeys = %v, want %v", keys, want)
	}
	if keys := e.MissionKeys(t, m, mapstore.Key(m)); !slices.Equal(keys, []string{"slammesh:{" + m + "}:mine"}) {
		t.Errorf("MissionKeys but the map = %v", keys)
	}
	if eff := e.Effects(t, m); len(eff) != 1 || eff["s:action"] != 1 {
		t.Errorf("Effects = %v, want one s:action", eff)
	}
	if n := len(e.Events(t, m)); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
	if done := e.EventsOf(t, m, progress.StepCompleted); len(done) != 1 || done[0].Type != progress.StepCompleted {
		t.Errorf("EventsOf(step.completed) = %+v", done)
	}
}
