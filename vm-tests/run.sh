#!/usr/bin/env bash
# Every VM test: the runtime's container tests on cgroup v2, install.sh on one fresh VM, then the
# 3-VM cluster. About 9 minutes on 2 cores
# under QEMU's software emulation (the first run also builds the image, about a minute, and the
# release binary). Run as root from the repository:
#
#   vm-tests/run.sh
#
# Settings (environment): FLOTILLA_BIN (a built binary; else target/release/flotilla is built),
# FLOTILLA_VM_ACCEL (kvm|tcg; else detected), FLOTILLA_VM_DIR (image cache, /var/tmp/flotilla-vm),
# FLOTILLA_VM_MEM (MiB per VM, 1024), FLOTILLA_VM_CPUS (per VM, 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/runtime-test.sh"
"$here/install-test.sh"
"$here/cluster-test.sh"
