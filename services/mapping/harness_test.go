package mapping_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

func TestMain(m *testing.M) { steptest.Main(m) }

// service is the mapping service of cfg, for steptest.Start.
func service(cfg mapping.Config) steptest.Service {
	return steptest.Service{
		Name:                mapping.ServiceName,
		Step:                mapping.Step,
		ActionMethods:       mapping.ActionMethods,
		CompensationMethods: mapping.CompensationMethods,
		New: func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
			return mapping.NewServer(cfg, rdb, b, log), nil
		},
	}
}

// env is one mapping server, as cmd/slammesh wires it, and its client.
type env struct {
	*steptest.Env
	client mappingv1.MappingServiceClient
}

func start(t *testing.T, cfg mapping.Config) *env {
	t.Helper()
	e := steptest.Start(t, service(cfg))
	return &env{Env: e, client: mappingv1.NewMappingServiceClient(e.Conn)}
}

// office is the 20x15 m map of a default scenario: 400x300 cells.
func office() *typesv1.MapSpec {
	return &typesv1.MapSpec{WidthM: 20, HeightM: 15, Resolution: 0.05}
}

const officeCells = 400 * 300

// chargeOf is the capacity charge of the map e.Saga(m) allocates.
func chargeOf(e *env, m string) mapstore.Charge {
	return mapstore.Charge{MissionID: m, SagaID: e.Saga(m).GetSagaId()}
}

func capacityUsed(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	n, err := rdb.Get(steptest.Context(t), "slammesh:{mapping}:capacity").Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
