// Package scale holds the scale-out test of slammesh (issue 10): the built
// binary as separate processes on loopback against a real 6-node Redis
// Cluster (3 masters, 3 replicas; internal/redisproc) — two replicas of each
// step service, which the orchestrators reach through a comma-separated
// address list balanced round_robin (grpcserver.Dial) — runs a bounded
// number of small fault-free missions from a bounded number of concurrent
// clients in three phases: one orchestrator, three orchestrators, and three
// orchestrators (500 missions by default) of which one is SIGKILLed mid-run
// together with one mapping replica. The
// test checks that every mission completed (0 lost), that no step effect
// happened twice (the barrier's effect counters), that nothing is left
// unfinished (0 stuck: every mission terminal, the active-lease index
// empty), and prints missions/s and the p50/p99 latency of a mission (from
// the first StartMission call to the terminal reply) for each phase.
//
// The test sits behind the scale build tag:
//
//	make scale
//	go test -tags scale -count=1 -v -timeout 15m ./test/scale [-args -scale.missions=500 ...]
//
// Speed figures are printed, never asserted: the machine is shared.
package scale
