#!/usr/bin/env bash
# End-to-end test of ms-rendezvousctl's output format against a real ms-rendezvousd.
#
#   ctl_test.sh BIN_DIR JOIN_HELPER
#
# BIN_DIR holds ms-rendezvousd and ms-rendezvousctl; JOIN_HELPER is ctl_test_join_helper (raw Join
# and Session RPCs, so that the job under inspection is made by the wire contract alone). Scripts
# and the README rely on these formats; this pins them: exact JSON keys and order, table rows,
# error lines and exit codes, and the liveness views (suspect, dead, degraded, recovered).
#
# Deterministic under load: every wait is for a state the daemon reports (never a fixed sleep that
# "should be enough"), with a generous deadline that fails loudly; topology and node timeouts are
# far beyond the test's run time; transient states (suspect) are observed on a daemon whose
# disconnect grace never expires, and ordered transitions through watch streams started (and seen
# to deliver their snapshot) before the transition.
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

# wait_until WHAT CMD...: polls CMD (quietly) until it succeeds; fails naming WHAT after 60 s.
wait_until() {
  local what=$1; shift
  local deadline=$((SECONDS + 60))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 0.1
  done
}
# job_json_has JOB REGEX: `ctl --json job JOB` matches REGEX.
job_json_has() { "${CTL[@]}" --json job "$1" 2>/dev/null | grep -Eq -- "$2"; }
file_has() { grep -Eq -- "$2" "$1"; }

# The main daemon: a short disconnect grace so a killed session member is declared dead at once;
# a node timeout far beyond the test (members that never heartbeat must not die of it).
"$BIN/ms-rendezvousd" --listen 127.0.0.1:0 --port-file "$WORK/port" --disconnect-grace 300ms \
  --default-node-timeout 1h >"$WORK/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || fail "daemon did not write its port file"
PORT=$(cat "$WORK/port")
SERVER=127.0.0.1:$PORT
CTL=("$BIN/ms-rendezvousctl" --server "$SERVER")
# Any age FormatAge prints: 850ms, 12.3s, 5m03s, 2h05m, 3d04h.
AGE='[0-9][0-9.]*(ms|s|m[0-9]+s|h[0-9]+m|d[0-9]+h)'

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
# Operator commands and security options: usage errors name the option and what is allowed.
run 2 "${CTL[@]}" create j;                err_has 'create needs --workers N'
run 2 "${CTL[@]}" create j --workers 0;    err_has '--workers "0" must be an integer in 1..1000000'
run 2 "${CTL[@]}" create j --workers 2 --topo-timeout-s 0; err_has '--topo-timeout-s "0" must be'
run 2 "${CTL[@]}" --tls-cert /x.pem jobs;  err_has '--tls-cert and --tls-key .* must be given together'
run 2 "${CTL[@]}" --admin-token-file /nonexistent abort j; err_has '--admin-token-file "/nonexistent" cannot be read'
run 2 "${CTL[@]}" --tls-ca /nonexistent.pem health; err_has 'MS_TLS_CA="/nonexistent.pem" cannot be read'
run 1 "${CTL[@]}" abort j;                 err_has '^ms-rendezvousctl: FAILED_PRECONDITION: AbortJob is disabled: .*--admin-token-file'
run 0 "${CTL[@]}" --help;                 out_has '^usage: ms-rendezvousctl'
# A daemon that is not there: UNAVAILABLE, exit 1.
run 1 "$BIN/ms-rendezvousctl" --server 127.0.0.1:1 --timeout-s 3 jobs
err_has '^ms-rendezvousctl: (UNAVAILABLE|DEADLINE_EXCEEDED): '

# --- a forming job: ranks 0 and 2 of 4 joined -------------------------------------------------
# A topology timeout far beyond the test's run time: a loaded machine must not fail the job.
"$HELPER" "$SERVER" ctl-test 4 3600 0 2 >"$WORK/helper1.out" 2>"$WORK/helper1.err" &
HELPER1=$!
PIDS+=($HELPER1)
wait_until "2 members of ctl-test" job_json_has ctl-test '"joined":2'
run 0 "${CTL[@]}" job ctl-test
out_has '^job: +ctl-test$'
out_has '^state: +forming$'
out_has "^topo deadline: +fails in $AGE \\(timeout 1h00m\\)$"
out_has '^node timeout: +1h00m$'
out_has '^recovery: +off$'
out_has '^liveness: +0 suspect, 0 dead$'
out_has '^missing MS_WORKER: +ranks 1, 3$'
out_has '^hosts \(1\): +127\.0\.0\.1 \(2\)$'
out_has '^ROLE +EXPECTED +JOINED +WAITING +ACTIVE +LEFT +MISSING$'
out_has '^MS_WORKER +4 +2 +2 +0 +0 +2$'
out_has '^members \(2\):$'
# Unary members hold no session: connected "no".
out_has '^  0 +MS_WORKER +- +- +- +127\.0\.0\.1 +ctl-test +- +waiting +no '
run 0 "${CTL[@]}" --json job ctl-test
out_has '^\{"job":\{"job_id":"ctl-test","state":"forming","generation":[0-9]+,"age_s":[0-9.]+,"topo_timeout_ms":3600000,"topo_deadline_in_s":[0-9.]+,"members":2,"roles":\[\{"role":"MS_WORKER","expected":4,"joined":2,"waiting":2,"active":0,"left":0,"missing":2,"missing_ranks":\[1,3\],"missing_ranks_truncated":false\}\],"hosts_total":1,"hosts":\[\{"host":"127.0.0.1","members":2\}\],"failure_reason":"","node_timeout_ms":3600000,"recovery_enabled":false,"suspect":0,"dead":0\},"members":\[\{"node_id":"0",'
out_has '"more_members":false\}$'
run 0 "${CTL[@]}" jobs
out_has '^JOB +STATE +GEN +WORKERS +PSERVERS +HOSTS +AGE +MISSING$'
out_has "^ctl-test +forming +[0-9]+ +2/4 +- +1 +$AGE +2 workers$"
run 0 "${CTL[@]}" --json jobs
out_has '^\{"jobs":\[\{"job_id":"ctl-test","state":"forming",'
run 0 "${CTL[@]}" members ctl-test
out_has '^NODE_ID +ROLE +RANK +LOCAL +NODE +HOST +HOST_NAME +DEVICE +STATE +CONNECTED +SEEN +INCARNATION +REASON$'
out_has "^2 +MS_WORKER +- +- +- +127\\.0\\.0\\.1 +ctl-test +- +waiting +no +$AGE ago +[0-9]+ +-$"
# The documented JSON shape (DESIGN.md): rank is null before the job completes.
run 0 "${CTL[@]}" members ctl-test --json
out_has '^\{"job_id":"ctl-test","members":\[\{"node_id":"0","rank":null,"role":"MS_WORKER","host":"127\.0\.0\.1","host_name":"ctl-test","device_id":-1,"state":"waiting","last_heartbeat_age_s":[0-9.]+,"incarnation":[0-9]+,"local_rank":null,"node_rank":null,"reason":"","connected":false\},\{"node_id":"2",.*\}\]\}$'

# Watchers see the rest of the formation live.
"${CTL[@]}" watch ctl-test >"$WORK/watch.txt" 2>&1 &
PIDS+=($!)
"${CTL[@]}" --json watch ctl-test >"$WORK/watch.json" 2>&1 &
PIDS+=($!)
# Both must be watching before the job completes, or they would miss the joins below.
wait_until "the watchers' snapshots" file_has "$WORK/watch.txt" snapshot
wait_until "the JSON watcher's snapshot" file_has "$WORK/watch.json" snapshot

# --- the job completes --------------------------------------------------------------------------
run 0 timeout 120 "$HELPER" "$SERVER" ctl-test 4 3600 1 3
out_is $'1 1\n3 3'
wait "$HELPER1" || fail "first helper failed: $(cat "$WORK/helper1.err")"
[[ "$(cat "$WORK/helper1.out")" == $'0 0\n2 2' ]] || fail "first helper got $(cat "$WORK/helper1.out")"
run 0 "${CTL[@]}" job ctl-test
out_has '^state: +complete$'
out_lacks '^missing'
out_has '^MS_WORKER +4 +4 +0 +4 +0 +0$'
out_has '^  3 +MS_WORKER +3 +3 +0 +127\.0\.0\.1 +ctl-test +- +active +no '
run 0 "${CTL[@]}" --json members ctl-test
out_has '\{"node_id":"3","rank":3,"role":"MS_WORKER",.*"state":"active",.*"local_rank":3,"node_rank":0,"reason":"","connected":false\}\]\}$'

wait_until "job_complete in the text watch" file_has "$WORK/watch.txt" job_complete
wait_until "job_complete in the JSON watch" file_has "$WORK/watch.json" job_complete
cp "$WORK/watch.txt" "$WORK/out"
out_has '^[0-9-]+T[0-9:.]+Z  #[0-9]+  snapshot  job forming gen [0-9]+ MS_WORKER 2/4'
out_has '  member_joined  MS_WORKER [13]@127\.0\.0\.1  job forming gen [0-9]+ MS_WORKER [34]/4  '
out_has '  job_complete  job complete gen [0-9]+ MS_WORKER 4/4'
cp "$WORK/watch.json" "$WORK/out"
out_has '^\{"seq":[0-9]+,"type":"snapshot","unix_time_ms":[0-9]+,"message":".*","job":\{"job_id":"ctl-test",.*,"member":null,"dead":\[\]\}$'
out_has '^\{"seq":[0-9]+,"type":"member_joined",.*"member":\{"node_id":"3",'
out_has '^\{"seq":[0-9]+,"type":"job_complete",'
# Every line is a JSON object of its own.
out_lacks '^[^{]'

# --- non-numeric node ids: only a count of missing members --------------------------------------
"$HELPER" "$SERVER" ctl-named 3 3600 alpha >/dev/null 2>&1 &
PIDS+=($!)
wait_until "1 member of ctl-named" job_json_has ctl-named '"joined":1'
run 0 "${CTL[@]}" job ctl-named
out_has '^missing MS_WORKER: +2 missing$'
run 0 "${CTL[@]}" jobs
out_has '^ctl-named +forming +[0-9]+ +1/3 '
out_has '^ctl-test +complete +[0-9]+ +4/4 '

# --- liveness: a session member is killed, the job fails (no recovery) --------------------------
# One helper process per member, so kill -9 breaks exactly one member's session.
declare -A FAILPID
for n in 0 1 2; do
  "$HELPER" --session "$SERVER" ctl-fail 3 3600 $n >"$WORK/fail$n.out" 2>"$WORK/fail$n.err" &
  FAILPID[$n]=$!
  PIDS+=($!)
done
wait_until "ctl-fail complete" job_json_has ctl-fail '"state":"complete"'
for n in 0 1 2; do wait_until "topology of ctl-fail member $n" file_has "$WORK/fail$n.out" "^$n $n$"; done
run 0 "${CTL[@]}" job ctl-fail
out_has '^liveness: +0 suspect, 0 dead$'
out_has '^  1 +MS_WORKER +1 +1 +0 +127\.0\.0\.1 +ctl-test +- +active +yes +'"$AGE"' ago +[0-9]+ +-$'
run 0 "${CTL[@]}" --json members ctl-fail
out_has '"node_id":"1","rank":1,.*"state":"active",.*"reason":"","connected":true\}'
"${CTL[@]}" watch ctl-fail >"$WORK/watchf.txt" 2>&1 &
PIDS+=($!)
"${CTL[@]}" --json watch ctl-fail >"$WORK/watchf.json" 2>&1 &
PIDS+=($!)
wait_until "snapshot of ctl-fail (text)" file_has "$WORK/watchf.txt" snapshot
wait_until "snapshot of ctl-fail (JSON)" file_has "$WORK/watchf.json" snapshot

kill -9 "${FAILPID[1]}"
wait_until "ctl-fail failed" job_json_has ctl-fail '"state":"failed"'
for n in 0 2; do
  wait "${FAILPID[$n]}"
  rc=$?
  [[ $rc == 3 ]] || fail "survivor $n exited $rc, want 3: $(cat "$WORK/fail$n.out" "$WORK/fail$n.err")"
  cp "$WORK/fail$n.out" "$WORK/out"
  out_has "^event $n job_failed dead=1$"
  out_has "^end $n ABORTED$"
done
run 0 "${CTL[@]}" job ctl-fail
out_has '^state: +failed$'
out_has '^liveness: +0 suspect, 1 dead$'
out_has '^failure: +.*connection lost and not resumed within [0-9.]+s'
out_has '^  1 +MS_WORKER +1 +1 +0 +127\.0\.0\.1 +ctl-test +- +dead +no +'"$AGE"' ago +[0-9]+ +connection lost and not resumed within [0-9.]+s$'
out_has '^  0 +MS_WORKER +0 +0 +0 +127\.0\.0\.1 +ctl-test +- +failed +no +'"$AGE"' ago +[0-9]+ +job failed$'
run 0 "${CTL[@]}" --json job ctl-fail
out_has '"failure_reason":"[^"]+","node_timeout_ms":3600000,"recovery_enabled":false,"suspect":0,"dead":1\},'
run 0 "${CTL[@]}" --json members ctl-fail
out_has '\{"node_id":"1","rank":1,"role":"MS_WORKER",.*"state":"dead",.*"reason":"connection lost and not resumed within [0-9.]+s","connected":false\}'
run 0 "${CTL[@]}" jobs
out_has '^ctl-fail +failed '
wait_until "job_failed in the text watch" file_has "$WORK/watchf.txt" job_failed
wait_until "job_failed in the JSON watch" file_has "$WORK/watchf.json" job_failed
cp "$WORK/watchf.txt" "$WORK/out"
out_has '  member_suspect  MS_WORKER 1@127\.0\.0\.1 rank 1  job complete '
out_has "  job_failed  job failed gen [0-9]+ MS_WORKER 3/3  .*  dead: rank 1 node '1'@127\\.0\\.0\\.1 \\(connection lost and not resumed within [0-9.]+s; last seen $AGE before\\)$"
cp "$WORK/watchf.json" "$WORK/out"
out_has '^\{"seq":[0-9]+,"type":"member_suspect",.*"member":\{"node_id":"1",.*"state":"suspect",.*"connected":false\},"dead":\[\]\}$'
out_has '^\{"seq":[0-9]+,"type":"job_failed",.*"member":null,"dead":\[\{"rank":1,"node_id":"1","host":"127\.0\.0\.1","reason":"connection lost and not resumed within [0-9.]+s","role":"MS_WORKER","last_seen_s_ago":[0-9.]+\}\]\}$'
out_lacks '^[^{]'

# --- liveness: recovery mode: degraded, then the member comes back ------------------------------
"$HELPER" --session --recovery "$SERVER" ctl-rec 2 3600 0 >"$WORK/rec0.out" 2>"$WORK/rec0.err" &
REC0=$!
PIDS+=($REC0)
"$HELPER" --session --recovery "$SERVER" ctl-rec 2 3600 1 >"$WORK/rec1.out" 2>"$WORK/rec1.err" &
REC1=$!
PIDS+=($REC1)
wait_until "ctl-rec complete" job_json_has ctl-rec '"state":"complete"'
wait_until "topology of ctl-rec member 1" file_has "$WORK/rec1.out" '^1 1$'
INC1=$("${CTL[@]}" --json members ctl-rec | grep -Eo '"node_id":"1",[^}]*"incarnation":[0-9]+' | grep -Eo '[0-9]+$')
"${CTL[@]}" --json watch ctl-rec >"$WORK/watchr.json" 2>&1 &
PIDS+=($!)
wait_until "snapshot of ctl-rec" file_has "$WORK/watchr.json" snapshot
kill -9 "$REC1"
wait_until "ctl-rec degraded" job_json_has ctl-rec '"state":"degraded"'
run 0 "${CTL[@]}" job ctl-rec
out_has '^state: +degraded$'
out_has '^recovery: +on '
out_has '^liveness: +0 suspect, 1 dead$'
out_has '^  1 +MS_WORKER +1 +1 +0 +127\.0\.0\.1 +ctl-test +- +dead +no +.* +connection lost and not resumed within [0-9.]+s$'
out_has '^  0 +MS_WORKER +0 +0 +0 +127\.0\.0\.1 +ctl-test +- +active +yes +'"$AGE"' ago +[0-9]+ +-$'
run 0 "${CTL[@]}" jobs
out_has '^ctl-rec +degraded '
wait_until "the survivor's member_dead event" file_has "$WORK/rec0.out" '^event 0 member_dead dead=1$'
# The same node id comes back: a new incarnation takes back rank 1.
"$HELPER" --session --recovery "$SERVER" ctl-rec 2 3600 1 >"$WORK/rec1b.out" 2>"$WORK/rec1b.err" &
PIDS+=($!)
wait_until "ctl-rec complete again" job_json_has ctl-rec '"state":"complete".*"dead":0\}'
wait_until "topology of the recovered member" file_has "$WORK/rec1b.out" '^1 1$'
run 0 "${CTL[@]}" --json members ctl-rec
out_has '"node_id":"1","rank":1,.*"state":"active",.*"reason":"","connected":true\}'
INC1B=$(grep -Eo '"node_id":"1",[^}]*"incarnation":[0-9]+' "$WORK/out" | grep -Eo '[0-9]+$')
[[ -n "$INC1" && -n "$INC1B" && "$INC1B" != "$INC1" ]] || fail "incarnation of node 1 did not change ($INC1 -> $INC1B)"
wait_until "member_recovered in the watch" file_has "$WORK/watchr.json" member_recovered
cp "$WORK/watchr.json" "$WORK/out"
out_has '^\{"seq":[0-9]+,"type":"member_dead",.*"job":\{"job_id":"ctl-rec","state":"degraded",.*"dead":\[\{"rank":1,"node_id":"1",.*\}\]\}$'
out_has '^\{"seq":[0-9]+,"type":"member_recovered",.*"member":\{"node_id":"1","rank":1,'
kill -0 "$REC0" 2>/dev/null || fail "the survivor of ctl-rec lost its session: $(cat "$WORK/rec0.out")"
cp "$WORK/rec0.out" "$WORK/out"
out_lacks '^end '

# --- liveness: a suspect member (a second daemon whose disconnect grace never expires) ----------
"$BIN/ms-rendezvousd" --listen 127.0.0.1:0 --port-file "$WORK/port2" --disconnect-grace 1h \
  --default-node-timeout 1h >"$WORK/daemon2.log" 2>&1 &
PIDS+=($!)
wait_until "the second daemon's port file" test -s "$WORK/port2"
CTL2=("$BIN/ms-rendezvousctl" --server "127.0.0.1:$(cat "$WORK/port2")")
for n in 0 1; do
  "$HELPER" --session "127.0.0.1:$(cat "$WORK/port2")" ctl-sus 2 3600 $n >"$WORK/sus$n.out" 2>&1 &
  SUSPID[$n]=$!
  PIDS+=($!)
done
job2_json_has() { "${CTL2[@]}" --json job "$1" 2>/dev/null | grep -Eq -- "$2"; }
wait_until "ctl-sus complete" job2_json_has ctl-sus '"state":"complete"'
kill -9 "${SUSPID[0]}"
wait_until "ctl-sus member 0 suspect" job2_json_has ctl-sus '"suspect":1,"dead":0'
run 0 "${CTL2[@]}" job ctl-sus
out_has '^state: +complete$'
out_has '^liveness: +1 suspect, 0 dead$'
out_has '^  0 +MS_WORKER +0 +0 +0 +127\.0\.0\.1 +ctl-test +- +suspect +no +'"$AGE"' ago +[0-9]+ +-$'
out_has '^  1 +MS_WORKER +1 +1 +0 +127\.0\.0\.1 +ctl-test +- +active +yes '
run 0 "${CTL2[@]}" --json members ctl-sus
out_has '\{"node_id":"0","rank":0,.*"state":"suspect",.*"connected":false\}'

echo "PASS"
