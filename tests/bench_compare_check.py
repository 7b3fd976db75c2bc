#!/usr/bin/python3
"""ctest bench_compare_smoke: scripts/bench-compare in its small mode (64 members, no chart) must
exit 0, print its table, and end with one JSON line in which ms-rendezvousd, torch's TCPStore and
etcd all completed with a positive time.

    bench_compare_check.py SCRIPT BIN_DIR ETCD_DRIVER
"""
import json
import subprocess
import sys

SYSTEMS = ("ours", "tcpstore", "etcd")


def main(script, bin_dir, driver):
    cmd = ["/usr/bin/python3", "-B", script, "--n", "64", "--no-chart", "--no-install",
           "--no-build", "--bin-dir", bin_dir, "--etcd-driver", driver, "--timeout", "30",
           "--require-all"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=55)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        print(f"FAIL: bench-compare exited {r.returncode}")
        return 1
    lines = r.stdout.strip().splitlines()
    if not any(line.startswith("N ") and "etcd (s)" in line for line in lines):
        print("FAIL: no table header in the output")
        return 1
    try:
        doc = json.loads(lines[-1])
    except (IndexError, ValueError) as e:
        print(f"FAIL: the last line is not JSON: {e}")
        return 1
    if doc.get("bench") != "compare" or doc.get("systems") != list(SYSTEMS):
        print(f"FAIL: unexpected document: {lines[-1]}")
        return 1
    results = doc.get("results") or []
    if len(results) != 1 or results[0].get("n") != 64:
        print(f"FAIL: expected one result for N=64: {results}")
        return 1
    for s in SYSTEMS:
        r = results[0].get(s) or {}
        if r.get("completed") is not True or not (r.get("total_s") or 0) > 0:
            print(f"FAIL: {s} did not complete: {r}")
            return 1
    if not doc.get("all_completed"):
        print("FAIL: all_completed is false")
        return 1
    print("PASS: " + ", ".join(f"{s} {results[0][s]['total_s']} s" for s in SYSTEMS))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
