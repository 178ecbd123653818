package orchestrator_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Spans stay in process (the tests record them) whatever the
	// developer's shell exports; Setup reads this before any test runs.
	if err := os.Setenv("OTEL_TRACES_EXPORTER", "none"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}
