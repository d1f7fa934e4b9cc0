#!/usr/bin/env bash
# Control-plane figures: apply of 1,000 objects, single-object write p50/p99, get pods with
# 10,000 pods, agent memory idle and loaded, beside etcd (Debian's etcd-server) in the same run.
# Extra arguments go to the benchmark (e.g. --pods 2000 --samples 100).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
if ! command -v etcd >/dev/null 2>&1; then
  echo "control-plane bench: installing etcd-server for the peer figures" >&2
  # Install without starting Debian's etcd service: the benchmark runs its own on loopback.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
cargo bench --locked -p flotilla --bench control_plane -- "$@"
