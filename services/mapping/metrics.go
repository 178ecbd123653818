package mapping

import (
	"context"
	"fmt"
	"time"

	"github.com/slammesh/slammesh/internal/mapstore"
	"go.opentelemetry.io/otel/metric"
)

// capacityReadTimeout bounds the Redis read behind one scrape of the
// capacity gauges, so a slow Redis slows /metrics down, never hangs it.
const capacityReadTimeout = time.Second

// RegisterMetrics exports the capacity budget as two gauges, read at each
// scrape: slammesh.mapping.capacity.used (cells held by the maps of missions
// in flight — finished missions' maps count against the retained-maps budget
// instead — from the shared Redis counters, so every replica reports the
// same value)
// and slammesh.mapping.capacity.limit (this service's budget). In
// Prometheus they are slammesh_mapping_capacity_used and
// slammesh_mapping_capacity_limit; their ratio feeds the "capacity
// near full" alert (deploy/observability).
func (s *Server) RegisterMetrics(m metric.Meter) error {
	used, err := m.Int64ObservableGauge("slammesh.mapping.capacity.used",
		metric.WithDescription("Map cells held by all missions' maps of missions in flight (the shared capacity counters)."), metric.WithUnit("{cell}"))
	if err != nil {
		return fmt.Errorf("mapping metrics: %w", err)
	}
	limit, err := m.Int64ObservableGauge("slammesh.mapping.capacity.limit",
		metric.WithDescription("Map cells all missions may hold at once (--capacity-cells)."), metric.WithUnit("{cell}"))
	if err != nil {
		return fmt.Errorf("mapping metrics: %w", err)
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(limit, int64(s.cfg.CapacityCells))
		ctx, cancel := context.WithTimeout(ctx, capacityReadTimeout)
		defer cancel()
		u, err := mapstore.ReadUsage(ctx, s.rdb)
		if err != nil {
			// No sample beats a wrong one: the gauge is absent from this
			// scrape, which the alert rules treat as unknown.
			return nil
		}
		o.ObserveInt64(used, u.InFlight())
		return nil
	}, used, limit)
	if err != nil {
		return fmt.Errorf("mapping metrics: %w", err)
	}
	return nil
}
