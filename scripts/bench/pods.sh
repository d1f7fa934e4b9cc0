#!/usr/bin/env bash
# Node figures: apply-to-Running for 1, 10 and 50 pods, and the agent's CPU and RSS with 50
# probed pods, beside `runc run --detach` of as many containers in the same run.
# Extra arguments go to the benchmark (e.g. --sizes 1,10 --steady 20 --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
command -v runc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc >/dev/null
cargo bench --locked -p flotilla --bench pods -- "$@"
