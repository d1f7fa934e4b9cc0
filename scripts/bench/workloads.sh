#!/usr/bin/env bash
# Workload figures: the pure scheduler placing 5,000 pods onto 100 simulated nodes, then on a
# 3-node cluster in a box with real containers: apply-to-Running of a 30-replica Deployment and
# a node's death to its pods Running elsewhere, then CronJob scheduling jitter on a one-node box
# beside BusyBox's crond (5 minutes). Extra arguments go to the benchmark (e.g. --replicas 12
# --grace 5, --cron-minutes 0 to leave the jitter out, --cron-only for it alone, or --no-box for
# the scheduler alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
cargo bench --locked -p flotilla --bench workloads -- "$@"
