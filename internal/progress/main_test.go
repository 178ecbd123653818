package progress_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Follow and Consumer.Run are driven from goroutines in these tests; goleak
// proves none of them outlives its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
