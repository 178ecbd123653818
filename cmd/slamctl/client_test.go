package main

import (
	"errors"
	"testing"
)

func TestTokenIsNeverSentInPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	if _, err := dial(global{addr: "10.1.2.3:50051", token: "secret-token"}); !errors.Is(err, errUsage) {
		t.Fatalf("plaintext token to a remote address: got %v, want a usage error", err)
	}
	c, err := dial(global{addr: "localhost:50051", token: "secret-token"})
	if err != nil {
		t.Fatalf("token to loopback: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
