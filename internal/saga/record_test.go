package saga

import (
	"reflect"
	"strconv"
	"testing"
	"time"
)

// Steps past the cached field names (stepFieldNames) are named the same
// way, and every step field survives the hash both ways.
func TestRecordStepFieldsRoundTripPastTheCachedNames(t *testing.T) {
	n := len(stepFieldNames) + 4
	r := &Record{
		SagaID: "S", Key: "m", Definition: "d", State: Running, Current: n - 1,
		Outputs:   map[string][]byte{"step0": []byte("out")},
		Input:     []byte("in"),
		Epoch:     3,
		CreatedAt: time.UnixMilli(1_700_000_000_000), UpdatedAt: time.UnixMilli(1_700_000_000_500),
	}
	for i := range n {
		r.Steps = append(r.Steps, StepRecord{
			Name: "step" + strconv.Itoa(i), State: StepFailed, Attempts: i + 1, CompAttempts: i + 2, CompBase: i + 3,
			Error: Failure{Code: "c" + strconv.Itoa(i), Reason: "r", Message: "m"},
		})
	}
	kv := r.fields(true)
	h := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	if got, want := h["s19.cattempts"], "21"; got != want {
		t.Errorf("s19.cattempts = %q, want %q", got, want)
	}
	if got, want := h["s3.msg"], "m"; got != want {
		t.Errorf("s3.msg = %q, want %q", got, want)
	}
	back, err := parseRecord(h)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Steps, r.Steps) {
		t.Errorf("steps after the round trip:\n%+v\nwant\n%+v", back.Steps, r.Steps)
	}
}

// BenchmarkRecordSaveFields is what a between-step Save computes: the
// changed pairs of a 3-step record, then marking them saved.
func BenchmarkRecordSaveFields(b *testing.B) {
	r := &Record{SagaID: "S", Key: "mission-1", Definition: "mission", State: Running, Epoch: 1,
		Outputs: map[string][]byte{}, CreatedAt: time.UnixMilli(1_700_000_000_000)}
	for _, name := range []string{"allocate_map", "localize_agents", "merge_maps"} {
		r.Steps = append(r.Steps, StepRecord{Name: name, State: StepPending})
	}
	r.markSaved(r.fields(true))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cur := i % len(r.Steps)
		r.Current = cur
		r.Steps[cur].State = StepRunning
		r.Steps[cur].Attempts = i%7 + 1
		r.markSaved(r.changes())
		r.Steps[cur].State = StepSucceeded
		r.Outputs[r.Steps[cur].Name] = []byte("result")
		r.markSaved(r.changes())
	}
}
