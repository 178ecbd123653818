package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// devOutput collects what a `slammesh dev` run in this process prints.
type devOutput struct {
	mu   sync.Mutex
	buf  strings.Builder
	more chan struct{} // signalled on each write
}

func (o *devOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	select {
	case o.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *devOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor returns the output up to and including the line holding marker,
// failing the test if it does not appear within two minutes.
func (o *devOutput) waitFor(t *testing.T, marker string) string {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		s := o.String()
		if i := strings.Index(s, marker); i >= 0 {
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				return s[:i+j+1]
			}
		}
		select {
		case <-o.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %q in the output of slammesh dev within 2m:\n%s", marker, s)
		}
	}
}

var consoleURLRe = regexp.MustCompile(`console (http://\S+/)`)

// consoleURL is the console's URL as the mesh printed it.
func (o *devOutput) consoleURL(t *testing.T) string {
	t.Helper()
	m := consoleURLRe.FindStringSubmatch(o.String())
	if m == nil {
		return ""
	}
	return m[1]
}

// startDev runs `slammesh dev args...` in this process until the test ends,
// and checks that it then stops cleanly.
func startDev(t *testing.T, args ...string) *devOutput {
	t.Helper()
	out := &devOutput{more: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"dev", "--grace", "2s"}, args...), func(string) string { return "" }, out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("slammesh dev: %v", err)
			} else if !strings.HasSuffix(out.String(), "slammesh dev: stopped\n") {
				t.Errorf("slammesh dev stopped without saying so:\n%s", out.String())
			}
		case <-time.After(time.Minute):
			t.Errorf("slammesh dev did not stop within a minute of its context")
		}
	})
	return out
}
