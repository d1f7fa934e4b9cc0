#!/usr/bin/env bash
# Service proxy figures: nftables sync time for 1,000 and 5,000 services (full, one endpoint
# changed) and connect latency through a ClusterIP with 10 and 5,000 services, beside the same
# services in kube-proxy's iptables layout (iptables-nft) in the same run. Runs in network
# namespaces it makes and removes. Extra arguments go to the benchmark (--sizes, --connects).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
command -v iptables-restore >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null
cargo bench --locked -p flotilla-netproxy --bench services -- "$@"
