#!/bin/sh
# Checks systemd/ms-rendezvousd.service with systemd-analyze, offline (no running systemd needed).
#   check_unit.sh verify   UNIT BINARY   systemd-analyze verify: no error and no warning at all
#   check_unit.sh security UNIT BINARY MAX  prints the exposure score; fails when above MAX
# The unit is copied with ExecStart= pointing at BINARY (verify checks that it is executable).
# Exit 77 (ctest SKIP_RETURN_CODE) when systemd-analyze is absent.
set -u
mode=$1 unit=$2 binary=$3 max=${4:-2.0}
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found (Debian package 'systemd'; scripts/bootstrap.sh installs it)"
  exit 77
fi
[ -x "$binary" ] || { echo "FAIL: $binary is not built"; exit 1; }
dir=$(mktemp -d /tmp/msr-systemd-XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/ms-rendezvousd#$binary#" "$unit" > "$dir/ms-rendezvousd.service"
grep -q "^ExecStart=$binary " "$dir/ms-rendezvousd.service" ||
  { echo "FAIL: ExecStart= of $unit does not start /usr/local/bin/ms-rendezvousd"; exit 1; }
cd "$dir" || exit 1
case $mode in
  verify)
    # verify exits 0 on warnings such as an unknown key: any output counts as a failure.
    out=$(systemd-analyze verify "$dir/ms-rendezvousd.service" 2>&1); rc=$?
    [ -n "$out" ] && printf '%s\n' "$out"
    if [ $rc -ne 0 ] || [ -n "$out" ]; then echo "FAIL: systemd-analyze verify (rc=$rc)"; exit 1; fi
    echo "PASS: systemd-analyze verify $unit: no errors, no warnings"
    ;;
  security)
    out=$(systemd-analyze security --offline=yes "$dir/ms-rendezvousd.service" 2>&1); rc=$?
    score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for ms-rendezvousd.service: \([0-9.]*\).*/\1/p')
    if [ $rc -ne 0 ] || [ -z "$score" ]; then
      printf '%s\n' "$out"; echo "FAIL: systemd-analyze security printed no exposure score (rc=$rc)"; exit 1
    fi
    printf '%s\n' "$out" | grep -v '^✓'   # the findings that cost points
    echo "systemd-analyze security --offline=yes: exposure score $score (limit $max)"
    if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
      echo "FAIL: exposure score $score is above $max"; exit 1
    fi
    echo "PASS: exposure score $score <= $max"
    ;;
  *) echo "usage: $0 verify|security UNIT BINARY [MAX]"; exit 2 ;;
esac
