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
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "vm-tests/deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "vm-tests: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
