#!/usr/bin/env bash
# The runtime's container tests on cgroup v2: the hosts here are cgroup v1 (hybrid), while
# Raspberry Pi OS and current distributions mount only the unified v2 hierarchy, as the VM
# image's Debian does. One fresh VM runs the same test programs as the host
# (runtime/tests/containers.rs and shim.rs: limits in the cgroup, the fork bomb stopped by
# pids.max, the OOM kill recorded, logs, exec, re-adoption), then nothing of theirs may be left.
#
#   vm-tests/runtime-test.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

vm_setup --no-binary
target=${CARGO_TARGET_DIR:-$VM_REPO/target}
# The test programs, as cargo built them for the host's tests (they find the shim program by
# the absolute path they were built with, so it goes to the same path in the VM).
built=$(cd "$VM_REPO" && cargo test --locked -p flotilla-runtime --test containers --test shim --no-run 2>&1)
mapfile -t tests < <(grep -oE 'Executable tests/[a-z_]+\.rs \([^)]+\)' <<<"$built" | sed -E 's/.*\((.*)\)/\1/')
[[ ${#tests[@]} -eq 2 ]] || fail "expected 2 test programs, cargo said: $built"
for i in "${!tests[@]}"; do [[ ${tests[i]} == /* ]] || tests[i]=$VM_REPO/${tests[i]}; done
shim=$target/debug/flotilla-shim
[[ -x $shim ]] || fail "no $shim"

log "booting vm1 (accel $VM_ACCEL)"
vm_boot 1
wait_ssh 1
vm_ssh 1 'stat -fc %T /sys/fs/cgroup' | grep -qx cgroup2fs || fail "vm1 does not run cgroup v2"
vm_ssh 1 "mkdir -p /root/t $(dirname "$shim")"
vm_put 1 "$shim" "$(dirname "$shim")/"
vm_put 1 "${tests[@]}" "$VM_TEST_IMAGE" /root/t/

for t in "${tests[@]}"; do
  name=$(basename "$t")
  log "cgroup v2: ${name%-*}"
  # One test at a time: some fork, which a process with several test threads must not do.
  vm_ssh 1 "cd /root/t && FLOTILLA_TEST_IMAGE=/root/t/$(basename "$VM_TEST_IMAGE") ./$name --test-threads=1" >&2 ||
    fail "the runtime's ${name%-*} tests failed on cgroup v2"
done
left=$(vm_ssh 1 'ls -d /sys/fs/cgroup/flotilla-test/* 2>/dev/null; findmnt -rn -t overlay -o TARGET; ls /tmp | grep flotilla-rt' || true)
[[ -z $left ]] || fail "the tests left behind: $left"
log "PASS: the runtime's container and shim tests on cgroup v2"
