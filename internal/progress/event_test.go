package progress_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/slammesh/slammesh/internal/progress"
)

func TestMissionStream(t *testing.T) {
	t.Parallel()
	if got, want := progress.MissionStream("m-42"), "slammesh:{m-42}:events"; got != want {
		t.Fatalf("MissionStream = %q, want %q", got, want)
	}
	if progress.GlobalStream != "slammesh:events" {
		t.Fatalf("GlobalStream = %q", progress.GlobalStream)
	}
}

func TestTypeTerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ  progress.Type
		want bool
	}{
		{progress.MissionStarted, false},
		{progress.StepStarted, false},
		{progress.StepProgress, false},
		{progress.StepCompleted, false},
		{progress.StepFailed, false},
		{progress.StepRetrying, false},
		{progress.CompensationStarted, false},
		{progress.CompensationCompleted, false},
		{progress.CompensationFailed, false},
		{progress.MissionCompleted, true},
		{progress.MissionCompensated, true},
		{progress.MissionFailed, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			if got := tt.typ.Terminal(); got != tt.want {
				t.Fatalf("Terminal() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	full := map[string]any{
		"v": "1", "mission_id": "m1", "saga_id": "s1", "type": "step.failed",
		"step": "localize_agents", "service": "localization", "attempt": "2",
		"progress": "0.25", "message": "no overlap", "error_code": "FAILED_PRECONDITION",
		"error_reason": "INSUFFICIENT_OVERLAP", "trace_id": "0af7651916cd43dd8448eb211c80319c",
		"span_id": "b7ad6b7169203331", "ts": "2026-11-27T10:11:12.123456789Z",
	}
	without := func(keys ...string) map[string]any {
		m := maps.Clone(full)
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	with := func(kv ...string) map[string]any {
		m := maps.Clone(full)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	fullEvent := progress.Event{
		ID: "1-0", MissionID: "m1", SagaID: "s1", Type: progress.StepFailed,
		Step: "localize_agents", Service: "localization", Attempt: 2, Progress: 0.25,
		Message: "no overlap", ErrorCode: "FAILED_PRECONDITION", ErrorReason: "INSUFFICIENT_OVERLAP",
		TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Time: time.Date(2026, 11, 27, 10, 11, 12, 123456789, time.UTC),
	}
	noNumbers := fullEvent
	noNumbers.Attempt, noNumbers.Progress, noNumbers.Time = 0, 0, time.Time{}
	tests := []struct {
		name        string
		values      map[string]any
		want        progress.Event
		wantErr     bool
		wantVersion bool // the error wraps ErrUnsupportedVersion
	}{
		{name: "every field", values: full, want: fullEvent},
		{
			name:   "only required fields",
			values: map[string]any{"v": "1", "mission_id": "m1", "type": "mission.started"},
			want:   progress.Event{ID: "1-0", MissionID: "m1", Type: progress.MissionStarted},
		},
		{name: "empty numbers and time", values: with("attempt", "", "progress", "", "ts", ""), want: noNumbers},
		{name: "missing numbers and time", values: without("attempt", "progress", "ts"), want: noNumbers},
		{name: "missing v", values: without("v"), wantErr: true, wantVersion: true},
		{name: "newer v", values: with("v", "2"), wantErr: true, wantVersion: true},
		{name: "missing mission_id", values: without("mission_id"), wantErr: true},
		{name: "missing type", values: without("type"), wantErr: true},
		{name: "unknown type", values: with("type", "step.exploded"), wantErr: true},
		{name: "bad attempt", values: with("attempt", "two"), wantErr: true},
		{name: "bad progress", values: with("progress", "half"), wantErr: true},
		{name: "bad ts", values: with("ts", "yesterday"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := progress.Parse(redis.XMessage{ID: "1-0", Values: tt.values})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse = %+v, want an error", got)
				}
				if isVersion := errors.Is(err, progress.ErrUnsupportedVersion); isVersion != tt.wantVersion {
					t.Fatalf("errors.Is(%v, ErrUnsupportedVersion) = %v, want %v", err, isVersion, tt.wantVersion)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !got.Time.Equal(tt.want.Time) {
				t.Fatalf("Time = %v, want %v", got.Time, tt.want.Time)
			}
			got.Time, tt.want.Time = time.Time{}, time.Time{}
			if got != tt.want {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestEntryFields pins the stream layout dashboards read with XRANGE: the
// field names, their order, and the spelling of numbers and times.
func TestEntryFields(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	e := progress.Event{
		MissionID: "m1", SagaID: "s1", Type: progress.StepProgress, Step: "merge_maps",
		Service: "merge", Attempt: 3, Progress: 0.5, Message: "agent 2 of 4",
		TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600)),
	}
	if err := progress.NewPublisher(rdb, progress.Options{}).Publish(ctx, e); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// XRANGE through a raw command keeps the field order go-redis's map hides.
	raw, err := rdb.Do(ctx, "XRANGE", progress.MissionStream("m1"), "-", "+").Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("XRANGE = %v, %v; want one entry", raw, err)
	}
	var fields []string
	for _, f := range raw[0].([]any)[1].([]any) {
		fields = append(fields, f.(string))
	}
	want := []string{
		"v", "1", "mission_id", "m1", "saga_id", "s1", "type", "step.progress",
		"step", "merge_maps", "service", "merge", "attempt", "3", "progress", "0.5",
		"message", "agent 2 of 4", "error_code", "", "error_reason", "",
		"trace_id", "0af7651916cd43dd8448eb211c80319c", "span_id", "b7ad6b7169203331",
		"ts", "2026-01-02T02:04:05.0000006Z",
	}
	if !slices.Equal(fields, want) {
		t.Fatalf("entry fields =\n%q\nwant\n%q", fields, want)
	}
}

func TestPublishParseRoundTrip(t *testing.T) {
	t.Parallel()
	rdb := newClient(t)
	ctx := t.Context()
	tests := []struct {
		name string
		e    progress.Event
	}{
		{"mission event", progress.Event{MissionID: "m1", SagaID: "s1", Type: progress.MissionStarted, Service: "orchestrator", Message: "resumed"}},
		{"failed step", progress.Event{
			MissionID: "m2", SagaID: "s2", Type: progress.StepFailed, Step: "allocate_map", Service: "mapping",
			Attempt: 4, Progress: 1.0 / 3, Message: "full", ErrorCode: "RESOURCE_EXHAUSTED", ErrorReason: "CAPACITY_EXHAUSTED",
			TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
			Time: time.Date(2026, 5, 6, 7, 8, 9, 987654321, time.UTC),
		}},
	}
	pub := progress.NewPublisher(rdb, progress.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			if err := pub.Publish(ctx, tt.e); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			got, err := progress.Range(ctx, rdb, progress.MissionStream(tt.e.MissionID))
			if err != nil || len(got) != 1 {
				t.Fatalf("Range = %+v, %v; want one event", got, err)
			}
			g := got[0]
			if g.ID == "" {
				t.Fatal("read event has no stream ID")
			}
			if tt.e.Time.IsZero() {
				// The publisher stamps the time of publishing.
				if g.Time.Before(before) || g.Time.After(time.Now()) {
					t.Fatalf("stamped Time %v not within the Publish call", g.Time)
				}
			} else if !g.Time.Equal(tt.e.Time) {
				t.Fatalf("Time = %v, want %v", g.Time, tt.e.Time)
			}
			g.ID, g.Time, tt.e.Time = "", time.Time{}, time.Time{}
			if g != tt.e {
				t.Fatalf("read back\n%+v\nwant\n%+v", g, tt.e)
			}
		})
	}
}

func TestFillTrace(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:  trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
	})
	withSpan := trace.ContextWithSpanContext(context.Background(), sc)
	tests := []struct {
		name      string
		ctx       context.Context
		in        progress.Event
		wantTrace string
		wantSpan  string
	}{
		{"from ctx", withSpan, progress.Event{}, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"},
		{"keeps a stored trace", withSpan, progress.Event{TraceID: "11111111111111111111111111111111", SpanID: "2222222222222222"},
			"11111111111111111111111111111111", "2222222222222222"},
		{"no span in ctx", context.Background(), progress.Event{}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := tt.in
			progress.FillTrace(tt.ctx, &e)
			if e.TraceID != tt.wantTrace || e.SpanID != tt.wantSpan {
				t.Fatalf("FillTrace: trace %q span %q, want %q %q", e.TraceID, e.SpanID, tt.wantTrace, tt.wantSpan)
			}
		})
	}
}

// BenchmarkEncode measures encoding one step event as its stream entry, which
// every event a step or the orchestrator writes pays once.
func BenchmarkEncode(b *testing.B) {
	e := progress.Event{
		MissionID: "m-0123456789", SagaID: "s-0123456789", Type: progress.StepCompleted,
		Step: "localize_agents", Service: "localization", Attempt: 1, Progress: 0.5,
		Message: "localized 3 agents", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Time: time.Date(2026, 11, 30, 17, 0, 0, 123456789, time.UTC),
	}
	b.ReportAllocs()
	for b.Loop() {
		progress.Encode(e)
	}
}
