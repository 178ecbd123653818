package match_test

import (
	"testing"

	"go.uber.org/goleak"
)

// LocalizeAll runs its agents on worker goroutines: none may outlive a call.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
