#!/usr/bin/env bash
# Smoke test of ms-rendezvous-bench: it starts its own daemon (ms-rendezvousd next to it), joins
# small jobs one-connection-per-member and multiplexed, exits 0, and ends with the documented JSON
# line. Catches a broken join path or report format long before anyone runs the real figures.
#
#   bench_smoke.sh BENCH
set -u
BENCH=$1
check() {
  local members=$1 connections=$2 out
  shift 2
  out=$("$BENCH" join "$@" 2>&1)
  local rc=$?
  if [[ $rc != 0 ]]; then
    echo "FAIL: bench join $* exited $rc:" >&2
    echo "$out" >&2
    exit 1
  fi
  local last
  last=$(tail -n 1 <<<"$out")
  local re='^\{"scenario":"join","members":'$members',"connections":'$connections',"total_s":[0-9.]+,"joins_per_s":[0-9.]+,"p50_ms":[0-9.]+,"p99_ms":[0-9.]+,"connection_errors":0,"daemon_cpu_s":[0-9.]+,"daemon_peak_rss_kib":[0-9]+,"rss_per_member_bytes":-?[0-9]+\}$'
  if ! [[ $last =~ $re ]]; then
    echo "FAIL: last line of bench join $* is not the expected JSON:" >&2
    echo "$out" >&2
    exit 1
  fi
  grep -Eq '^result +PASS$' <<<"$out" || { echo "FAIL: no PASS in: $out" >&2; exit 1; }
  echo "ok: $last"
}
check 50 50 --members 50
check 200 10 --members 200 --connections 10 --named-nodes
# Usage errors exit 2.
"$BENCH" join --members 10 --connections 20 >/dev/null 2>&1
[[ $? == 2 ]] || { echo "FAIL: --connections > --members must be a usage error" >&2; exit 1; }
echo PASS
