#!/usr/bin/env bash
# End to end: the built binaries as separate processes on loopback — redis-server
# and the four services — driven through reflection by grpcurl, with the
# progress stream checked by redis-cli. Run by `make e2e` (after `make build`);
# with SLAMMESH_TEST_REDIS=cluster (make e2e-cluster) on a 6-node Redis Cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=$root/bin
work=$(mktemp -d -t slammesh-e2e.XXXXXX)
pids=()

log() { printf 'e2e: %s\n' "$*"; }
fail() {
  printf 'e2e: FAIL: %s\n' "$*" >&2
  for f in "$work"/*.log; do
    [ -f "$f" ] || continue
    echo "---- $(basename "$f") (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}
cleanup() {
  # Only the processes this script started, by PID.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# free_port picks a port below the kernel's ephemeral range (32768+), where
# outgoing connections never take it from under us.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % 22000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port"
}

[ -x "$bin/slammesh" ] && [ -x "$bin/slamctl" ] || fail "build the binaries first (make build)"
command -v redis-server >/dev/null || fail "redis-server missing (make deps)"
log "building grpcurl from tools/go.mod"
go build -modfile=tools/go.mod -o "$bin/grpcurl" github.com/fullstorydev/grpcurl/cmd/grpcurl
grpcurl=$bin/grpcurl

# has is grep -q that reads its whole input: with pipefail, grep -q exiting at
# the first match fails the pipeline when its writer then gets SIGPIPE.
has() { grep "$@" >/dev/null; }
if [ "${SLAMMESH_TEST_REDIS:-}" = cluster ]; then
  # A 6-node Redis Cluster (3 masters, 3 replicas), given to the services by
  # REDIS_CLUSTER_URL; redis-cli -c follows the cluster's redirections.
  nodes=()
  used=" "
  for i in 0 1 2 3 4 5; do
    port=$(free_port); bus=$(free_port)
    while [[ $used == *" $port "* || $used == *" $bus "* || $port == "$bus" ]]; do port=$(free_port); bus=$(free_port); done
    used+="$port $bus "
    mkdir -p "$work/node$i"
    redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-port "$bus" --cluster-node-timeout 3000 --save '' --appendonly no --dir "$work/node$i" \
      >"$work/redis-node$i.log" 2>&1 &
    pids+=($!)
    nodes+=("127.0.0.1:$port")
  done
  for n in "${nodes[@]}"; do
    for _ in $(seq 100); do redis-cli -p "${n##*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "${n##*:}" ping >/dev/null || fail "cluster node $n did not start"
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$work/redis-create.log" 2>&1 ||
    fail "redis-cli --cluster create: $(tail -n 5 "$work/redis-create.log")"
  for n in "${nodes[@]}"; do
    for _ in $(seq 300); do redis-cli -p "${n##*:}" cluster info | has cluster_state:ok && break; sleep 0.1; done
    redis-cli -p "${n##*:}" cluster info | has cluster_state:ok || fail "cluster node $n not ok"
  done
  redis_port=${nodes[0]##*:}
  rcli() { redis-cli -c -p "$redis_port" "$@"; }
  url="redis://${nodes[0]}?addr=${nodes[1]}"
  for n in "${nodes[@]:2}"; do url+="&addr=$n"; done
  export REDIS_CLUSTER_URL=$url
  log "redis cluster: ${nodes[*]}"
else
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  rcli() { redis-cli -p "$redis_port" "$@"; }
  for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
  rcli ping >/dev/null || fail "redis-server did not start"
  export REDIS_URL="redis://127.0.0.1:$redis_port/0"
fi
export OTEL_TRACES_EXPORTER=none
declare -A grpc_port
# Services bind port 0 and the script reads the bound address from their
# "serving" log line: a port picked in advance can be taken in between.
start_service() {
  local name=$1; shift
  "$bin/slammesh" "$name" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    --allow-fault-injection "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  local addr=""
  for _ in $(seq 100); do
    # The child may not have opened its log yet.
    addr=$(sed -n 's/.*"msg":"serving".*"grpc_addr":"\([0-9.:]*\)".*/\1/p' "$work/$name.log" 2>/dev/null | head -n1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || fail "$name did not start serving"
  grpc_port[$name]=${addr##*:}
}
wait_healthy() {
  local name=$1
  for _ in $(seq 100); do
    "$bin/slammesh" healthcheck --addr "127.0.0.1:${grpc_port[$name]}" >/dev/null 2>&1 && return
    sleep 0.1
  done
  fail "$name did not become healthy"
}
start_service mapping --capacity-cells 4000000
start_service localization
start_service merge
for s in mapping localization merge; do wait_healthy "$s"; done
start_service orchestrator \
  --mapping-addr "127.0.0.1:${grpc_port[mapping]}" \
  --localization-addr "127.0.0.1:${grpc_port[localization]}" \
  --merge-addr "127.0.0.1:${grpc_port[merge]}"
wait_healthy orchestrator
orch=127.0.0.1:${grpc_port[orchestrator]}
log "mesh up: orchestrator $orch, redis :$redis_port"

"$grpcurl" -plaintext "$orch" list | has slammesh.orchestrator.v1.OrchestratorService ||
  fail "reflection does not list the orchestrator service"

# A mission that completes.
out=$("$grpcurl" -plaintext -d '{"mission_id":"e2e-ok","scenario":{"seed":7,"agents":3},"wait":true}' \
  "$orch" slammesh.orchestrator.v1.OrchestratorService/StartMission) || fail "StartMission: $out"
echo "$out" | has '"state": "MISSION_STATE_COMPLETED"' || fail "e2e-ok did not complete: $out"
trace=$(echo "$out" | sed -n 's/.*"traceId": "\([0-9a-f]\{32\}\)".*/\1/p' | head -n1)
[ -n "$trace" ] || fail "no trace id in: $out"
log "e2e-ok COMPLETED, trace $trace"

# Its progress stream, read as any consumer would.
stream='slammesh:{e2e-ok}:events'
types=$(rcli --raw xrange "$stream" - + | awk 'prev=="type"{print} {prev=$0}')
first=$(echo "$types" | head -n1)
last=$(echo "$types" | tail -n1)
[ "$first" = mission.started ] || fail "first event is $first, want mission.started"
[ "$last" = mission.completed ] || fail "last event is $last, want mission.completed"
# Read whole outputs before matching: with pipefail, a grep that quits at
# its first match makes the writer die of SIGPIPE and the pipeline fail.
entries=$(rcli --raw xrange "$stream" - +)
for step in allocate_map localize_agents merge_maps; do
  has -x "$step" <<<"$entries" || fail "no events for step $step"
done
echo "$types" | has -x step.progress || fail "no step.progress event"
n_traces=$(rcli --raw xrange "$stream" - + | awk 'prev=="trace_id"{print} {prev=$0}' | sort -u)
[ "$n_traces" = "$trace" ] || fail "events carry trace ids other than $trace: $n_traces"
log "stream $stream: $(echo "$types" | wc -l) events, mission.started … mission.completed, one trace id"

# GetMission and WatchMission through reflection.
"$grpcurl" -plaintext -d '{"mission_id":"e2e-ok"}' "$orch" slammesh.orchestrator.v1.OrchestratorService/GetMission |
  has MISSION_STATE_COMPLETED || fail "GetMission e2e-ok"
"$grpcurl" -plaintext -d '{"mission_id":"e2e-ok"}' "$orch" slammesh.orchestrator.v1.OrchestratorService/WatchMission |
  has EVENT_TYPE_MISSION_COMPLETED || fail "WatchMission e2e-ok did not end with mission.completed"

# A mission that fails at localization and is compensated.
out=$("$grpcurl" -plaintext -d '{"mission_id":"e2e-sealed","scenario":{"seed":3,"agents":3,"kind":"SCENARIO_KIND_SEALED_AGENT"},"wait":true}' \
  "$orch" slammesh.orchestrator.v1.OrchestratorService/StartMission) || fail "StartMission sealed: $out"
echo "$out" | has '"state": "MISSION_STATE_COMPENSATED"' || fail "e2e-sealed not compensated: $out"
echo "$out" | has INSUFFICIENT_OVERLAP || fail "e2e-sealed error reason: $out"
[ "$(rcli exists 'slammesh:{e2e-sealed}:map' 'slammesh:{e2e-sealed}:localization')" = 0 ] ||
  fail "compensated mission left its map or localizations in Redis"
comp=$(rcli --raw xrange 'slammesh:{e2e-sealed}:events' - + | awk 'prev=="type"{t=$0} prev=="step" && t=="compensation.completed"{print} {prev=$0}')
[ "$(echo $comp)" = "localize_agents allocate_map" ] || fail "compensations ran as [$(echo $comp)], want localize_agents then allocate_map"
log "e2e-sealed COMPENSATED (INSUFFICIENT_OVERLAP), compensations in reverse order, nothing left"

# slamctl against the same mesh: a repeat start is idempotent.
"$bin/slamctl" --addr "$orch" start --id e2e-ok --seed 7 --agents 3 | has 'already existed' || fail "repeat start was not idempotent"
reused=$("$bin/slamctl" --addr "$orch" start --id e2e-ok --seed 8 2>&1) && fail "another start under e2e-ok was accepted: $reused"
echo "$reused" | has 'MISSION_ID_REUSED' || fail "another start under e2e-ok: $reused"
"$bin/slamctl" --addr "$orch" --mapping-addr "127.0.0.1:${grpc_port[mapping]}" map -o "$work/e2e-ok.png" e2e-ok >/dev/null ||
  fail "slamctl map"
[ "$(head -c 4 "$work/e2e-ok.png" | tail -c 3)" = PNG ] || fail "map is not a PNG"

# The console on the orchestrator's HTTP port (issue 11): the built binary
# serves it, with each mission's page and a 404 for an unknown one. has, not
# grep -q: a grep that quits at its first match fails curl's write (pipefail).
http=$(sed -n 's/.*"msg":"serving".*"http_addr":"\([0-9.:]*\)".*/\1/p' "$work/orchestrator.log" | head -n1)
[ -n "$http" ] || fail "no http_addr in the orchestrator's serving line"
curl -fsS "http://$http/" | has 'href="/missions/e2e-sealed"' || fail "console list does not show e2e-sealed"
curl -fsS "http://$http/missions/e2e-sealed" | has INSUFFICIENT_OVERLAP || fail "console page of e2e-sealed lacks its error reason"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/missions/e2e-nope")" = 404 ] || fail "console: unknown mission is not 404"
log "console at http://$http/ lists the missions and shows e2e-sealed"

echo "e2e: 2 passed, 0 failed"
