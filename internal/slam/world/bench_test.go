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

// BenchmarkStartAgentsOffice is what StartMission of a `slamctl bench
// --workload office` mission waits for (three agents driving in a 20×15 m
// office, a new seed each): StartAgents returns once the agents drove, and
// their submaps are integrated in the background, outside the timing.
//
//	go test -run '^$' -bench 'StartAgents' -benchmem ./internal/slam/world
func BenchmarkStartAgentsOffice(b *testing.B) {
	b.ReportAllocs()
	seed := uint64(0)
	for b.Loop() {
		seed++
		p, err := StartAgents(Config{Seed: seed, Agents: 3, WidthM: 20, HeightM: 15})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
