#!/usr/bin/env bash
# Smoke test of ms-rendezvous-bench: it starts its own daemon (ms-rendezvousd next to it), joins
# small jobs one-connection-per-member and multiplexed, over Session streams and (--unary) Join
# RPCs, with and without a warm-up round and repeated rounds; runs the failure scenario (one
# member's stream broken, every survivor told) and the restart scenario (daemon kill -9'd and
# restarted, every member resumes) and the kv scenario (Sets and Gets by a few client members,
# then one Set releasing every parked Get, in memory and with --state-dir) and the heartbeat
# scenario (every heartbeat written is accepted, nobody declared dead); each exits 0 and ends
# with the documented JSON line. Catches a broken join/liveness/KV path or report format long
# before anyone runs the real figures.
# Deterministic: pass/fail depends on counts (notified, false detections, rank changes, errors),
# never on how fast a loaded machine is.
#
#   bench_smoke.sh BENCH
set -u
BENCH=$1
num='[0-9]+(\.[0-9]+)?'
snum='-?[0-9]+(\.[0-9]+)?'

# run_bench SCENARIO ARGS...: runs the bench, which must exit 0 with "result PASS"; the output
# is in $out, its last line in $last.
run_bench() {
  out=$("$BENCH" "$@" 2>&1)
  local rc=$?
  if [[ $rc != 0 ]]; then
    echo "FAIL: bench $* exited $rc:" >&2
    echo "$out" >&2
    exit 1
  fi
  last=$(tail -n 1 <<<"$out")
  grep -Eq '^result +PASS$' <<<"$out" || { echo "FAIL: no PASS in: $out" >&2; exit 1; }
}
json_is() {
  if ! [[ $last =~ $1 ]]; then
    echo "FAIL: last line of bench is not the expected JSON:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "ok: $last"
}

# check MEMBERS CONNECTIONS WARMUP(true|false) ROUNDS RPC(session|unary) BENCH-ARGS...
check() {
  local members=$1 connections=$2 warmup=$3 rounds=$4 rpc=$5
  shift 5
  run_bench join "$@"
  local bytes='-?[0-9]+'
  local list=$num
  for ((i = 1; i < rounds; ++i)); do list+=",$num"; done
  local re='^\{"scenario":"join","members":'$members',"connections":'$connections
  re+=',"warmup":'$warmup',"total_s":'$num',"rounds":\['$list'\],"joins_per_s":'$num
  re+=',"p50_ms":'$num',"p99_ms":'$num',"connection_errors":0,"daemon_cpu_s":'$num
  re+=',"daemon_peak_rss_kib":[0-9]+,"rss_per_member_bytes":'$bytes
  re+=',"peak_rss_per_member_bytes":'$bytes',"retained_rss_per_member_bytes":'$bytes
  re+=',"rpc":"'$rpc'"\}$'
  json_is "$re"
  local mode=cold
  [[ $warmup == true ]] && mode=warm
  grep -Eq "^mode +$mode: " <<<"$out" || { echo "FAIL: no \"mode $mode\" row in: $out" >&2; exit 1; }
}
check 50 50 false 1 session --members 50
check 50 50 false 1 unary --members 50 --unary
check 200 10 false 1 session --members 200 --connections 10 --named-nodes
check 100 10 true 2 session --members 100 --connections 10 --warmup --repeat 2

# failure: 30 members, one dies; all 29 survivors told, nobody else named.
run_bench failure --members 30 --connections 10 --disconnect-grace 100ms
re='^\{"scenario":"failure","members":30,"connections":10,"grace_s":0\.1,"detect_s":'$num
re+=',"detect_after_grace_s":'$snum',"fanout_s":'$num',"p50_ms":'$num',"p99_ms":'$num
re+=',"max_ms":'$num',"notified":29,"false_detections":0,"join_s":'$num'\}$'
json_is "$re"
# The grace may come as a daemon argument too.
run_bench failure --members 5 --daemon-arg=--disconnect-grace=50ms
json_is '^\{"scenario":"failure","members":5,"connections":5,"grace_s":0\.05,.*"notified":4,"false_detections":0,'

# restart: 40 members resume after kill -9 + restart of the daemon, same ranks and generation.
run_bench restart --members 40 --connections 8
re='^\{"scenario":"restart","members":40,"connections":8,"restart_s":'$num',"resume_s":'$num
re+=',"resume_from_up_s":'$snum',"p50_ms":'$snum',"p99_ms":'$snum',"resumed":40,"rank_changes":0'
re+=',"generation_changes":0,"attempts":[0-9]+,"errors":0,"join_s":'$num',"daemon_cpu_s":'$num
re+=',"bench_cpu_s":'$num',"processes":1\}$'
json_is "$re"
# The same members split over 2 worker processes (restart-worker), one job: the figures are the
# last resume in either worker, and every member of both is checked.
run_bench restart --members 40 --processes 2
re='^\{"scenario":"restart","members":40,"connections":40,.*"resumed":40,"rank_changes":0'
re+=',"generation_changes":0,"attempts":[0-9]+,"errors":0,.*"processes":2\}$'
json_is "$re"

# kv: 4 clients Set and Get 400 keys; 30 parked Gets of one key all released with the value.
run_bench kv --members 30 --connections 10 --clients 4 --ops 400 --depth 8
re='^\{"scenario":"kv","members":30,"clients":4,"set_ops_per_s":'$num',"get_ops_per_s":'$num
re+=',"set_p99_ms":'$num',"get_p99_ms":'$num',"waiters":30,"release_s":'$num',"errors":0'
re+=',"store":"memory","connections":10,"ops":400,"value_bytes":64,"depth":8,.*"released":30,'
json_is "$re"
# Durable (the bench's daemon gets a temporary --state-dir): group-committed Sets.
run_bench kv --members 12 --clients 3 --ops 90 --waiters 7 --value-bytes 1000 --durable
re='^\{"scenario":"kv","members":12,"clients":3,"set_ops_per_s":'$num',"get_ops_per_s":'$num
re+=',"set_p99_ms":'$num',"get_p99_ms":'$num',"waiters":7,"release_s":'$num',"errors":0'
re+=',"store":"sqlite",.*"released":7,'
json_is "$re"

# heartbeat: 40 members over 8 connections heartbeat every 200 ms for 1 s; the daemon accepts
# every heartbeat written and declares nobody dead (node timeout 30 s: a slow machine cannot
# turn into a false detection here, only a lost heartbeat or a broken session can fail it).
run_bench heartbeat --members 40 --connections 8 --interval 200ms --duration 1s --node-timeout-s 30
re='^\{"scenario":"heartbeat","members":40,"connections":8,"interval_s":0\.2,"duration_s":'$num
re+=',"node_timeout_s":30,"join_s":'$num',"topology_spread_s":'$num',"expected_per_s":200'
re+=',"sent":[0-9]+,"sent_in_window":[0-9]+,"sent_per_s":'$num
re+=',"accepted":[0-9]+,"accepted_per_s":'$num',"worst_window_per_s":'$num',"daemon_cpu_s":'$num
re+=',"daemon_cpu_pct":'$num',"daemon_peak_rss_kib":[0-9]+,"bench_cpu_pct":'$num',"max_lag_ms":'$num
re+=',"false_detections":0,"failure_events":0,"streams_ended":0,"processes":1\}$'
json_is "$re"
sent_is_accepted() {
  local sent accepted
  sent=$(grep -o '"sent":[0-9]*' <<<"$last" | cut -d: -f2)
  accepted=$(grep -o '"accepted":[0-9]*' <<<"$last" | cut -d: -f2)
  [[ $sent -gt 0 && $sent == "$accepted" ]] || {
    echo "FAIL: heartbeats sent ($sent) != accepted ($accepted)" >&2; exit 1; }
}
sent_is_accepted
# The same members split over 2 worker processes (heartbeat-worker), one job.
run_bench heartbeat --members 40 --connections 8 --interval 200ms --duration 1s --node-timeout-s 30 \
  --processes 2
json_is '^\{"scenario":"heartbeat","members":40,"connections":8,.*"false_detections":0,"failure_events":0,"streams_ended":0,"processes":2\}$'
sent_is_accepted

# Usage errors exit 2.
usage_error() {
  "$BENCH" "$@" >/dev/null 2>&1
  [[ $? == 2 ]] || { echo "FAIL: bench $* must be a usage error" >&2; exit 1; }
}
usage_error join --members 10 --connections 20
usage_error join --members 10 --repeat 0
usage_error failure --members 1
usage_error restart --members 10 --server 127.0.0.1:1
usage_error failure --members 10 --unary
usage_error nonsense --members 10
usage_error kv --members 10 --clients 11
usage_error kv --members 10 --waiters 11
usage_error kv --members 10 --durable --server 127.0.0.1:1
usage_error join --members 10 --clients 2
usage_error join --members 10 --interval 1s
usage_error heartbeat --members 10 --metrics 127.0.0.1:1
usage_error heartbeat --members 10 --interval 0s
usage_error heartbeat --members 10 --processes 11
usage_error join --members 10 --processes 2
usage_error failure --members 10 --processes 2
usage_error restart --members 10 --processes 11
echo PASS
