package mapping_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	"github.com/slammesh/slammesh/internal/barrier"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/saga"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// failExists makes every EXISTS of a pipeline fail while on, as a command
// sent to a Cluster node that is down would, and returns the first error of
// the pipeline as go-redis does (which may be a harmless redis.Nil before it).
type failExists struct{ on atomic.Bool }

func (h *failExists) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *failExists) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *failExists) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if !h.on.Load() {
			return err
		}
		for _, c := range cmds {
			if c, ok := c.(*redis.IntCmd); ok && strings.EqualFold(c.Name(), "exists") {
				c.SetVal(0) // no reply was read
				c.SetErr(errors.New("dial tcp: connection refused (injected)"))
			}
		}
		for _, c := range cmds {
			if c.Err() != nil {
				return c.Err()
			}
		}
		return nil
	}
}

// TestJanitorKeepsTheChargeOfAMapItCouldNotRead: a janitor pass whose read
// of a map failed must not take the map for gone and uncharge it, also when
// the pipeline's first error is the harmless redis.Nil of a mission whose
// record is gone (listed first: its map is smaller).
func TestJanitorKeepsTheChargeOfAMapItCouldNotRead(t *testing.T) {
	t.Parallel()
	hook := &failExists{}
	cfg := mapping.Config{CapacityCells: officeCells + 100}
	svc := service(cfg)
	svc.New = func(rdb redis.UniversalClient, b *barrier.Barrier, log *slog.Logger) (steptest.Registrar, error) {
		rdb.AddHook(hook)
		return mapping.NewServer(cfg, rdb, b, log), nil
	}
	se := steptest.Start(t, svc)
	e := &env{Env: se, client: mappingv1.NewMappingServiceClient(se.Conn)}
	ctx := steptest.Context(t)
	// A charge whose mission is gone entirely (no record, no map).
	if _, err := mapstore.Reserve(ctx, e.Redis, "gone", 10, officeCells+100, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := mapstore.Confirm(ctx, e.Redis, "gone"); err != nil {
		t.Fatal(err)
	}
	setState(t, e.Redis, "live", saga.Running)
	if err := allocate(t, e, "live"); err != nil {
		t.Fatal(err)
	}
	// The budget is full: this allocation runs a janitor pass first.
	hook.on.Store(true)
	setState(t, e.Redis, "next", saga.Running)
	_ = allocate(t, e, "next") // refused: the pass failed, the budget is full
	hook.on.Store(false)
	if !mapExists(t, e.Redis, "live") {
		t.Fatal("the live mission's map is gone")
	}
	if err := e.Redis.ZScore(ctx, "slammesh:{mapping}:maps", "live").Err(); err != nil {
		t.Errorf("the live mission's map, which exists, is no longer charged (ZSCORE: %v)", err)
	}
}
