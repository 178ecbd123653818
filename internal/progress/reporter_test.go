package progress_test

import (
	"context"
	"testing"

	"github.com/slammesh/slammesh/internal/progress"
)

// recorder is a Reporter that remembers what it was told.
type recorder struct{ got []float64 }

func (r *recorder) Progress(_ context.Context, fraction float64, _ string) {
	r.got = append(r.got, fraction)
}

func TestReporterFrom(t *testing.T) {
	t.Parallel()
	t.Run("none installed", func(t *testing.T) {
		t.Parallel()
		r := progress.ReporterFrom(context.Background())
		if r == nil {
			t.Fatal("ReporterFrom returned nil")
		}
		r.Progress(context.Background(), 0.5, "discarded") // must not panic
	})
	t.Run("installed", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		ctx := progress.WithReporter(context.Background(), rec)
		progress.ReporterFrom(ctx).Progress(ctx, 0.25, "a quarter")
		if len(rec.got) != 1 || rec.got[0] != 0.25 {
			t.Fatalf("reporter saw %v, want [0.25]", rec.got)
		}
	})
	t.Run("nil installed", func(t *testing.T) {
		t.Parallel()
		ctx := progress.WithReporter(context.Background(), nil)
		if progress.ReporterFrom(ctx) == nil {
			t.Fatal("ReporterFrom returned nil for a nil Reporter")
		}
	})
}
