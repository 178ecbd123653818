package merge

import (
	"strings"
	"testing"

	"github.com/slammesh/slammesh/internal/slam/fuse"
)

// TestInconsistencyNamesEveryFailedGate: INCONSISTENT_MAPS's text names
// both gates when both failed, and shows the changed share rounded up and
// the consistency rounded down, so that the figure given back as
// max_changed_share or min_consistency lets the merge through, with the
// limits as the caller gave them.
func TestInconsistencyNamesEveryFailedGate(t *testing.T) {
	t.Parallel()
	report := fuse.AgentReport{Agreement: 10144, Disagreement: 204, ContradictedRegions: 15}
	for _, tc := range []struct {
		name string
		err  fuse.InconsistencyError
		want []string
	}{
		{"region gate, share just over a limit given to 4 places",
			fuse.InconsistencyError{Consistency: 0.9803, Threshold: 0.95, ChangedShare: 0.019713, MaxChangedShare: 0.0197, Report: report},
			[]string{"0.0198 of the 10348 shared cells disagree inside 15 contradicted 1 m regions (limit 0.0197)", "overall consistency 0.980 (floor 0.95)"}},
		{"floor only, a tight one",
			fuse.InconsistencyError{Consistency: 0.99996, Threshold: 0.99997, ChangedShare: 0.001, MaxChangedShare: 0.0095, Report: report},
			[]string{"consistency 0.999 < 0.99997 (10144 shared cells agree, 204 disagree)"}},
		{"both",
			fuse.InconsistencyError{Consistency: 0.945, Threshold: 0.95, ChangedShare: 0.0512, MaxChangedShare: 0.0095, Report: report},
			[]string{"consistency 0.945 < 0.95", "and 0.0512 of the 10348 shared cells disagree inside 15 contradicted 1 m regions (limit 0.0095)"}},
		{"region gate after the see-through test",
			fuse.InconsistencyError{Consistency: 0.9803, Threshold: 0.95, ChangedShare: 0.0121, MaxChangedShare: 0.0095,
				Report: fuse.AgentReport{Agreement: 10144, Disagreement: 204, ContradictedRegions: 15, SeeThroughCells: 37}},
			[]string{"0.0121 of the 10348 shared cells", "; 37 cells of glass seen through at a slant not counted"}},
	} {
		got := inconsistency(&tc.err)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q, want %q in it", tc.name, got, w)
			}
		}
		if tc.name == "floor only, a tight one" && strings.Contains(got, "regions") {
			t.Errorf("%s: %q names the region gate, which passed", tc.name, got)
		}
		if tc.err.Report.SeeThroughCells == 0 && strings.Contains(got, "glass") {
			t.Errorf("%s: %q mentions glass, which the see-through test did not forgive", tc.name, got)
		}
	}
}
