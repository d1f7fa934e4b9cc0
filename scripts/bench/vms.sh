#!/usr/bin/env bash
# Benchmark of issue 9: three fresh Debian VMs under QEMU (KVM when a guest runs, TCG otherwise)
# become a Flotilla cluster with scripts/install.sh. Prints: VM boot to ssh (the baseline), start
# to a Ready 3-node cluster, a 6-replica Deployment to all Running across the VMs, the agent's
# RSS in each VM, and a power cut healed; beside them, in the same VMs and run, a 3-member etcd
# cluster (the store k3s embeds for HA): time to healthy and RSS. As root:
#
#   scripts/bench/vms.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null 2>&1; then
  echo "vms bench: installing etcd-server for the peer figures" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
FLOTILLA_VM_PEER=1 exec vm-tests/cluster-test.sh
