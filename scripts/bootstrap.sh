#!/usr/bin/env bash
# Installs the Debian packages that building and testing ms-rendezvous needs.
# Idempotent: when everything is present it prints nothing and exits 0.
# Usage: scripts/bootstrap.sh   (called by scripts/demo.sh and scripts/test.sh)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev
  libsqlite3-dev
  libgloo-dev
  python3-yaml
  openmpi-bin
  pybind11-dev python3-dev
  python3-torch python3-numpy
  prometheus-cpp-dev curl
  libsystemd-dev systemd
  python3-grpcio python3-grpc-tools
  clang libclang-rt-14-dev
  etcd-server etcd-client
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "bootstrap: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has stale or no package lists: refresh them before installing.
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
