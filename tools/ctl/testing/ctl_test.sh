#!/usr/bin/env bash
# End-to-end test of ms-rendezvousctl's output format against a real ms-rendezvousd.
#
#   ctl_test.sh BIN_DIR JOIN_HELPER
#
# BIN_DIR holds ms-rendezvousd and ms-rendezvousctl; JOIN_HELPER is ctl_test_join_helper (raw Join
# RPCs, so that the job under inspection is made by the wire contract alone). Scripts and the
# README rely on these formats; this pins them: exact JSON keys and order, table rows, error lines
# and exit codes.
set -u
BIN=$1
HELPER=$2
WORK=$(mktemp -d /tmp/ctl_test.XXXXXX)
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

"$BIN/ms-rendezvousd" --listen 127.0.0.1:0 --port-file "$WORK/port" >"$WORK/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || fail "daemon did not write its port file"
PORT=$(cat "$WORK/port")
SERVER=127.0.0.1:$PORT
CTL=("$BIN/ms-rendezvousctl" --server "$SERVER")

# run EXPECTED_RC CMD...: runs CMD, output in $WORK/out and $WORK/err, checks the exit code.
run() {
  local want=$1; shift
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  [[ $rc == "$want" ]] || fail "'$*' exited $rc, want $want"
}
# out_is TEXT / out_has REGEX / err_has REGEX: checks on the last run's output (grep -E, per line).
out_is() { [[ "$(cat "$WORK/out")" == "$1" ]] || fail "stdout is not '$1'"; }
out_has() { grep -Eq -- "$1" "$WORK/out" || fail "stdout lacks /$1/"; }
out_lacks() { ! grep -Eq -- "$1" "$WORK/out" || fail "stdout has /$1/"; }
err_has() { grep -Eq -- "$1" "$WORK/err" || fail "stderr lacks /$1/"; }

# --- an empty daemon --------------------------------------------------------------------------
run 0 "${CTL[@]}" health;                 out_is "status: SERVING"
run 0 "${CTL[@]}" health --json;          out_is '{"status":"SERVING"}'
run 0 "${CTL[@]}" --json health;          out_is '{"status":"SERVING"}'
run 0 "${CTL[@]}" jobs;                   out_is "no jobs"
run 0 "${CTL[@]}" --json jobs;            out_is '{"jobs":[]}'
run 1 "${CTL[@]}" job no-such-job;        err_has '^ms-rendezvousctl: NOT_FOUND: .*no-such-job'
run 1 "${CTL[@]}" members no-such-job;    err_has '^ms-rendezvousctl: NOT_FOUND: '
run 1 "${CTL[@]}" watch no-such-job;      err_has '^ms-rendezvousctl: NOT_FOUND: '
# The server comes from the MindSpore environment when --server is absent.
run 0 env MS_SCHED_HOST=127.0.0.1 MS_SCHED_PORT="$PORT" "$BIN/ms-rendezvousctl" health
out_is "status: SERVING"
run 2 env MS_SCHED_PORT=99999 "$BIN/ms-rendezvousctl" health;   err_has 'MS_SCHED_PORT'
# Usage errors: exit 2 with the usage text.
run 2 "${CTL[@]}";                        err_has '^usage: ms-rendezvousctl'
run 2 "${CTL[@]}" frobnicate;             err_has 'unknown command "frobnicate"'
run 2 "${CTL[@]}" job;                    err_has 'exactly one job ID'
run 2 "${CTL[@]}" jobs extra;             err_has 'takes no arguments'
run 2 "${CTL[@]}" --bogus jobs;           err_has 'unknown option --bogus'
run 0 "${CTL[@]}" --help;                 out_has '^usage: ms-rendezvousctl'
# A daemon that is not there: UNAVAILABLE, exit 1.
run 1 "$BIN/ms-rendezvousctl" --server 127.0.0.1:1 --timeout-s 3 jobs
err_has '^ms-rendezvousctl: (UNAVAILABLE|DEADLINE_EXCEEDED): '

# --- a forming job: ranks 0 and 2 of 4 joined -------------------------------------------------
"$HELPER" "$SERVER" ctl-test 4 60 0 2 >"$WORK/helper1.out" 2>"$WORK/helper1.err" &
HELPER1=$!
PIDS+=($HELPER1)
for _ in $(seq 100); do
  "${CTL[@]}" --json job ctl-test 2>/dev/null | grep -q '"joined":2' && break
  sleep 0.1
done
run 0 "${CTL[@]}" job ctl-test
out_has '^job: +ctl-test$'
out_has '^state: +forming$'
out_has '^topo deadline: +fails in [0-9.]+s \(timeout 1m00s\)$'
out_has '^missing MS_WORKER: +ranks 1, 3$'
out_has '^hosts \(1\): +127\.0\.0\.1 \(2\)$'
out_has '^ROLE +EXPECTED +JOINED +WAITING +ACTIVE +LEFT +MISSING$'
out_has '^MS_WORKER +4 +2 +2 +0 +0 +2$'
out_has '^members \(2\):$'
out_has '^  0 +MS_WORKER +- +- +- +127\.0\.0\.1 +ctl-test +- +waiting '
run 0 "${CTL[@]}" --json job ctl-test
out_has '^\{"job":\{"job_id":"ctl-test","state":"forming","generation":[0-9]+,"age_s":[0-9.]+,"topo_timeout_ms":60000,"topo_deadline_in_s":[0-9.]+,"members":2,"roles":\[\{"role":"MS_WORKER","expected":4,"joined":2,"waiting":2,"active":0,"left":0,"missing":2,"missing_ranks":\[1,3\],"missing_ranks_truncated":false\}\],"hosts_total":1,"hosts":\[\{"host":"127.0.0.1","members":2\}\],"failure_reason":""\},"members":\[\{"node_id":"0",'
out_has '"more_members":false\}$'
run 0 "${CTL[@]}" jobs
out_has '^JOB +STATE +GEN +WORKERS +PSERVERS +HOSTS +AGE +MISSING$'
out_has '^ctl-test +forming +[0-9]+ +2/4 +- +1 +[0-9.]+m?s +2 workers$'
run 0 "${CTL[@]}" --json jobs
out_has '^\{"jobs":\[\{"job_id":"ctl-test","state":"forming",'
run 0 "${CTL[@]}" members ctl-test
out_has '^NODE_ID +ROLE +RANK +LOCAL +NODE +HOST +HOST_NAME +DEVICE +STATE +SEEN +INCARNATION$'
out_has '^2 +MS_WORKER +- +- +- +127\.0\.0\.1 +ctl-test +- +waiting +[0-9.]+m?s ago +[0-9]+$'
# The documented JSON shape (DESIGN.md): rank is null before the job completes.
run 0 "${CTL[@]}" members ctl-test --json
out_has '^\{"job_id":"ctl-test","members":\[\{"node_id":"0","rank":null,"role":"MS_WORKER","host":"127\.0\.0\.1","host_name":"ctl-test","device_id":-1,"state":"waiting","last_heartbeat_age_s":[0-9.]+,"incarnation":[0-9]+,"local_rank":null,"node_rank":null\},\{"node_id":"2",.*\}\]\}$'

# Watchers see the rest of the formation live.
"${CTL[@]}" watch ctl-test >"$WORK/watch.txt" 2>&1 &
PIDS+=($!)
"${CTL[@]}" --json watch ctl-test >"$WORK/watch.json" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  grep -q snapshot "$WORK/watch.txt" && grep -q snapshot "$WORK/watch.json" && break
  sleep 0.1
done

# --- the job completes --------------------------------------------------------------------------
run 0 timeout 30 "$HELPER" "$SERVER" ctl-test 4 60 1 3
out_is $'1 1\n3 3'
wait "$HELPER1" || fail "first helper failed: $(cat "$WORK/helper1.err")"
[[ "$(cat "$WORK/helper1.out")" == $'0 0\n2 2' ]] || fail "first helper got $(cat "$WORK/helper1.out")"
run 0 "${CTL[@]}" job ctl-test
out_has '^state: +complete$'
out_lacks '^missing'
out_has '^MS_WORKER +4 +4 +0 +4 +0 +0$'
out_has '^  3 +MS_WORKER +3 +3 +0 +127\.0\.0\.1 +ctl-test +- +active '
run 0 "${CTL[@]}" --json members ctl-test
out_has '\{"node_id":"3","rank":3,"role":"MS_WORKER",.*"state":"active",.*"local_rank":3,"node_rank":0\}\]\}$'

for _ in $(seq 50); do
  grep -q job_complete "$WORK/watch.txt" && grep -q job_complete "$WORK/watch.json" && break
  sleep 0.1
done
cp "$WORK/watch.txt" "$WORK/out"
out_has '^[0-9-]+T[0-9:.]+Z  #[0-9]+  snapshot  job forming gen [0-9]+ MS_WORKER 2/4'
out_has '  member_joined  MS_WORKER [13]@127\.0\.0\.1  job forming gen [0-9]+ MS_WORKER [34]/4  '
out_has '  job_complete  job complete gen [0-9]+ MS_WORKER 4/4'
cp "$WORK/watch.json" "$WORK/out"
out_has '^\{"seq":[0-9]+,"type":"snapshot","unix_time_ms":[0-9]+,"message":".*","job":\{"job_id":"ctl-test",.*,"member":null\}$'
out_has '^\{"seq":[0-9]+,"type":"member_joined",.*"member":\{"node_id":"3",'
out_has '^\{"seq":[0-9]+,"type":"job_complete",'
# Every line is a JSON object of its own.
out_lacks '^[^{]'

# --- non-numeric node ids: only a count of missing members --------------------------------------
"$HELPER" "$SERVER" ctl-named 3 60 alpha >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  "${CTL[@]}" --json job ctl-named 2>/dev/null | grep -q '"joined":1' && break
  sleep 0.1
done
run 0 "${CTL[@]}" job ctl-named
out_has '^missing MS_WORKER: +2 missing$'
run 0 "${CTL[@]}" jobs
out_has '^ctl-named +forming +[0-9]+ +1/3 '
out_has '^ctl-test +complete +[0-9]+ +4/4 '

echo "PASS"
