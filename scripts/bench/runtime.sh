#!/usr/bin/env bash
# Container start (create + start + exit + delete of /bin/true) beside runc and crun on the same
# bundle, and the import time of the 3-layer test image. Extra arguments go to the benchmark
# (e.g. --runs 50). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
for p in runc crun; do
  command -v "$p" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
cargo bench --locked -p flotilla-runtime --bench container_start -- "$@"
