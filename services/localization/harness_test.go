package localization_test

import (
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	localizationv1 "github.com/slammesh/slammesh/gen/slammesh/localization/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/localization"
)

func TestMain(m *testing.M) { steptest.Main(m) }

// env is one localization server, as cmd/slammesh wires it, and its client.
type env struct {
	*steptest.Env
	client localizationv1.LocalizationServiceClient
}

func start(t testing.TB, cfg localization.Config) *env {
	t.Helper()
	e := steptest.Start(t, steptest.Service{
		Name:                localization.ServiceName,
		Step:                localization.Step,
		ActionMethods:       localization.ActionMethods,
		CompensationMethods: localization.CompensationMethods,
		New: func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
			return localization.NewServer(cfg, rdb, b, log)
		},
	})
	return &env{Env: e, client: localizationv1.NewLocalizationServiceClient(e.Conn)}
}
