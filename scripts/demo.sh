#!/usr/bin/env bash
# The main job: install what the build needs, build, start ms-rendezvousd on its embedded
# (in-memory) store, run a local 8-worker job through it with ms-rendezvous-probe (two simulated
# hosts, 4 devices each), and show the result with ms-rendezvousctl.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ms-rendezvousd ms-rendezvous-probe ms-rendezvousctl \
  | grep -E 'error|warning' || true
BIN=build/bin

work=$(mktemp -d)
"$BIN/ms-rendezvousd" --listen 127.0.0.1:0 --port-file "$work/port" >"$work/daemon.log" 2>&1 &
daemon=$!
cleanup() {
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 500); do [ -s "$work/port" ] && break; sleep 0.01; done
port=$(cat "$work/port")
echo "== ms-rendezvousd listening on 127.0.0.1:$port (state in memory)"

export MS_SCHED_HOST=127.0.0.1 MS_SCHED_PORT=$port MS_ROLE=MS_WORKER MS_WORKER_NUM=8 \
  MS_JOB_ID=demo MS_TOPO_TIMEOUT=60
start_worker() {  # $1 = node id (msrun style: node_rank * local_worker_num + index)
  local i=$1
  MS_NODE_ID=$i MS_WORKER_IP=10.0.0.$((i / 4 + 1)) DEVICE_ID=$((i % 4)) \
    "$BIN/ms-rendezvous-probe" --hold 2 >"$work/w$i.out" 2>"$work/w$i.err" &
  pids[$i]=$!
}

declare -a pids
for i in 0 1 2 3 4 6 7; do start_worker "$i"; done
for _ in $(seq 1 500); do
  "$BIN/ms-rendezvousctl" --server "127.0.0.1:$port" --json job demo 2>/dev/null \
    | grep -q '"joined":7' && break
  sleep 0.01
done
echo
echo "== 7 of 8 workers started; the job is forming and names who is missing:"
"$BIN/ms-rendezvousctl" --server "127.0.0.1:$port" job demo

start_worker 5
for _ in $(seq 1 500); do
  n=$(cat "$work"/w*.out 2>/dev/null | grep -c '"rank"' || true)
  [ "$n" -ge 8 ] && break
  sleep 0.01
done
echo
echo "== worker 5 joined: every probe got its topology (one JSON line each, by rank):"
for i in 0 1 2 3 4 5 6 7; do head -n 1 "$work/w$i.out"; done
echo
echo "== ms-rendezvousctl job demo (complete):"
"$BIN/ms-rendezvousctl" --server "127.0.0.1:$port" job demo
echo
echo "== ms-rendezvousctl members demo:"
"$BIN/ms-rendezvousctl" --server "127.0.0.1:$port" members demo

status=0
for i in 0 1 2 3 4 5 6 7; do
  if ! wait "${pids[$i]}"; then
    echo "worker $i failed:" >&2
    cat "$work/w$i.err" >&2
    status=1
  fi
done
echo
echo "== after every worker left (--hold 2 elapsed):"
"$BIN/ms-rendezvousctl" --server "127.0.0.1:$port" job demo | head -n 3
exit $status
