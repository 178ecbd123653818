package pipepool_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/slammesh/slammesh/internal/pipepool"
	"github.com/slammesh/slammesh/internal/redistest"
)

func TestPutPipelineComesBackEmpty(t *testing.T) {
	rdb := redistest.Start(t).Universal(t)
	pool := pipepool.New(rdb)
	ctx := t.Context()

	sent := pool.Get()
	set := sent.Set(ctx, "{p}:a", "1", 0)
	get := sent.Get(ctx, "{p}:a")
	if _, err := sent.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	pool.Put(sent)

	recorded := pool.Get()
	recorded.Set(ctx, "{p}:b", "never sent", 0)
	pool.Put(recorded)

	for range 4 {
		p := pool.Get()
		if n := p.Len(); n != 0 {
			t.Fatalf("a pipeline from the pool holds %d commands, want 0", n)
		}
		p.Incr(ctx, "{p}:c")
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		pool.Put(p)
	}
	// The commands of a pipeline put back keep their replies.
	if set.Val() != "OK" || get.Val() != "1" {
		t.Errorf("replies after Put: SET %q, GET %q; want OK, 1", set.Val(), get.Val())
	}
	if n, err := rdb.Exists(ctx, "{p}:b").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS of the discarded command's key = %d, %v; want 0", n, err)
	}
	if c, err := rdb.Get(ctx, "{p}:c").Int(); err != nil || c != 4 {
		t.Errorf("counter = %d, %v; want 4", c, err)
	}
}

// Concurrent users each see only their own commands (run with -race).
func TestConcurrentUsersKeepTheirOwnCommands(t *testing.T) {
	rdb := redistest.Start(t).Universal(t)
	pool := pipepool.New(rdb)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("{p}:w%d", w)
			for i := 1; i <= 50; i++ {
				p := pool.Get()
				incr := p.Incr(ctx, key)
				cmds, err := p.Exec(ctx)
				pool.Put(p)
				if err != nil || len(cmds) != 1 || incr.Val() != int64(i) {
					errs <- fmt.Errorf("worker %d round %d: %d commands, INCR = %d, %v; want 1, %d", w, i, len(cmds), incr.Val(), err, i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
