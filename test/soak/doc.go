// Package soak holds the soak test of slammesh (GitHub issue 7, item 7): the
// built binary as separate processes on loopback — a redis-server with AOF
// in its own directory, the three step services (fault injection off) and
// two orchestrator replicas — runs a bounded stream of mixed missions while
// the operator's everyday faults happen: a step service restarted
// (SIGTERM, then the same port again) every minute, Redis restarted once
// from its AOF on the same port and directory, one orchestrator SIGKILLed
// and restarted once.
//
// The missions mix three scenario kinds (an office world completes, a world
// with a sealed agent and a world that changed under one agent compensate)
// and four ways a client drives them: fire and poll, StartMission with
// wait, followed by a WatchMission watcher, and cancelled mid-flight with
// CancelMission. Every ~5 s the test samples Redis (DBSIZE, used_memory)
// and each orchestrator (go_goroutines from its /metrics, open fds from
// /proc/<pid>/fd). Afterwards it waits for every mission to end, then past
// the retention window (short for the test: SLAMMESH_RETENTION), and wants
// 0 FAILED, 0 stuck, every mission ended as its kind (or its cancellation)
// dictates, every effect applied at most once (read from the mission's
// effects hash as it ends, before it expires), no key of a finished mission
// left (SCAN), and Redis keys, Redis memory, goroutines and fds flat. It
// prints the curve: a time series of those samples.
//
// The test sits behind the soak build tag, since it starts processes and
// runs for minutes:
//
//	make soak-ci   # 2 minutes (part of make test)
//	make soak      # 30 minutes, by hand
//	go test -race -tags soak -count=1 -v -timeout 10m ./test/soak [-args -soak.duration=80s ...]
//
// Without -soak.bin it builds cmd/slammesh itself, so it never runs a stale
// binary.
package soak
