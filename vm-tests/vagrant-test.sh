#!/usr/bin/env bash
# `vagrant up` of the project's Vagrantfile, for real, on a machine with no internet: a local
# box made from the vm-tests image, vagrant-libvirt, and a libvirtd of the test's own running
# inside a network namespace (its networks in libvirt's "open" mode: no NAT, no firewall rules,
# no route out). Then the 3 nodes must be Ready and a Deployment must run across them.
#
#   vm-tests/vagrant-test.sh        (as root; about 15 minutes under TCG; not in the test command)
#
# The box stands for debian/bookworm64, which a person's `vagrant up` downloads: the same
# Debian 12 with a `vagrant` user (Vagrant's insecure key, sudo), rsync, nftables and conntrack
# (which install.sh would otherwise fetch), booted directly from its kernel and initramfs by the
# box's own Vagrantfile (the image has no bootloader), with QEMU's TCG when KVM does not work.
# Everything it made is removed when it ends, passed or failed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ $(id -u) -eq 0 ]] || fail "must run as root"

NS=flvag
BOX_NAME=flotilla/bookworm-local
LV_RUN=$VM_HOME/libvirt
export VAGRANT_DEFAULT_PROVIDER=libvirt FLOTILLA_BOX=$BOX_NAME VAGRANT_CHECKPOINT_DISABLE=1

deps() {
  local missing=() p
  for p in vagrant vagrant-libvirt libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base rsync; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  # No libvirt-daemon-system: it would start a libvirtd (and a NAT network) in the host's
  # network namespace. Nothing is started by the packages.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# The box, built once per image: $VM_HOME/<image>.box
make_box() {
  local box=$VM_IMAGE/vagrant.box
  [[ -f $box ]] && { echo "$box"; return; }
  local work=$VM_IMAGE/box.tmp mnt
  rm -rf "$work"
  mkdir -p "$work/mnt"
  mnt=$work/mnt
  cp --sparse=always "$VM_IMAGE/rootfs.img" "$work/root.img"
  mount -o loop "$work/root.img" "$mnt"
  for d in dev proc sys; do mount --bind "/$d" "$mnt/$d"; done
  box_mnt=$mnt
  cp /etc/resolv.conf "$mnt/etc/resolv.conf"
  local pubkey keyfile
  keyfile=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)
  [[ -f $keyfile ]] || fail "no Vagrant insecure key (keys/vagrant.pub) found"
  pubkey=$(cat "$keyfile")
  chroot "$mnt" sh -ec "
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends sudo rsync nftables conntrack >/dev/null
    apt-get clean
    useradd -m -s /bin/bash vagrant
    install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
    echo '$pubkey' >/home/vagrant/.ssh/authorized_keys
    chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
    chmod 600 /home/vagrant/.ssh/authorized_keys
    echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/vagrant
    chmod 440 /etc/sudoers.d/vagrant
    : >/etc/machine-id
    rm -f /var/lib/dbus/machine-id"
  # PubkeyAcceptedAlgorithms: Vagrant's insecure key is RSA (ssh-rsa with SHA-1 by older net-ssh).
  echo "PubkeyAcceptedAlgorithms +ssh-rsa" >"$mnt/etc/ssh/sshd_config.d/vagrant.conf"
  for d in sys proc dev; do umount "$mnt/$d"; done
  umount "$mnt"
  box_mnt=
  qemu-img convert -O qcow2 "$work/root.img" "$work/box.img"
  rm -f "$work/root.img"
  cp "$VM_IMAGE/vmlinuz" "$VM_IMAGE/initrd.img" "$work/"
  echo '{"provider": "libvirt", "format": "qcow2", "virtual_size": 4}' >"$work/metadata.json"
  cat >"$work/Vagrantfile" <<'EOF'
# The box's own settings (loaded before the project's Vagrantfile): boot the kernel and
# initramfs shipped in the box (the disk has no bootloader); QEMU's TCG unless KVM is asked for.
Vagrant.configure("2") do |config|
  config.vm.boot_timeout = 900
  config.vm.provider :libvirt do |lv|
    lv.driver = ENV["FLOTILLA_VAGRANT_DRIVER"] || "qemu"
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 ip=eth0:dhcp panic=-1 quiet"
    lv.graphics_type = "none"
    lv.video_type = "none"
    lv.management_network_mode = "open"
  end
end
EOF
  tar -C "$work" -cf "$box.tmp" --sparse metadata.json box.img Vagrantfile vmlinuz initrd.img
  mv "$box.tmp" "$box"
  rm -rf "$work"
  echo "$box"
}

libvirt_up() {
  getent passwd libvirt-qemu >/dev/null || useradd -r -s /usr/sbin/nologin libvirt-qemu
  getent passwd libvirt-dnsmasq >/dev/null || useradd -r -s /usr/sbin/nologin libvirt-dnsmasq
  mkdir -p "$LV_RUN"
  # The test's own daemon configuration; the package's files are left alone.
  mkdir -p /var/log/libvirt /etc/libvirt
  [[ -e /etc/libvirt/qemu.conf ]] || { : >/etc/libvirt/qemu.conf; made_qemu_conf=1; }
  cat >"$LV_RUN/qemu.conf" <<'EOF'
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
EOF
  cat >"$LV_RUN/libvirtd.conf" <<'EOF'
auth_unix_rw = "none"
unix_sock_group = "root"
EOF
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  # /dev/kvm hidden from libvirt (a KVM guest hangs on these hosts); libvirtd in the namespace.
  ip netns exec "$NS" unshare -m sh -c "
    mount --bind /dev/null /dev/kvm 2>/dev/null || true
    mount --bind $LV_RUN/qemu.conf /etc/libvirt/qemu.conf
    virtlogd -d -p $LV_RUN/virtlogd.pid
    libvirtd -d -p $LV_RUN/libvirtd.pid -f $LV_RUN/libvirtd.conf"
  for _ in $(seq 1 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -c qemu:///system version >/dev/null || fail "libvirtd did not start"
  local net
  for net in "vagrant-libvirt 192.168.121.1 192.168.121.2 192.168.121.254" "flotilla-private 192.168.56.1"; do
    set -- $net
    local dhcp=
    [[ -n ${3:-} ]] && dhcp="<dhcp><range start='$3' end='$4'/></dhcp>"
    cat >"$LV_RUN/$1.xml" <<EOF
<network><name>$1</name><forward mode='open'/><bridge name='$(echo "$1" | cut -c1-8)-br' stp='off'/>
<ip address='$2' netmask='255.255.255.0'>$dhcp</ip></network>
EOF
    virsh -c qemu:///system net-define "$LV_RUN/$1.xml" >/dev/null
    virsh -c qemu:///system net-start "$1" >/dev/null
  done
}

cleanup() {
  set +e
  trap - ERR
  if [[ -n ${box_mnt:-} ]]; then
    for d in sys proc dev; do umount "$box_mnt/$d" 2>/dev/null; done
    umount "$box_mnt" 2>/dev/null
  fi
  if [[ -d $VM_REPO/.vagrant ]]; then
    (cd "$VM_REPO" && ip netns exec "$NS" vagrant destroy -f >/dev/null 2>&1)
  fi
  for p in libvirtd virtlogd; do
    [[ -f $LV_RUN/$p.pid ]] && kill "$(cat "$LV_RUN/$p.pid")" 2>/dev/null
  done
  sleep 1
  pkill -f "qemu-system-x86_64 -name guest=main_node" 2>/dev/null
  pkill -f "dnsmasq --conf-file=/var/lib/libvirt/dnsmasq/" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  vagrant box remove -f "$BOX_NAME" >/dev/null 2>&1
  rm -rf "$LV_RUN" "$VM_REPO/.vagrant" /var/lib/libvirt/images/main_node*.img /var/lib/libvirt/images/flotilla-VAGRANTSLASH-*
  rm -f /etc/libvirt/qemu/networks/{vagrant-libvirt,flotilla-private}.xml /etc/libvirt/qemu/main_node*.xml
  # The daemon's own state (the pool vagrant-libvirt defined, network pids and leases).
  rm -rf /run/libvirt /etc/libvirt/storage/default.xml /etc/libvirt/storage/autostart/default.xml /var/lib/libvirt/dnsmasq/{vagrant-libvirt,flotilla-private}*
  [[ -n ${made_qemu_conf:-} ]] && rm -f /etc/libvirt/qemu.conf
  [[ -n ${placed_bin:-} ]] && rm -f "$VM_REPO/target/release/flotilla"
  [[ -n ${placed_image:-} ]] && rm -f "$VM_REPO/target/flotilla-test-image.tar"
  [[ -n ${made_target:-} ]] && rm -rf "$VM_REPO/target"
}
trap cleanup EXIT

deps
vm_image
vm_binary
vm_test_image
# The Vagrantfile syncs the project's target/release/flotilla and the test image.
[[ -d $VM_REPO/target ]] || made_target=1
mkdir -p "$VM_REPO/target/release"
if [[ ! -e $VM_REPO/target/release/flotilla ]]; then cp "$VM_BINARY" "$VM_REPO/target/release/flotilla"; placed_bin=1; fi
if [[ ! -e $VM_REPO/target/flotilla-test-image.tar ]]; then cp "$VM_TEST_IMAGE" "$VM_REPO/target/flotilla-test-image.tar"; placed_image=1; fi
log "the box"
make_box >/dev/null
box=$VM_IMAGE/vagrant.box
vagrant box add -f --name "$BOX_NAME" "$box" >/dev/null
log "libvirtd in namespace $NS"
libvirt_up

log "vagrant up (3 nodes, one after another)"
t0=$SECONDS
(cd "$VM_REPO" && ip netns exec "$NS" vagrant up)
t_up=$((SECONDS - t0))
nodes() { cd "$VM_REPO" && ip netns exec "$NS" vagrant ssh node1 -c 'sudo flotilla --config /var/lib/flotilla/admin.yaml get nodes' 2>/dev/null; }
start=$SECONDS
until [[ $(nodes | awk '$2 == "Ready"' | wc -l) -eq 3 ]]; do
  ((SECONDS - start < 120)) || { nodes >&2; fail "3 nodes not Ready"; }
  sleep 2
done
nodes
log "vagrant up to a Ready 3-node cluster: $((SECONDS - t0)) s (vagrant up itself: ${t_up} s)"
(cd "$VM_REPO" && ip netns exec "$NS" vagrant ssh node2 -c "sed 's/replicas: 3/replicas: 6/' /vagrant/examples/web.yaml | sudo flotilla --config /var/lib/flotilla/admin.yaml apply -f -")
start=$SECONDS
pods() { cd "$VM_REPO" && ip netns exec "$NS" vagrant ssh node3 -c 'sudo flotilla --config /var/lib/flotilla/admin.yaml get pods -o wide' 2>/dev/null; }
until [[ $(pods | awk '$2 == "1/1" && $3 == "Running"' | wc -l) -eq 6 ]]; do
  ((SECONDS - start < 300)) || { pods >&2; fail "6 pods not Running"; }
  sleep 2
done
pods
[[ $(pods | awk 'NR > 1 {print $7}' | sort -u | wc -l) -eq 3 ]] || fail "the pods did not spread over the 3 nodes"
log "PASS: vagrant up gives a 3-node cluster that runs a Deployment across its nodes"
