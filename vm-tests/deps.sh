#!/usr/bin/env bash
# Installs the Debian packages the VM tests need on the host, and only those missing.
set -euo pipefail

PACKAGES=(
  qemu-system-x86 # the VMs (KVM when it works, TCG otherwise)
  qemu-utils      # qemu-img: copy-on-write disks over the shared image
  debootstrap     # the VM image, from Debian's packages
  e2fsprogs       # mkfs.ext4 -d: the image's file system without a loop mount
  openssh-client  # ssh/scp into the VMs
  iproute2        # the network namespace, bridge and taps the VMs live on
)
# Twice: installing one package can remove another (Debian's qemu-system-x86 replaces a
# newer backported qemu-utils, and qemu-img goes with it), which the second pass puts back.
updated=
for _pass in 1 2; do
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || break
  [[ $(id -u) -eq 0 ]] || { echo "vm-tests/deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "vm-tests: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  [[ -n $updated ]] || apt-get update -qq
  updated=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
done
command -v qemu-img >/dev/null || { echo "vm-tests/deps.sh: qemu-img is still missing" >&2; exit 1; }
