package world

import "testing"

// BenchmarkGenerateTiny is the world of a `slamctl bench --workload tiny`
// mission (one agent, 10×8 m, a new seed each), which the orchestrator
// builds once per mission.
//
//	go test -run '^$' -bench 'Generate' -benchmem ./internal/slam/world
func BenchmarkGenerateTiny(b *testing.B) {
	b.ReportAllocs()
	seed := uint64(0)
	for b.Loop() {
		seed++
		if _, err := Generate(Config{Seed: seed, Agents: 1, WidthM: 10, HeightM: 8}); err != nil {
			b.Fatal(err)
		}
	}
}
