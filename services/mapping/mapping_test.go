package mapping_test

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	typesv1 "github.com/slammesh/slammesh/gen/slammesh/types/v1"
	"github.com/slammesh/slammesh/internal/mapstore"
	"github.com/slammesh/slammesh/internal/progress"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

func TestAllocateGetRelease(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-life"
	req := &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: &typesv1.MapSpec{OriginX: -2, OriginY: 1, WidthM: 20, HeightM: 15}}

	resp, err := e.client.AllocateMap(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := &typesv1.GridMeta{Resolution: 0.05, Width: 400, Height: 300, Origin: &typesv1.Pose2D{X: -2, Y: 1}}
	if resp.GetMapId() == "" || !proto.Equal(resp.GetMeta(), wantMeta) || resp.GetCells() != officeCells ||
		resp.GetRemainingCells() != mapping.DefaultCapacityCells-officeCells {
		t.Fatalf("AllocateMap = %v", resp)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity used = %d, want %d", got, officeCells)
	}

	// A retry after a lost reply: same answer, no second charge.
	again, err := e.client.AllocateMap(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again, resp) {
		t.Errorf("duplicate AllocateMap = %v, want %v", again, resp)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity after duplicate = %d, want %d", got, officeCells)
	}
	if got := e.Effects(t, m)["allocate_map:action"]; got != 1 {
		t.Errorf("allocate_map:action effects = %d, want 1", got)
	}

	got, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m, IncludePng: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMapId() != resp.GetMapId() || got.GetVersion() != 1 || got.GetCurrentVersion() != 1 ||
		!proto.Equal(got.GetGrid().GetMeta(), wantMeta) || len(got.GetGrid().GetData()) != officeCells {
		t.Fatalf("GetMap = map %s v%d/%d, %d cells", got.GetMapId(), got.GetVersion(), got.GetCurrentVersion(), len(got.GetGrid().GetData()))
	}
	if !bytes.Equal(got.GetGrid().GetData(), bytes.Repeat([]byte{0xff}, officeCells)) {
		t.Error("version 1 is not all unknown (-1)")
	}
	img, err := png.Decode(bytes.NewReader(got.GetPng()))
	if err != nil {
		t.Fatalf("png: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 300 {
		t.Errorf("png is %dx%d, want 400x300", b.Dx(), b.Dy())
	}

	// The merge service adds versions to the same hash; release removes them all.
	if err := e.Redis.HSet(ctx, mapstore.Key(m), "v2", bytes.Repeat([]byte{0}, officeCells), "current", 2).Err(); err != nil {
		t.Fatal(err)
	}
	rel, err := e.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: e.Saga(m)})
	if err != nil {
		t.Fatal(err)
	}
	if !rel.GetReleased() || rel.GetCells() != officeCells {
		t.Errorf("ReleaseMap = %v", rel)
	}
	if keys := e.MissionKeys(t, m); len(keys) != 0 {
		t.Errorf("keys left after release: %v", keys)
	}
	if got := capacityUsed(t, e.Redis); got != 0 {
		t.Errorf("capacity after release = %d, want 0", got)
	}
	_, err = e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m})
	steptest.WantStatus(t, err, codes.NotFound, rpcerr.ReasonMapNotFound)
	// A map that is gone says how maps go, eviction by its flag among them.
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "released") || !strings.Contains(msg, "--retained-cells") {
		t.Errorf("GetMap of a released map: %q", msg)
	}

	// A repeated release undoes nothing more.
	rel, err = e.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: e.Saga(m)})
	if err != nil {
		t.Fatal(err)
	}
	if rel.GetReleased() || rel.GetCells() != 0 {
		t.Errorf("repeated ReleaseMap = %v", rel)
	}
	// A hanging allocation after the release is refused.
	_, err = e.client.AllocateMap(ctx, req)
	steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	if keys := e.MissionKeys(t, m); len(keys) != 0 {
		t.Errorf("keys after hanging action: %v", keys)
	}
	eff := e.Effects(t, m)
	if eff["allocate_map:action"] != 1 || eff["allocate_map:compensation"] != 1 {
		t.Errorf("effects = %v, want one action and one compensation", eff)
	}

	// The action reported its step events through the progress interceptor.
	events := e.Events(t, m)
	var types []progress.Type
	for _, ev := range events {
		types = append(types, ev.Type)
		if ev.Service != mapping.ServiceName || ev.Step != mapping.Step {
			t.Errorf("event %+v", ev)
		}
	}
	want := []progress.Type{progress.StepStarted, progress.StepCompleted, progress.StepStarted, progress.StepCompleted, progress.StepStarted, progress.StepFailed}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if last := events[len(events)-1]; last.ErrorCode != "ABORTED" || last.ErrorReason != rpcerr.ReasonActionForbidden {
		t.Errorf("last event %+v, want the forbidden action", last)
	}
}

func TestNullCompensation(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-null"
	rel, err := e.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: e.Saga(m)})
	if err != nil {
		t.Fatal(err)
	}
	if rel.GetReleased() {
		t.Errorf("null ReleaseMap = %v", rel)
	}
	_, err = e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: office()})
	steptest.WantStatus(t, err, codes.Aborted, rpcerr.ReasonActionForbidden)
	if keys := e.MissionKeys(t, m); len(keys) != 0 {
		t.Errorf("keys after null compensation and hanging action: %v", keys)
	}
	if got := capacityUsed(t, e.Redis); got != 0 {
		t.Errorf("capacity = %d, want 0", got)
	}
	if eff := e.Effects(t, m); len(eff) != 0 {
		t.Errorf("effects = %v, want none", eff)
	}
}

// TestAllocateOnAFullRedis: a Redis out of memory refuses the allocation as
// RESOURCE_EXHAUSTED (STORE_FULL), which the saga retries, not INTERNAL,
// which compensated healthy missions after two attempts and named nothing
// (found by a review); once memory is back the same call allocates, once.
func TestAllocateOnAFullRedis(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	setMaxmemory(t, e.Redis, "1")
	req := &mappingv1.AllocateMapRequest{Saga: e.Saga("m-full"), Spec: office()}
	_, err := e.client.AllocateMap(ctx, req)
	steptest.WantStatus(t, err, codes.ResourceExhausted, rpcerr.ReasonStoreFull)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "Redis") || !strings.Contains(msg, "maxmemory") {
		t.Errorf("message %q does not name Redis's memory", msg)
	}
	setMaxmemory(t, e.Redis, "0")
	if _, err := e.client.AllocateMap(ctx, req); err != nil {
		t.Fatalf("AllocateMap with memory back: %v", err)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity used = %d, want one office map %d", got, officeCells)
	}
}

// setMaxmemory sets maxmemory on every node of rdb: a Cluster's masters
// each hold some of the keys.
func setMaxmemory(t *testing.T, rdb redis.UniversalClient, v string) {
	t.Helper()
	set := func(ctx context.Context, c *redis.Client) error { return c.ConfigSet(ctx, "maxmemory", v).Err() }
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(t.Context(), set)
	} else {
		err = rdb.ConfigSet(t.Context(), "maxmemory", v).Err()
	}
	if err != nil {
		t.Fatalf("CONFIG SET maxmemory %s: %v", v, err)
	}
}

func TestCapacityExhausted(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{CapacityCells: 2*officeCells - 1})
	ctx := steptest.Context(t)
	if _, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga("m-a"), Spec: office()}); err != nil {
		t.Fatal(err)
	}
	reqB := &mappingv1.AllocateMapRequest{Saga: e.Saga("m-b"), Spec: office()}
	_, err := e.client.AllocateMap(ctx, reqB)
	steptest.WantStatus(t, err, codes.ResourceExhausted, rpcerr.ReasonCapacityExhausted)
	if md := rpcerr.Info(err).GetMetadata(); md["requested_cells"] != "120000" || md["available_cells"] != "119999" {
		t.Errorf("metadata = %v", md)
	}
	if !strings.Contains(status.Convert(err).Message(), "coarser resolution") {
		t.Errorf("message %q does not say what needs fewer cells", status.Convert(err).Message())
	}
	if keys := e.MissionKeys(t, "m-b"); len(keys) != 0 {
		t.Errorf("refused allocation left keys %v", keys)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity = %d, want %d", got, officeCells)
	}
	// The refusal left no mark: once A is released, B's retry succeeds.
	if _, err := e.client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: e.Saga("m-a")}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.AllocateMap(ctx, reqB)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRemainingCells() != officeCells-1 {
		t.Errorf("remaining = %d, want %d", resp.GetRemainingCells(), officeCells-1)
	}
}

func TestConcurrentAllocationsNeverOverbook(t *testing.T) {
	t.Parallel()
	const fit, tries = 5, 16
	e := start(t, mapping.Config{CapacityCells: fit * officeCells})
	ctx := steptest.Context(t)
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Go(func() {
			m := "m-c" + string(rune('a'+i))
			_, errs[i] = e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: office()})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case rpcerr.Reason(err) != rpcerr.ReasonCapacityExhausted:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != fit {
		t.Errorf("%d allocations succeeded, want %d", ok, fit)
	}
	if got := capacityUsed(t, e.Redis); got != fit*officeCells {
		t.Errorf("capacity = %d, want %d", got, fit*officeCells)
	}
}

func TestAllocateInvalid(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	tests := []struct {
		name  string
		req   func(r *mappingv1.AllocateMapRequest)
		field string
	}{
		{"no saga", func(r *mappingv1.AllocateMapRequest) { r.Saga = nil }, "saga"},
		{"no mission", func(r *mappingv1.AllocateMapRequest) { r.Saga.MissionId = "" }, "saga.mission_id"},
		{"hash tag in mission", func(r *mappingv1.AllocateMapRequest) { r.Saga.MissionId = "m}x" }, "saga.mission_id"},
		{"no saga id", func(r *mappingv1.AllocateMapRequest) { r.Saga.SagaId = "" }, "saga.saga_id"},
		{"wrong step", func(r *mappingv1.AllocateMapRequest) { r.Saga.Step = "merge_maps" }, "saga.step"},
		{"no spec", func(r *mappingv1.AllocateMapRequest) { r.Spec = nil }, "spec"},
		{"zero width", func(r *mappingv1.AllocateMapRequest) { r.Spec.WidthM = 0 }, "spec.width_m"},
		{"negative width", func(r *mappingv1.AllocateMapRequest) { r.Spec.WidthM = -3 }, "spec.width_m"},
		{"nan width", func(r *mappingv1.AllocateMapRequest) { r.Spec.WidthM = math.NaN() }, "spec.width_m"},
		{"inf height", func(r *mappingv1.AllocateMapRequest) { r.Spec.HeightM = math.Inf(1) }, "spec.height_m"},
		{"huge height", func(r *mappingv1.AllocateMapRequest) { r.Spec.HeightM = 1e12 }, "spec.height_m"},
		{"nan resolution", func(r *mappingv1.AllocateMapRequest) { r.Spec.Resolution = math.NaN() }, "spec.resolution"},
		{"negative resolution", func(r *mappingv1.AllocateMapRequest) { r.Spec.Resolution = -0.05 }, "spec.resolution"},
		{"tiny resolution", func(r *mappingv1.AllocateMapRequest) { r.Spec.Resolution = 1e-9 }, "spec.resolution"},
		{"inf resolution", func(r *mappingv1.AllocateMapRequest) { r.Spec.Resolution = math.Inf(1) }, "spec.resolution"},
		{"nan origin", func(r *mappingv1.AllocateMapRequest) { r.Spec.OriginX = math.NaN() }, "spec.origin_x"},
		{"far origin", func(r *mappingv1.AllocateMapRequest) { r.Spec.OriginY = -1e7 }, "spec.origin_y"},
		{"too many cells", func(r *mappingv1.AllocateMapRequest) {
			r.Spec.WidthM, r.Spec.HeightM, r.Spec.Resolution = 9000, 9000, 0.01
		}, "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &mappingv1.AllocateMapRequest{Saga: e.Saga("m-bad"), Spec: office()}
			tt.req(req)
			_, err := e.client.AllocateMap(steptest.Context(t), req)
			steptest.WantStatus(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
			if f := rpcerr.Field(err); f != tt.field {
				t.Errorf("field = %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
	if got := capacityUsed(t, e.Redis); got != 0 {
		t.Errorf("invalid requests charged %d cells", got)
	}
}

func TestGetMapErrors(t *testing.T) {
	t.Parallel()
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	if _, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga("m-g"), Spec: office()}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		req    *mappingv1.GetMapRequest
		code   codes.Code
		reason string
	}{
		{"unknown mission", &mappingv1.GetMapRequest{MissionId: "m-nope"}, codes.NotFound, rpcerr.ReasonMapNotFound},
		{"unknown version", &mappingv1.GetMapRequest{MissionId: "m-g", Version: 7}, codes.NotFound, rpcerr.ReasonMapNotFound},
		{"bad mission id", &mappingv1.GetMapRequest{MissionId: "a b"}, codes.InvalidArgument, rpcerr.ReasonInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.client.GetMap(steptest.Context(t), tt.req)
			steptest.WantStatus(t, err, tt.code, tt.reason)
		})
	}
	got, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: "m-g", Version: 1})
	if err != nil || got.GetVersion() != 1 || len(got.GetPng()) != 0 {
		t.Errorf("GetMap v1 = %v, %v (no png asked)", got, err)
	}
}

// TestInjectedFaults runs the service as --allow-fault-injection does: the
// fault interceptor answers for both step RPCs, inside the progress
// interceptor, so an injected failure of the action is a step.failed event.
func TestInjectedFaults(t *testing.T) {
	t.Parallel()
	svc := service(mapping.Config{})
	svc.AllowFaults = true
	e := steptest.Start(t, svc)
	client := mappingv1.NewMappingServiceClient(e.Conn)
	ctx := steptest.Context(t)
	const m = "m-faults"
	plan := &typesv1.FaultPlan{Faults: []*typesv1.Fault{
		{Step: mapping.Step, Kind: typesv1.FaultKind_FAULT_KIND_DROP_REPLY},
		{Step: mapping.Step, Kind: typesv1.FaultKind_FAULT_KIND_TRANSIENT, Compensation: true},
	}}
	sc := func(attempt uint32) *typesv1.SagaContext {
		sc := e.Saga(m)
		sc.Faults, sc.Attempt = plan, attempt
		return sc
	}

	// The first attempt commits, and its reply is lost.
	_, err := client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: sc(1), Spec: office()})
	steptest.WantStatus(t, err, codes.Unavailable, rpcerr.ReasonInjectedFault)
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity after the lost reply = %d, want %d: the allocation committed", got, officeCells)
	}
	// The retry is answered from the barrier: no second charge.
	resp, err := client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: sc(2), Spec: office()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCells() != officeCells || resp.GetRemainingCells() != mapping.DefaultCapacityCells-officeCells {
		t.Errorf("retried AllocateMap = %v", resp)
	}
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity after the retry = %d, want %d", got, officeCells)
	}

	// The compensation's first attempt fails before it runs.
	_, err = client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: sc(1)})
	steptest.WantStatus(t, err, codes.Unavailable, rpcerr.ReasonInjectedFault)
	if got := capacityUsed(t, e.Redis); got != officeCells {
		t.Errorf("capacity after the failed release = %d, want %d", got, officeCells)
	}
	rel, err := client.ReleaseMap(ctx, &mappingv1.ReleaseMapRequest{Saga: sc(2)})
	if err != nil || !rel.GetReleased() || rel.GetCells() != officeCells {
		t.Fatalf("retried ReleaseMap = %v, %v", rel, err)
	}
	if eff := e.Effects(t, m); eff["allocate_map:action"] != 1 || eff["allocate_map:compensation"] != 1 {
		t.Errorf("effects = %v, want one action and one compensation", eff)
	}

	// Only the action reports events, the injected failure among them.
	type event struct {
		typ     progress.Type
		attempt int
		reason  string
	}
	var got []event
	for _, ev := range e.Events(t, m) {
		got = append(got, event{ev.Type, ev.Attempt, ev.ErrorReason})
	}
	want := []event{
		{progress.StepStarted, 1, ""},
		{progress.StepFailed, 1, rpcerr.ReasonInjectedFault},
		{progress.StepStarted, 2, ""},
		{progress.StepCompleted, 2, ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
