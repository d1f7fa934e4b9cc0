#!/usr/bin/env bash
# Builds the VM image the vm-tests boot: a minimal Debian bookworm (debootstrap from Debian's
# packages) with systemd, sshd and Debian's cloud kernel, and nothing of Flotilla's. It stands
# for a fresh machine: scripts/install.sh has to bring everything else.
#
#   vm-tests/image.sh [DIR]      (default $FLOTILLA_VM_DIR or /var/tmp/flotilla-vm)
#
# Leaves in DIR/image-<hash>/ (the hash is this script's, so an edit rebuilds):
#   rootfs.img   raw ext4 root file system (VMs boot copy-on-write overlays of it)
#   vmlinuz, initrd.img   the kernel and initramfs, booted directly by QEMU (no bootloader)
#   id_ed25519   the key root logs in with (authorized in the image)
#   debs/        the .deb files install.sh needs that the image lacks, for an offline install
#                (the VMs' network has no way out of the machine, like an air-gapped site)
# Prints that directory. Idempotent: a finished image is reused.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base=${1:-${FLOTILLA_VM_DIR:-/var/tmp/flotilla-vm}}
suite=${FLOTILLA_VM_SUITE:-bookworm}
# The Debian mirror this machine's apt already uses (its main archive, not security), so a
# machine that reaches Debian only through its own mirror builds the image too.
host_mirror() {
  {
    awk '/^URIs:/ {u = $2} /^Suites:/ && u !~ /security/ {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true
  } | head -1
}
mirror=${FLOTILLA_VM_MIRROR:-$(host_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
hash=$(cat "$0" | sha256sum | cut -c1-12)
out=$base/image-$suite-$hash

[[ $(id -u) -eq 0 ]] || { echo "image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
if [[ -f $out/done ]]; then echo "$out"; exit 0; fi

"$here/deps.sh"
mkdir -p "$base"
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"
root=$out.tmp/root

# Packages of a fresh server install: init, udev, sshd, the kernel, apt. Nothing Flotilla needs
# beyond that (no nftables, conntrack, busybox): install.sh brings those.
include=systemd-sysv,udev,dbus,openssh-server,linux-image-cloud-amd64,initramfs-tools,kmod,iproute2,procps,ca-certificates,less
echo "image.sh: debootstrap $suite into $root (a few minutes)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$out.tmp/debootstrap.log" 2>&1 || {
  tail -30 "$out.tmp/debootstrap.log" >&2
  echo "image.sh: debootstrap failed (log: $out.tmp/debootstrap.log)" >&2
  exit 1
}

# The .debs an offline install.sh needs: what apt would download for them on this image
# (after debootstrap's own are cleaned away).
chroot "$root" apt-get clean
chroot "$root" apt-get install --download-only -y -qq --no-install-recommends nftables conntrack >/dev/null
mkdir -p "$out.tmp/debs"
mv "$root"/var/cache/apt/archives/*.deb "$out.tmp/debs/"
chroot "$root" apt-get clean

# Identity and configuration. The VM's address, name and gateway come from the kernel command
# line (ip=..., systemd.hostname=...), read by systemd-network-generator, so every VM boots the
# same image.
echo "flotilla-vm" >"$root/etc/hostname"
cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,relatime 0 1
EOF
chroot "$root" systemctl enable systemd-networkd systemd-network-generator >/dev/null 2>&1
# No password anywhere: root logs in on the serial console (for debugging) and over ssh by key.
chroot "$root" passwd -d root >/dev/null
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I $TERM
EOF
ssh-keygen -q -t ed25519 -N '' -C flotilla-vm-tests -f "$out.tmp/id_ed25519"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$out.tmp/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
cat >"$root/etc/ssh/sshd_config.d/flotilla-vm.conf" <<'EOF'
PermitRootLogin prohibit-password
UseDNS no
EOF
# Quick boots: nothing waits for a network that is configured statically anyway.
chroot "$root" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

# The kernel and initramfs QEMU boots directly.
cp "$(ls "$root"/boot/vmlinuz-* | sort | tail -1)" "$out.tmp/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort | tail -1)" "$out.tmp/initrd.img"

# A sparse 4 GiB ext4 image of the tree (mkfs.ext4 -d copies it in, no loop mount needed).
truncate -s 4G "$out.tmp/rootfs.img"
mkfs.ext4 -q -F -L root -d "$root" "$out.tmp/rootfs.img"
rm -rf "$root"
touch "$out.tmp/done"
mv "$out.tmp" "$out"
# Older images of other hashes are garbage now.
for old in "$base"/image-*; do
  [[ $old == "$out" ]] || rm -rf "$old"
done
echo "$out"
