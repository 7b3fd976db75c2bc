#!/usr/bin/env bash
# Smoke test of ms-rendezvous-bench: it starts its own daemon (ms-rendezvousd next to it), joins
# small jobs one-connection-per-member and multiplexed, with and without a warm-up round and
# repeated rounds, exits 0, and ends with the documented JSON line. Catches a broken join path or
# report format long before anyone runs the real figures.
#
#   bench_smoke.sh BENCH
set -u
BENCH=$1
# check MEMBERS CONNECTIONS WARMUP(true|false) ROUNDS BENCH-ARGS...
check() {
  local members=$1 connections=$2 warmup=$3 rounds=$4 out
  shift 4
  out=$("$BENCH" join "$@" 2>&1)
  local rc=$?
  if [[ $rc != 0 ]]; then
    echo "FAIL: bench join $* exited $rc:" >&2
    echo "$out" >&2
    exit 1
  fi
  local last
  last=$(tail -n 1 <<<"$out")
  local num='[0-9]+(\.[0-9]+)?' bytes='-?[0-9]+'
  local list=$num
  for ((i = 1; i < rounds; ++i)); do list+=",$num"; done
  local re='^\{"scenario":"join","members":'$members',"connections":'$connections
  re+=',"warmup":'$warmup',"total_s":'$num',"rounds":\['$list'\],"joins_per_s":'$num
  re+=',"p50_ms":'$num',"p99_ms":'$num',"connection_errors":0,"daemon_cpu_s":'$num
  re+=',"daemon_peak_rss_kib":[0-9]+,"rss_per_member_bytes":'$bytes
  re+=',"peak_rss_per_member_bytes":'$bytes',"retained_rss_per_member_bytes":'$bytes'\}$'
  if ! [[ $last =~ $re ]]; then
    echo "FAIL: last line of bench join $* is not the expected JSON:" >&2
    echo "$out" >&2
    exit 1
  fi
  grep -Eq '^result +PASS$' <<<"$out" || { echo "FAIL: no PASS in: $out" >&2; exit 1; }
  local mode=cold
  [[ $warmup == true ]] && mode=warm
  grep -Eq "^mode +$mode: " <<<"$out" || { echo "FAIL: no \"mode $mode\" row in: $out" >&2; exit 1; }
  echo "ok: $last"
}
check 50 50 false 1 --members 50
check 200 10 false 1 --members 200 --connections 10 --named-nodes
check 100 10 true 2 --members 100 --connections 10 --warmup --repeat 2
# Usage errors exit 2.
"$BENCH" join --members 10 --connections 20 >/dev/null 2>&1
[[ $? == 2 ]] || { echo "FAIL: --connections > --members must be a usage error" >&2; exit 1; }
"$BENCH" join --members 10 --repeat 0 >/dev/null 2>&1
[[ $? == 2 ]] || { echo "FAIL: --repeat 0 must be a usage error" >&2; exit 1; }
echo PASS
