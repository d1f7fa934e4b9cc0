#!/usr/bin/env bash
# Cluster figures: join-to-Ready, quorum write throughput and latency with 3 voters beside a
# 3-member etcd cluster (Debian's etcd-server) in the same run, leader failover, and one change
# reaching every node with 5, 20 and 50 agents in a box (no containers: --pod-network none).
# Extra arguments go to the benchmark (e.g. --sizes 5,20 --writes 1000).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
if ! command -v etcd >/dev/null 2>&1; then
  echo "cluster bench: installing etcd-server for the peer figures" >&2
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
cargo bench --locked -p flotilla --bench cluster -- "$@"
