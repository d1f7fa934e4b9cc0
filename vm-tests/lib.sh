# Shared by the vm-tests scripts (sourced, not run): a private network in a network namespace,
# VMs booted on it with QEMU, and ssh into them.
#
# The network: namespace $VM_NS holds bridge flvm-br (10.98.0.1/24) and one tap per VM; QEMU
# runs inside that namespace, so the VMs reach each other and the namespace, and nothing else
# (no route leaves it). VM I is 10.98.0.(10+I), hostname vmI. Run commands "from the host" in
# the namespace: `in_ns CMD...`.
# shellcheck shell=bash

VM_HOME=${FLOTILLA_VM_DIR:-/var/tmp/flotilla-vm}
VM_NS=${FLOTILLA_VM_NS:-flvm}
VM_RUN=$VM_HOME/run
VM_MEM=${FLOTILLA_VM_MEM:-1024}
VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_REPO=$(cd "$VM_HERE/.." && pwd)

# A failing command in a test names its line, so a red run says where it stopped.
trap 'log "FAIL: line $LINENO: $BASH_COMMAND (exit $?)"' ERR
set -o errtrace
shopt -s inherit_errexit

log() { printf '%s vm-tests: %s\n' "$(date +%T)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

vm_ip() { echo "10.98.0.$((10 + $1))"; }
in_ns() { ip netns exec "$VM_NS" "$@"; }

# The image (built once, then reused): sets VM_IMAGE.
vm_image() {
  VM_IMAGE=$("$VM_HERE/image.sh" "$VM_HOME" | tail -1)
  [[ -f $VM_IMAGE/done ]] || fail "no VM image"
}

# KVM when a guest really runs under it, QEMU's software emulation (TCG) otherwise: on some
# hosts /dev/kvm opens but a guest hangs, so a tiny guest has to print before KVM is trusted.
vm_accel() {
  if [[ -n ${FLOTILLA_VM_ACCEL:-} ]]; then echo "$FLOTILLA_VM_ACCEL"; return; fi
  if [[ -c /dev/kvm ]] && [[ -r /dev/kvm ]]; then
    local out
    out=$(timeout 8 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none \
      -kernel "$VM_IMAGE/vmlinuz" -append "console=ttyS0 panic=-1 rdinit=/bin/true" \
      -serial stdio -no-reboot 2>/dev/null | tr -d '\r' | grep -m1 -o 'Linux version' || true)
    if [[ -n $out ]]; then echo kvm; return; fi
  fi
  echo tcg
}

net_up() {
  mkdir -p "$VM_RUN"
  if ip netns list | grep -qw "$VM_NS"; then return; fi
  ip netns add "$VM_NS"
  in_ns ip link set lo up
  in_ns ip link add flvm-br type bridge
  in_ns ip addr add 10.98.0.1/24 dev flvm-br
  in_ns ip link set flvm-br up
}

# vm_boot I [KERNEL-ARGS]: boots VM I from a copy-on-write overlay of the image (a fresh
# machine), with extra kernel command-line arguments if given.
vm_boot() {
  local i=$1 extra=${2:-} ip mac disk=$VM_RUN/vm$1.qcow2 accel cpu
  ip=$(vm_ip "$i")
  mac=$(printf '52:54:00:98:00:%02x' "$((10 + i))")
  [[ -f $disk ]] || qemu-img create -q -f qcow2 -F raw -b "$VM_IMAGE/rootfs.img" "$disk"
  in_ns ip link show "flvm-tap$i" >/dev/null 2>&1 || {
    in_ns ip tuntap add dev "flvm-tap$i" mode tap
    in_ns ip link set "flvm-tap$i" master flvm-br up
  }
  accel=${VM_ACCEL:=$(vm_accel)}
  cpu=max
  [[ $accel == kvm ]] && cpu=host
  in_ns qemu-system-x86_64 -name "vm$i" -machine q35 -accel "$accel" -cpu "$cpu" \
    -smp "${FLOTILLA_VM_CPUS:-1}" -m "$VM_MEM" -nodefaults -display none -no-reboot \
    -kernel "$VM_IMAGE/vmlinuz" -initrd "$VM_IMAGE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 ip=$ip::10.98.0.1:255.255.255.0:vm$i:eth0:off systemd.hostname=vm$i panic=-1 quiet $extra" \
    -drive "file=$disk,if=virtio,format=qcow2,cache=unsafe" \
    -netdev "tap,id=n0,ifname=flvm-tap$i,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=$mac" \
    -device virtio-rng-pci \
    -serial "file:$VM_RUN/vm$i.console" \
    -pidfile "$VM_RUN/vm$i.pid" -daemonize
}

VM_SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=5 -o BatchMode=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
vm_ssh() {
  local i=$1; shift
  in_ns ssh -i "$VM_IMAGE/id_ed25519" "${VM_SSH_OPTS[@]}" "root@$(vm_ip "$i")" "$@"
}
# vm_put I SRC... DEST
vm_put() {
  local i=$1; shift
  local args=("$@") dest=${*: -1}
  unset 'args[${#args[@]}-1]'
  in_ns scp -q -p -i "$VM_IMAGE/id_ed25519" "${VM_SSH_OPTS[@]}" -r "${args[@]}" "root@$(vm_ip "$i"):$dest"
}
vm_get() {
  local i=$1 src=$2 dest=$3
  in_ns scp -q -i "$VM_IMAGE/id_ed25519" "${VM_SSH_OPTS[@]}" "root@$(vm_ip "$i"):$src" "$dest"
}

# wait_ssh I [SECONDS]: until the VM's sshd answers.
wait_ssh() {
  local i=$1 t=${2:-300} start=$SECONDS
  while ((SECONDS - start < t)); do
    vm_ssh "$i" true 2>/dev/null && return 0
    vm_alive "$i" || { tail -30 "$VM_RUN/vm$i.console" >&2; fail "vm$i's QEMU exited"; }
    sleep 2
  done
  tail -40 "$VM_RUN/vm$i.console" >&2
  fail "vm$i: no ssh within ${t}s"
}

vm_alive() { [[ -f $VM_RUN/vm$1.pid ]] && kill -0 "$(cat "$VM_RUN/vm$1.pid")" 2>/dev/null; }

# The power cord: QEMU killed, the guest gets no chance to shut down.
vm_power_off() {
  local pid
  pid=$(cat "$VM_RUN/vm$1.pid")
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$VM_RUN/vm$1.pid"
}

# Everything the VM tests made: QEMU processes, the namespace (taps, bridge), the disks.
vm_down() {
  local p
  for p in "$VM_RUN"/vm*.pid; do
    [[ -f $p ]] || continue
    kill -9 "$(cat "$p")" 2>/dev/null || true
  done
  sleep 0.5
  ip netns del "$VM_NS" 2>/dev/null || true
  rm -rf "$VM_RUN"
}

# The release binary the VMs get, built here when missing or older than the sources.
vm_binary() {
  local target=${CARGO_TARGET_DIR:-$VM_REPO/target}
  VM_BINARY=${FLOTILLA_BIN:-$target/release/flotilla}
  if [[ -z ${FLOTILLA_BIN:-} ]]; then
    (cd "$VM_REPO" && cargo build --locked --release -p flotilla --bin flotilla >&2)
  fi
  [[ -x $VM_BINARY ]] || fail "no flotilla binary at $VM_BINARY"
}

# The test image tarball (flotilla.local/busybox:1).
vm_test_image() {
  local target=${CARGO_TARGET_DIR:-$VM_REPO/target}
  VM_TEST_IMAGE=${FLOTILLA_TEST_IMAGE:-$target/flotilla-test-image.tar}
  [[ -f $VM_TEST_IMAGE ]] || "$VM_REPO/scripts/test-image.sh" "$VM_TEST_IMAGE" >&2
}

# What every VM test starts with: root, a clean slate (removed again on exit), the image, the
# release binary (not with --no-binary), the test image, the network and the accelerator.
vm_setup() {
  [[ $(id -u) -eq 0 ]] || fail "must run as root"
  trap vm_down EXIT
  vm_down
  vm_image
  [[ ${1:-} == --no-binary ]] || vm_binary
  vm_test_image
  net_up
  VM_ACCEL=${VM_ACCEL:-$(vm_accel)}
}
