# slammesh: one entry point for running, testing and generating.
#   make run    the whole mesh in one process, plus one demo mission
#   make test   everything CI runs (installs redis-server when missing)

SHELL := /bin/bash
GO    ?= go
TOOL  := $(GO) tool -modfile=tools/go.mod
BIN   := bin
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can fail a clean
# run with "context deadline exceeded" at the boundary (go.dev/issue/75804).
FUZZTIME ?= 200000x

.PHONY: run test unit check lint generate gen-check e2e fuzz bench demo-map build up down deps clean

## run: start all four services in one process (Redis: REDIS_URL, else redis-server on PATH, else embedded) and run a demo mission
run:
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/slammesh ./cmd/slammesh
	@# exec: Ctrl-C stops the mesh cleanly (slammesh exits 0 and says
	@# "stopped"); make, interrupted by the same Ctrl-C, still reports it
	@# (exit 130). Under go run the go command's own exit status was an error too.
	@exec $(BIN)/slammesh dev --demo

## build: the two binaries into bin/
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/slammesh ./cmd/slammesh
	CGO_ENABLED=0 $(GO) build -o $(BIN)/slamctl ./cmd/slamctl

## deps: make sure redis-server (tests start their own on free ports) and chromium (the console's browser test) are installed
deps:
	@./scripts/ensure-redis.sh
	@./scripts/ensure-chromium.sh

## test: what CI runs: static checks, race tests, fuzz smoke, end to end, TLS end to end, chaos, the 2-minute soak, 10,000 missions in a row, the Redis Cluster suites (about 2 minutes) and the scale-out run (under a minute)
test: deps check unit fuzz e2e tls-e2e chaos soak-ci many-missions cluster scale

## unit: all Go tests with the race detector (component tests included)
unit:
	$(GO) test -race -count=1 ./...

## check: gofmt, go vet, buf lint, generated code up to date, alert rules valid, Kubernetes manifests valid
check: lint gen-check rules kubernetes

## rules: the Prometheus alert rules pass promtool, a Go tool of its own module
## (tools/promtool/go.mod) so Prometheus' dependency graph stays out of go.mod
.PHONY: rules
rules:
	$(GO) tool -modfile=tools/promtool/go.mod promtool check rules deploy/observability/prometheus/alerts.yml

## kubernetes: deploy/kubernetes builds with kustomize and passes strict decoding into the Kubernetes API types and the checks of
## tools/k8scheck (a module of its own, like tools/promtool); no cluster needed.
.PHONY: kubernetes
kubernetes: build
	cd tools/k8scheck && $(GO) vet ./... && $(GO) test -count=1 ./... -args -slammesh=$(CURDIR)/$(BIN)/slammesh && \
	  $(GO) run . -bin $(CURDIR)/$(BIN)/slammesh -complete overlays/dev \
	  $(CURDIR)/deploy/kubernetes base overlays/dev overlays/cluster

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) buf lint

## generate: regenerate gen/ from proto/ with the pinned plugins
generate:
	rm -rf gen
	$(TOOL) buf generate

gen-check: generate
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "gen/ has untracked files: run make generate and commit"; exit 1; }

## fuzz: each fuzz target for FUZZTIME executions
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

## e2e: the built binaries as separate processes, driven by grpcurl and redis-cli
e2e: build
	./scripts/e2e.sh

## tls-e2e: the binaries over mutual TLS with generated certificates, tokens, and Redis over TLS as an ACL user (issue 12)
.PHONY: tls-e2e
tls-e2e: build
	$(GO) build -modfile=tools/go.mod -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl
	$(GO) vet -tags tlse2e ./test/tls
	$(GO) test -race -tags tlse2e -count=1 -v -timeout 5m ./test/tls -args -tls.bin=$(CURDIR)/$(BIN)/slammesh -tls.grpcurl=$(CURDIR)/$(BIN)/grpcurl

## many-missions: 10,000 default missions in a row with the default budgets and a 30 s retention (issue 7: capacity never runs out); without -race, which would only slow it
.PHONY: many-missions
many-missions:
	$(GO) test -count=1 -run TestManyMissionsInARow -v -timeout 20m ./services/orchestrator -ops.missions 10000 -ops.retention 30s

## chaos: 200 missions with injected faults over separate processes while an orchestrator is SIGKILLed and restarted (issue 4); CHAOS_FLAGS="-chaos.seed=7" etc.
.PHONY: chaos
chaos: build
	$(GO) vet -tags chaos ./test/chaos
	$(GO) test -race -tags chaos -count=1 -v -timeout 15m ./test/chaos -args -chaos.bin=$(CURDIR)/$(BIN)/slammesh $(CHAOS_FLAGS)

## soak: the soak by hand (issue 7): 30 minutes of mixed missions, watchers and cancellations over separate processes while step services restart every minute, Redis restarts from its AOF and an orchestrator is SIGKILLed; prints the curve. SOAK_FLAGS="-soak.duration=10m" etc.
.PHONY: soak soak-ci
soak: build
	$(GO) vet -tags soak ./test/soak
	$(GO) test -race -tags soak -count=1 -v -timeout 60m ./test/soak -args -soak.bin=$(CURDIR)/$(BIN)/slammesh -soak.duration=30m $(SOAK_FLAGS)

## soak-ci: the same soak in about 2 minutes (80 s of workload, 15 s retention); part of make test
soak-ci: build
	$(GO) vet -tags soak ./test/soak
	$(GO) test -race -tags soak -count=1 -v -timeout 10m ./test/soak -args -soak.bin=$(CURDIR)/$(BIN)/slammesh $(SOAK_FLAGS)

## cluster: the suites on a real 6-node Redis Cluster (3 masters, 3 replicas; issue 10): the Go tests of
## CLUSTER_PKGS with SLAMMESH_TEST_REDIS=cluster (each test's scripts and MULTIs checked to touch one slot),
## e2e and chaos on a cluster (chaos adds a master CLUSTER FAILOVER and a master SIGKILL mid-run), then
## test/cluster: a mission's keys share one slot, every Lua script is listed and ran on the cluster
.PHONY: cluster cluster-pkgs cluster-orchestrator e2e-cluster chaos-cluster cluster-check
CLUSTER_PKGS ?= ./internal/saga ./internal/progress/... ./internal/barrier ./internal/mapstore \
	./internal/stepserver ./internal/steptest ./services/mapping ./services/localization ./services/merge
# The orchestrator's component tests (component_test.go), recovery, deletion, one trace, a restarted step
# service and a poisoned stream on the cluster; the whole package takes over 3 minutes there.
CLUSTER_ORCH_RUN ?= TestOfficeMissionCompletes|TestFailedMissionsCompensate|TestStartMissionRejectsBadInput|TestReadRPCsValidate|TestStartMissionIsIdempotent|TestListMissions|TestCancelMission|TestShutdownDrainsRunningMissions|TestClientLeavingDoesNotStopMission|TestResumeMission|TestShutdownHandsRunningMissionsToAnotherReplica|TestDeleteMission|TestMissionIsOneTrace|TestStepServiceRestartMissionCompletes|TestPoisonEntrySkippedByWatchers
CLUSTER_SCRIPTS := $(CURDIR)/$(BIN)/cluster-scripts.log
cluster: build
	rm -f $(CLUSTER_SCRIPTS)
	$(MAKE) --no-print-directory cluster-pkgs
	$(MAKE) --no-print-directory cluster-orchestrator
	$(MAKE) --no-print-directory e2e-cluster
	$(MAKE) --no-print-directory chaos-cluster
	$(MAKE) --no-print-directory cluster-check

cluster-pkgs:
	SLAMMESH_TEST_REDIS=cluster SLAMMESH_TEST_SCRIPT_LOG=$(CLUSTER_SCRIPTS) $(GO) test -race -count=1 -timeout 20m $(CLUSTER_PKGS)

cluster-orchestrator:
	SLAMMESH_TEST_REDIS=cluster SLAMMESH_TEST_SCRIPT_LOG=$(CLUSTER_SCRIPTS) $(GO) test -race -count=1 -timeout 10m -run '^($(CLUSTER_ORCH_RUN))$$' ./services/orchestrator

e2e-cluster: build
	$(GO) build -modfile=tools/go.mod -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl
	SLAMMESH_TEST_REDIS=cluster ./scripts/e2e.sh

chaos-cluster: build
	$(GO) vet -tags chaos ./test/chaos
	SLAMMESH_TEST_SCRIPT_LOG=$(CLUSTER_SCRIPTS) $(GO) test -race -tags chaos -count=1 -v -timeout 15m -run TestChaos ./test/chaos -args -chaos.bin=$(CURDIR)/$(BIN)/slammesh -chaos.redis=cluster $(CHAOS_FLAGS)

cluster-check:
	$(GO) vet -tags cluster ./test/cluster
	SLAMMESH_TEST_SCRIPT_LOG=$(CLUSTER_SCRIPTS) $(GO) test -race -tags cluster -count=1 -v -timeout 5m ./test/cluster

## scale: 2 replicas of each step service and 1, then 3 orchestrators as separate processes on a 6-node Redis Cluster: 500 missions with one orchestrator and one step replica SIGKILLed mid-run; prints missions/s and p99 (issue 10). SCALE_FLAGS="-scale.missions=1000" etc.
.PHONY: scale
scale: build
	$(GO) vet -tags scale ./test/scale
	$(GO) test -tags scale -count=1 -v -timeout 15m ./test/scale -args -scale.bin=$(CURDIR)/$(BIN)/slammesh $(SCALE_FLAGS)

## bench: domain and saga benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

## demo-map: write a merged map beside its ground truth as PNGs into out/
demo-map:
	$(GO) run ./cmd/slamdemo -seed 7 -agents 3 -out out/demo-map

## up: the mesh with Redis and Jaeger in containers
up:
	docker compose up --build

down:
	docker compose down

clean:
	rm -rf $(BIN) out
