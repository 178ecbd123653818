package merge_test

import (
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	mergev1 "github.com/slammesh/slammesh/gen/slammesh/merge/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/merge"
)

func TestMain(m *testing.M) { steptest.Main(m) }

// env is one merge server, as cmd/slammesh wires it, and its client.
type env struct {
	*steptest.Env
	client mergev1.MergeServiceClient
}

func start(t testing.TB, cfg merge.Config) *env {
	t.Helper()
	e := steptest.Start(t, steptest.Service{
		Name:                merge.ServiceName,
		Step:                merge.Step,
		ActionMethods:       merge.ActionMethods,
		CompensationMethods: merge.CompensationMethods,
		New: func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
			return merge.NewServer(cfg, rdb, b, log)
		},
	})
	return &env{Env: e, client: mergev1.NewMergeServiceClient(e.Conn)}
}

// mapHash returns the whole map hash, to compare before and after.
func mapHash(t *testing.T, rdb redis.UniversalClient, mission string) map[string]string {
	t.Helper()
	h, err := rdb.HGetAll(steptest.Context(t), mapstore.Key(mission)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
