package redistest

import "testing"

func TestStartServesCommands(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	c := srv.Client(t)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(t.Context(), "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
}

func TestServersAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share %s", a.Addr)
	}
	if err := a.Client(t).Set(t.Context(), "only-a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := b.Client(t).Exists(t.Context(), "only-a").Result()
	if err != nil || n != 0 {
		t.Fatalf("key leaked across servers: exists=%d err=%v", n, err)
	}
}
