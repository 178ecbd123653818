package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/redistest"
	"github.com/slammesh/slammesh/internal/telemetry"
)

// pipelines counts the pipelines a client sends, but for the handshake of a
// new connection (HELLO, CLIENT SETINFO), and keeps the largest's length.
type pipelines struct{ n, largest atomic.Int64 }

func (*pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if n := cmds[0].Name(); n != "hello" && n != "client" {
			p.n.Add(1)
			for {
				l := p.largest.Load()
				if int64(len(cmds)) <= l || p.largest.CompareAndSwap(l, int64(len(cmds))) {
					break
				}
			}
		}
		return next(ctx, cmds)
	}
}

// busySrc is a script that keeps Redis (and so the batch carrying it) busy
// for ARGV[1] milliseconds.
const busySrc = `
local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]) * 1000
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop
return 1
`

// setup returns a group on a fresh Redis, with the counter of the
// client's pipelines.
func setup(t *testing.T, opts Options) (*Group, redis.UniversalClient, *pipelines) {
	t.Helper()
	rdb := redistest.StartServer(t).Client(t)
	count := &pipelines{}
	rdb.AddHook(count)
	return New(rdb, opts), rdb, count
}

// holdBatch starts a call that keeps the group's batch in flight for d and
// returns a channel closed when it returned.
func holdBatch(t *testing.T, g *Group, d time.Duration) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	cmd := redis.NewCmd(context.Background(), "eval", busySrc, 0, d.Milliseconds())
	go func() {
		defer close(done)
		if err := g.Exec(context.Background(), []redis.Cmder{cmd}); err != nil {
			t.Errorf("holding call: %v", err)
		}
	}()
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.busy
	})
	return done
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// startsAlone checks that a call just made goes alone: its pipeline (the
// client's second) starts while the batch held is in flight, and the queue
// keeps the want calls it had.
func startsAlone(t *testing.T, g *Group, count *pipelines, held <-chan struct{}, want int) {
	t.Helper()
	waitFor(t, func() bool { return count.n.Load() == 2 })
	select {
	case <-held:
		t.Fatal("the batch returned before the call's own pipeline started")
	default:
	}
	if n := queued(g); n != want {
		t.Errorf("%d calls queued, want %d: the call queued", n, want)
	}
}

// queued is the number of calls waiting in g's queue.
func queued(g *Group) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

func TestCallsQueuedBehindABatchGoInOne(t *testing.T) {
	g, _, count := setup(t, Options{})
	held := holdBatch(t, g, 300*time.Millisecond)

	const n = 50
	var wg sync.WaitGroup
	replies := make([][]redis.Cmder, n)
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		ctx := context.Background()
		replies[i] = []redis.Cmder{
			redis.NewStatusCmd(ctx, "set", key, i),
			redis.NewIntCmd(ctx, "incrby", key, 1000),
			redis.NewStringCmd(ctx, "get", key),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Exec(ctx, replies[i]); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		}()
	}
	waitFor(t, func() bool { return queued(g) == n })
	<-held
	wg.Wait()

	if got := count.n.Load(); got != 2 {
		t.Errorf("%d pipelines, want 2: the holding call's and one for the %d queued calls", got, n)
	}
	for i, cmds := range replies {
		// Each caller's commands ran in its order and kept their replies.
		if v := cmds[1].(*redis.IntCmd).Val(); v != int64(i+1000) {
			t.Errorf("call %d: incrby answered %d, want %d", i, v, i+1000)
		}
		if v := cmds[2].(*redis.StringCmd).Val(); v != fmt.Sprint(i+1000) {
			t.Errorf("call %d: get answered %q, want %d", i, v, i+1000)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy || len(g.queue) > 0 {
		t.Errorf("group left busy=%v with %d queued calls", g.busy, len(g.queue))
	}
}

func TestACallAloneGoesAtOnce(t *testing.T) {
	g, rdb, count := setup(t, Options{})
	ctx := context.Background()
	for i := range 3 {
		cmd := redis.NewIntCmd(ctx, "incr", "n")
		if err := g.Exec(ctx, []redis.Cmder{cmd}); err != nil {
			t.Fatal(err)
		}
		if cmd.Val() != int64(i+1) {
			t.Fatalf("incr answered %d, want %d", cmd.Val(), i+1)
		}
	}
	if got := count.n.Load(); got != 3 {
		t.Errorf("%d pipelines for 3 calls one after another, want 3", got)
	}
	if v, _ := rdb.Get(ctx, "n").Int(); v != 3 {
		t.Errorf("n = %d, want 3", v)
	}
}

func TestAnErrorStaysWithItsCommand(t *testing.T) {
	g, rdb, _ := setup(t, Options{})
	ctx := context.Background()
	if err := rdb.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	held := holdBatch(t, g, 200*time.Millisecond)
	bad := []redis.Cmder{redis.NewIntCmd(ctx, "incr", "h"), redis.NewStatusCmd(ctx, "set", "after-bad", "1")}
	good := []redis.Cmder{redis.NewStatusCmd(ctx, "set", "good", "1")}
	errs := make(chan error, 2)
	go func() { errs <- g.Exec(ctx, bad) }()
	waitFor(t, func() bool { return queued(g) == 1 })
	go func() { errs <- g.Exec(ctx, good) }()
	waitFor(t, func() bool { return queued(g) == 2 })
	<-held
	var failed, ok int
	for range 2 {
		if err := <-errs; err == nil {
			ok++
		} else if strings.Contains(err.Error(), "WRONGTYPE") {
			failed++
		} else {
			t.Errorf("unexpected error %v", err)
		}
	}
	if failed != 1 || ok != 1 {
		t.Errorf("%d calls failed with WRONGTYPE and %d succeeded, want 1 and 1", failed, ok)
	}
	if bad[1].Err() != nil || good[0].Err() != nil {
		t.Errorf("commands beside the failing one failed: %v, %v", bad[1].Err(), good[0].Err())
	}
	if n, _ := rdb.Exists(ctx, "after-bad", "good").Result(); n != 2 {
		t.Errorf("%d of the 2 keys written beside the failing command exist", n)
	}
}

func TestACallCancelledInTheQueueLeavesIt(t *testing.T) {
	g, rdb, _ := setup(t, Options{})
	held := holdBatch(t, g, 300*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	gone := redis.NewStatusCmd(ctx, "set", "cancelled", "1")
	errs := make(chan error, 1)
	go func() { errs <- g.Exec(ctx, []redis.Cmder{gone}) }()
	waitFor(t, func() bool { return queued(g) == 1 })
	stay := redis.NewStatusCmd(context.Background(), "set", "stayed", "1")
	stayed := make(chan error, 1)
	go func() { stayed <- g.Exec(context.Background(), []redis.Cmder{stay}) }()
	waitFor(t, func() bool { return queued(g) == 2 })

	cancel()
	// It returns before the batch in flight does.
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) || !errors.Is(gone.Err(), context.Canceled) {
			t.Errorf("cancelled call: Exec %v, command %v; want context.Canceled", err, gone.Err())
		}
	case <-held:
		t.Fatal("the cancelled call waited for the batch in flight")
	}
	<-held
	if err := <-stayed; err != nil {
		t.Fatalf("the call behind the cancelled one: %v", err)
	}
	ctxb := context.Background()
	if n, _ := rdb.Exists(ctxb, "cancelled").Result(); n != 0 {
		t.Error("the cancelled call's command ran")
	}
	if n, _ := rdb.Exists(ctxb, "stayed").Result(); n != 1 {
		t.Error("the call queued behind the cancelled one did not run")
	}
}

func TestALargeCallDoesNotWaitForTheBatch(t *testing.T) {
	g, rdb, count := setup(t, Options{MaxBytes: 1024})
	held := holdBatch(t, g, 500*time.Millisecond)
	ctx := context.Background()
	big := redis.NewStatusCmd(ctx, "set", "big", strings.Repeat("x", 2048))
	done := make(chan error, 1)
	go func() { done <- g.Exec(ctx, []redis.Cmder{big}) }()
	startsAlone(t, g, count, held, 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-held
	if n, _ := rdb.StrLen(ctx, "big").Result(); n != 2048 {
		t.Errorf("big holds %d bytes, want 2048", n)
	}
}

func TestEachCallerIsSpannedInItsOwnTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hook := telemetry.RedisTracing(tp)
	rdb := redistest.StartServer(t).Client(t)
	// As a node installs it: on the client (the batch) and for the callers.
	rdb.AddHook(hook)
	g := New(rdb, Options{Hooks: []redis.Hook{hook}, MaxBytes: 1024})
	held := holdBatch(t, g, 300*time.Millisecond)

	const n = 8 // the last one too large to be batched
	tracer := tp.Tracer("test")
	roots := make([]trace.SpanContext, n)
	var wg sync.WaitGroup
	for i := range n {
		ctx, span := tracer.Start(context.Background(), fmt.Sprintf("mission %d", i))
		roots[i] = span.SpanContext()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer span.End()
			cmd := redis.NewIntCmd(ctx, "incr", fmt.Sprintf("m%d", i))
			if i == n-1 {
				cmd = redis.NewIntCmd(ctx, "incr", strings.Repeat("m", 2048))
			}
			if err := g.Exec(ctx, []redis.Cmder{cmd}); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		}()
	}
	waitFor(t, func() bool { return queued(g) == n-1 })
	<-held
	wg.Wait()

	perTrace := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "redis") {
			perTrace[s.SpanContext().TraceID()] = append(perTrace[s.SpanContext().TraceID()], s)
		}
	}
	for i, root := range roots {
		spans := perTrace[root.TraceID()]
		if len(spans) != 1 {
			t.Errorf("mission %d: %d redis spans, want 1", i, len(spans))
			continue
		}
		s := spans[0]
		if s.Name() != "redis.pipeline incr" || s.Parent().SpanID() != root.SpanID() {
			t.Errorf("mission %d: span %q under %v, want \"redis.pipeline incr\" under the mission's span", i, s.Name(), s.Parent().SpanID())
		}
	}
	if len(perTrace) != n {
		t.Errorf("redis spans in %d traces, want the %d missions' only (the batch opens none)", len(perTrace), n)
	}
}

// cancelOn cancels a context when the client sends a pipeline holding a
// command on key.
type cancelOn struct {
	key    string
	cancel context.CancelFunc
}

func (*cancelOn) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*cancelOn) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c *cancelOn) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if len(cmd.Args()) > 1 && cmd.Args()[1] == c.key {
				c.cancel()
			}
		}
		return next(ctx, cmds)
	}
}

func TestTheLeadersCancellationFailsNoOther(t *testing.T) {
	rdb := redistest.StartServer(t).Client(t)
	leaderCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The batch that carries the leader's command is sent after the
	// leader's context ended.
	rdb.AddHook(&cancelOn{key: "leader", cancel: cancel})
	g := New(rdb, Options{})
	held := holdBatch(t, g, 200*time.Millisecond)
	leader := redis.NewStatusCmd(leaderCtx, "set", "leader", "1")
	other := redis.NewStatusCmd(context.Background(), "set", "other", "1")
	errs := make(chan error, 2)
	go func() { errs <- g.Exec(leaderCtx, []redis.Cmder{leader}) }()
	waitFor(t, func() bool { return queued(g) == 1 })
	go func() { errs <- g.Exec(context.Background(), []redis.Cmder{other}) }()
	waitFor(t, func() bool { return queued(g) == 2 })
	<-held
	<-errs
	<-errs
	if other.Err() != nil {
		t.Errorf("the other call's command failed with the leader's cancellation: %v", other.Err())
	}
	if leaderCtx.Err() == nil {
		t.Fatal("the leader's context was not cancelled: the test did not test")
	}
}

func TestABatchKeepsItsBounds(t *testing.T) {
	g, _, count := setup(t, Options{MaxBatch: 30})
	held := holdBatch(t, g, 200*time.Millisecond)
	const calls = 40
	var wg sync.WaitGroup
	for i := range calls {
		ctx := context.Background()
		cmds := []redis.Cmder{
			redis.NewIntCmd(ctx, "incr", fmt.Sprintf("k%d", i)),
			redis.NewIntCmd(ctx, "incr", fmt.Sprintf("k%d", i)),
			redis.NewIntCmd(ctx, "incr", fmt.Sprintf("k%d", i)),
		}
		wg.Go(func() {
			if err := g.Exec(ctx, cmds); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
			if v := cmds[2].(*redis.IntCmd).Val(); v != 3 {
				t.Errorf("call %d: third incr answered %d, want 3", i, v)
			}
		})
	}
	waitFor(t, func() bool { return queued(g) == calls })
	<-held
	wg.Wait()
	// The holding call, then batches of 10 calls' 30 commands.
	if got, largest := count.n.Load(), count.largest.Load(); got != 1+calls/10 || largest != 30 {
		t.Errorf("%d pipelines, the largest of %d commands; want %d, of 30", got, largest, 1+calls/10)
	}
}

func TestACallGoRedisMightNotWriteGoesAlone(t *testing.T) {
	g, rdb, count := setup(t, Options{})
	held := holdBatch(t, g, 300*time.Millisecond)
	ctx := context.Background()
	good := redis.NewStatusCmd(ctx, "set", "good", "1")
	done := make(chan error, 1)
	go func() { done <- g.Exec(ctx, []redis.Cmder{good}) }()
	waitFor(t, func() bool { return queued(g) == 1 })
	// go-redis fails a whole pipeline it cannot write: in a batch, this
	// call would fail the others'.
	odd := redis.NewStatusCmd(ctx, "set", "odd", struct{ X int }{1})
	oddDone := make(chan error, 1)
	go func() { oddDone <- g.Exec(ctx, []redis.Cmder{odd}) }()
	startsAlone(t, g, count, held, 1)
	if err := <-oddDone; err == nil {
		t.Error("a struct argument was written")
	}
	<-held
	if err := <-done; err != nil {
		t.Errorf("the call queued beside it: %v", err)
	}
	if n, _ := rdb.Exists(ctx, "good").Result(); n != 1 {
		t.Error("the call queued beside it did not run")
	}
}

// A string pointer (how progress entries carry their values) is written as
// its string, so a call holding one waits for the batch like any other.
func TestACallWithStringPointersIsBatched(t *testing.T) {
	g, rdb, count := setup(t, Options{})
	held := holdBatch(t, g, 300*time.Millisecond)
	ctx := context.Background()
	v := "pointed"
	set := redis.NewStatusCmd(ctx, "set", "ptr", &v)
	done := make(chan error, 1)
	go func() { done <- g.Exec(ctx, []redis.Cmder{set}) }()
	waitFor(t, func() bool { return queued(g) == 1 })
	<-held
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := count.n.Load(); got != 2 {
		t.Errorf("%d pipelines, want 2: the holding call's and the batch", got)
	}
	if got, err := rdb.Get(ctx, "ptr").Result(); err != nil || got != v {
		t.Errorf("GET ptr = %q, %v; want %q", got, err, v)
	}
}

func TestScriptsRunThroughTheGroup(t *testing.T) {
	g, _, count := setup(t, Options{})
	script := redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	held := holdBatch(t, g, 200*time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Not loaded yet: EVALSHA answers NOSCRIPT, and Run falls
			// back on EVAL, through the group too.
			v, err := script.Run(context.Background(), g.Scripter(), []string{fmt.Sprintf("s%d", i)}, i+1).Int()
			if err != nil || v != i+1 {
				t.Errorf("script %d = %d, %v; want %d", i, v, err, i+1)
			}
		})
	}
	waitFor(t, func() bool { return queued(g) == n })
	<-held
	wg.Wait()
	// The holding call, the EVALSHAs in one batch of n, then the EVALs,
	// also pipelines of the group: batched as far as the n callers, each
	// woken by its NOSCRIPT, reach the group while a batch is in flight
	// (n alone on a loaded machine).
	got, largest := count.n.Load(), count.largest.Load()
	if got < 3 || got > 2+n || largest != n {
		t.Errorf("%d pipelines, the largest of %d commands; want 3 to %d, the largest of %d", got, largest, 2+n, n)
	}
}
