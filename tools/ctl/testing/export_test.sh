#!/usr/bin/env bash
# End-to-end test of the topology export: `ms-rendezvousctl ranktable|hostfile` and
# `ms-rendezvous-probe --env` against a real ms-rendezvousd and 8 real probes on 2 simulated hosts
# (MS_WORKER_IP 10.0.0.1 / 10.0.0.2, DEVICE_ID 0..3, MS_DEVICE_IP set).
#
#   export_test.sh BIN_DIR RANKTABLE_CHECK
#
# BIN_DIR holds ms-rendezvousd, ms-rendezvous-probe and ms-rendezvousctl; RANKTABLE_CHECK reads a
# rank table back with ParseHcclRankTable (the strict reader) and prints it line by line.
# Every wait is for a state the daemon or a probe reports, with a deadline that fails loudly.
set -u
BIN=$1
CHECK=$2
WORK=$(mktemp -d /tmp/export_test.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- last stdout:" >&2; cat "$WORK/out" >&2 2>/dev/null
  echo "--- last stderr:" >&2; cat "$WORK/err" >&2 2>/dev/null
  echo "--- daemon log (tail):" >&2; tail -n 20 "$WORK/daemon.log" >&2
  exit 1
}
wait_until() {
  local what=$1; shift
  local deadline=$((SECONDS + 60))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 0.1
  done
}
run() {
  local want=$1; shift
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  [[ $rc == "$want" ]] || fail "'$*' exited $rc, want $want"
}
out_is() { [[ "$(cat "$WORK/out")" == "$1" ]] || fail "stdout is not '$1'"; }
err_is() { [[ "$(cat "$WORK/err")" == "$1" ]] || fail "stderr is not '$1'"; }
err_has() { grep -Eq -- "$1" "$WORK/err" || fail "stderr lacks /$1/"; }
job_json_has() { "${CTL[@]}" --json job "$1" 2>/dev/null | grep -Eq -- "$2"; }
file_has() { grep -Eq -- "$2" "$1"; }

"$BIN/ms-rendezvousd" --listen 127.0.0.1:0 --port-file "$WORK/port" \
  --default-node-timeout 1h >"$WORK/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || fail "daemon did not write its port file"
PORT=$(cat "$WORK/port")
CTL=("$BIN/ms-rendezvousctl" --server "127.0.0.1:$PORT")

# probe JOB N HOST DEVICE [DEVICE_IP] [NODE_ID] -- ARGS: one held probe in the background; its
# output in $WORK/JOB.HOST.DEVICE.{out,err}.
probe() {
  local job=$1 n=$2 host=$3 dev=$4 dip=$5 node=$6; shift 6
  env MS_ROLE=MS_WORKER MS_SCHED_HOST=127.0.0.1 MS_SCHED_PORT="$PORT" MS_WORKER_NUM="$n" \
    MS_JOB_ID="$job" MS_WORKER_IP="$host" DEVICE_ID="$dev" MS_DEVICE_IP="$dip" \
    MS_NODE_ID="$node" MS_TOPO_TIMEOUT=3600 \
    "$BIN/ms-rendezvous-probe" "$@" >"$WORK/$job.$host.$dev.out" 2>"$WORK/$job.$host.$dev.err" &
  PIDS+=($!)
}

# --- a forming job: 3 of 8 joined -------------------------------------------------------------
FORMING=()
for d in 0 1 2; do
  probe forming 8 10.0.0.1 "$d" "192.168.1.$d" "" --hold 600
  FORMING+=($!)
done
wait_until "3 members of forming" job_json_has forming '"joined":3'
run 1 "${CTL[@]}" ranktable forming
err_is "ms-rendezvousctl: FAILED_PRECONDITION: job 'forming' is forming: 3 of 8 joined; a rank table needs a complete job"
run 1 "${CTL[@]}" hostfile forming
err_is "ms-rendezvousctl: FAILED_PRECONDITION: job 'forming' is forming: 3 of 8 joined; a hostfile needs a complete job"
for pid in "${FORMING[@]}"; do kill "$pid"; done
run 1 "${CTL[@]}" ranktable no-such-job;  err_has '^ms-rendezvousctl: NOT_FOUND: '
run 2 "${CTL[@]}" ranktable;              err_has 'exactly one job ID'
run 2 "${CTL[@]}" --role boss hostfile x; err_has '"boss" is not a role'

# --- 2 hosts x 4 devices, complete ------------------------------------------------------------
# Rank 0 (10.0.0.1, device 0) prints its env with the default master port (MS_SCHED_PORT + 1),
# rank 5 (10.0.0.2, device 1) with --master-port.
for h in 1 2; do
  for d in 0 1 2 3; do
    args=(--hold 600)
    [[ $h == 1 && $d == 0 ]] && args+=(--env)
    [[ $h == 2 && $d == 1 ]] && args+=(--env --master-port 29555)
    probe hccl 8 "10.0.0.$h" "$d" "192.168.10$h.$((d + 1))" "" "${args[@]}"
  done
done
wait_until "job hccl complete" job_json_has hccl '"state":"complete"'

run 0 "${CTL[@]}" ranktable hccl
cp "$WORK/out" "$WORK/table.json"
# Every value is a JSON string (no bare numbers after a key).
if grep -Eq '": *[-0-9tfn]' "$WORK/table.json"; then fail "rank table has a non-string value"; fi
run 0 "$CHECK" "$WORK/table.json"
out_is "servers 2 ranks 8
server 0 10.0.0.1 reserve
rank 0 server 10.0.0.1 device_id 0 device_ip 192.168.101.1
rank 1 server 10.0.0.1 device_id 1 device_ip 192.168.101.2
rank 2 server 10.0.0.1 device_id 2 device_ip 192.168.101.3
rank 3 server 10.0.0.1 device_id 3 device_ip 192.168.101.4
server 1 10.0.0.2 reserve
rank 4 server 10.0.0.2 device_id 0 device_ip 192.168.102.1
rank 5 server 10.0.0.2 device_id 1 device_ip 192.168.102.2
rank 6 server 10.0.0.2 device_id 2 device_ip 192.168.102.3
rank 7 server 10.0.0.2 device_id 3 device_ip 192.168.102.4"

run 0 "${CTL[@]}" hostfile hccl
out_is "10.0.0.1 slots=4
10.0.0.2 slots=4"
run 1 "${CTL[@]}" --role pserver hostfile hccl
err_is "ms-rendezvousctl: FAILED_PRECONDITION: job 'hccl' has no MS_PSERVER members"

# The launch env of ranks 0 and 5 (printed before their hold).
E0="$WORK/hccl.10.0.0.1.0.out"
E5="$WORK/hccl.10.0.0.2.1.out"
wait_until "rank 0's env" file_has "$E0" '^MS_RENDEZVOUS_GENERATION='
wait_until "rank 5's env" file_has "$E5" '^MS_RENDEZVOUS_GENERATION='
grep -E '^(RANK_ID|RANK_SIZE|DEVICE_ID|RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|NODE_RANK|MASTER_ADDR|MASTER_PORT)=' \
  "$E5" >"$WORK/out"
out_is "RANK_ID=5
RANK_SIZE=8
DEVICE_ID=1
RANK=5
WORLD_SIZE=8
LOCAL_RANK=1
LOCAL_WORLD_SIZE=4
GROUP_RANK=1
NODE_RANK=1
MASTER_ADDR=10.0.0.1
MASTER_PORT=29555"
grep -E '^(RANK|MASTER_ADDR|MASTER_PORT)=' "$E0" >"$WORK/out"
out_is "RANK=0
MASTER_ADDR=10.0.0.1
MASTER_PORT=$((PORT + 1))"

# --- ranks pinned across hosts by numeric node ids: no rank table ---------------------------
probe pinned 4 10.0.0.1 0 192.168.1.1 0 --hold 600
probe pinned 4 10.0.0.2 0 192.168.2.1 1 --hold 600
probe pinned 4 10.0.0.1 1 192.168.1.2 2 --hold 600
probe pinned 4 10.0.0.2 1 192.168.2.2 3 --hold 600
wait_until "job pinned complete" job_json_has pinned '"state":"complete"'
run 1 "${CTL[@]}" ranktable pinned
err_has "^ms-rendezvousctl: FAILED_PRECONDITION: job 'pinned': MS_WORKER ranks are not contiguous per host: rank 2 \(node '2'\) is on host 10\.0\.0\.1 like rank 0, but rank 1 in between is on host 10\.0\.0\.2"
# The hostfile still lists both hosts (mpirun numbers per host; documented).
run 0 "${CTL[@]}" hostfile pinned
out_is "10.0.0.1 slots=2
10.0.0.2 slots=2"

# --- a job without MS_DEVICE_IP: refused unless --allow-missing-device-ip ---------------------
probe noip 2 10.0.0.1 0 "" "" --hold 600
probe noip 2 10.0.0.1 1 "" "" --hold 600
wait_until "job noip complete" job_json_has noip '"state":"complete"'
run 1 "${CTL[@]}" ranktable noip
err_has "^ms-rendezvousctl: FAILED_PRECONDITION: job 'noip': 2 of 2 MS_WORKER members reported no device IP"
err_has "MS_DEVICE_IP"
run 0 "${CTL[@]}" ranktable noip --allow-missing-device-ip
cp "$WORK/out" "$WORK/noip.json"
run 0 "$CHECK" "$WORK/noip.json"
out_is "servers 1 ranks 2
server 0 10.0.0.1 reserve
rank 0 server 10.0.0.1 device_id 0 device_ip 0.0.0.0
rank 1 server 10.0.0.1 device_id 1 device_ip 0.0.0.0"

# A malformed table is rejected with the field named.
sed 's/"rank_id": "3"/"rank_id": 3/' "$WORK/table.json" >"$WORK/bad.json"
run 1 "$CHECK" "$WORK/bad.json"
err_is "ranktable_check: rank table: server_list[0].device[3].rank_id: expected a string, got a number"

echo "PASS"
