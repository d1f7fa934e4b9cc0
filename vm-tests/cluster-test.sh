#!/usr/bin/env bash
# A real 3-VM cluster: three fresh Debian VMs under QEMU on a private network (in a network
# namespace this script makes), Flotilla installed in each with scripts/install.sh, joined into
# one cluster, driven from the host's CLI through a VM, and one VM's power cut.
#
#   vm-tests/cluster-test.sh
#
# Checks: the 3 nodes go Ready (vm2 joins through vm1, vm3 through vm2: any member takes a
# join); a 6-replica Deployment applied from the host through vm2 runs on all three VMs; its
# Service answers from every VM; upgrading vm1's binary in place (a voter) keeps its pods and
# the quorum; after vm3's power is cut its pods come back on vm1 and vm2 and the remaining two
# voters keep taking writes. Prints the figures of the benchmark (time to a Ready cluster, to 6
# pods Running, agent RSS per VM). Everything it made is removed when it ends, passed or failed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

vm_setup
N=3
P=/root/payload

t_start=$SECONDS
log "booting $N VMs (accel $VM_ACCEL)"
for i in $(seq 1 $N); do vm_boot "$i"; done
for i in $(seq 1 $N); do wait_ssh "$i"; done
t_booted=$((SECONDS - t_start))
log "all $N VMs answer ssh after ${t_booted} s"

for i in $(seq 1 $N); do
  { vm_ssh "$i" "mkdir -p $P" && vm_put "$i" "$VM_BINARY" "$VM_REPO/scripts/install.sh" "$VM_IMAGE/debs" "$VM_TEST_IMAGE" "$P/"; } &
done
for i in $(seq 1 $N); do wait -n || fail "copying the payload to a VM failed"; done

install_node() { # I extra-args...
  local i=$1; shift
  # No --pod-cidr: each node gets a free /24 of the cluster CIDR by itself.
  vm_ssh "$i" "$P/install.sh --binary $P/flotilla --packages $P/debs --node-name vm$i --advertise-address $(vm_ip "$i") $*"
}
log "vm1: install.sh --init"
install_node 1 --init
token=$(vm_ssh 1 'cat /var/lib/flotilla/join-token')
log "vm2: install.sh --join vm1"
install_node 2 --join "$(vm_ip 1):7946" --token "$token"
log "vm3: install.sh --join vm2 (any member takes a join)"
install_node 3 --join "$(vm_ip 2):7946" --token "$token"

# The host's CLI, through vm2: vm1's admin kubeconfig (cluster-wide credentials) for vm2's
# address, as `flotilla kubeconfig --server` prints one for another machine.
CFG=$VM_RUN/admin.yaml
vm_ssh 1 "flotilla --config /var/lib/flotilla/admin.yaml kubeconfig --server https://$(vm_ip 2):7443" >"$CFG"
cli() { in_ns "$VM_BINARY" --config "$CFG" "$@"; }
wait_until() { # seconds description command...
  local t=$1 what=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= t)); then
      cli get nodes -o wide >&2 || true
      cli get pods -o wide >&2 || true
      fail "$what: not within ${t}s"
    fi
    sleep 1
  done
}
all_ready() { [[ $(cli get nodes | awk '$2 == "Ready"' | wc -l) -eq $N ]]; }
node_is() { cli get nodes | grep -Eq "^$1 +$2 "; }
wait_until 180 "$N nodes Ready" all_ready
t_ready=$((SECONDS - t_start))
cli get nodes -o wide
cidrs=$(cli get nodes -o json | grep -o '"podCIDR": *"[^"]*"' | sort -u | wc -l)
[[ $cidrs -eq $N ]] || { cli get nodes -o yaml >&2; fail "the $N nodes do not hold $N distinct pod CIDRs"; }
log "a Ready $N-node cluster ${t_ready} s after the first VM was started, each with its own pod CIDR"

for i in $(seq 1 $N); do
  vm_ssh "$i" "flotilla --config /var/lib/flotilla/admin.yaml image import $P/$(basename "$VM_TEST_IMAGE")" >/dev/null &
done
for i in $(seq 1 $N); do wait -n || fail "importing the test image into a VM failed"; done

log "a 6-replica Deployment and its Service, from the host through vm2"
running() { cli get pods -l app=web -o wide | awk '$3 == "Running" && $2 == "1/1"' | wc -l; }
t0=$SECONDS
sed 's/replicas: 3/replicas: 6/' "$VM_REPO/examples/web.yaml" | cli apply -f -
six_running() { [[ $(running) -eq 6 ]]; }
wait_until 300 "6 pods Running and Ready" six_running
t_pods=$((SECONDS - t0))
cli get pods -l app=web -o wide
nodes_used=$(cli get pods -l app=web -o wide | awk 'NR > 1 {print $7}' | sort -u | xargs)
[[ $(wc -w <<<"$nodes_used") -eq $N ]] || fail "the pods did not spread over the $N VMs: $nodes_used"
log "6 pods Running on $nodes_used in ${t_pods} s"

cluster_ip=$(cli get svc web | awk 'NR == 2 {print $3}')
page() { vm_ssh "$1" "exec 3<>/dev/tcp/$2/$3 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3"; }
for i in $(seq 1 $N); do
  page "$i" "$cluster_ip" 80 | grep -q "Hello from Flotilla" || fail "vm$i cannot reach the Service at $cluster_ip"
done
log "the Service ($cluster_ip) answers from every VM"

rss=()
for i in $(seq 1 $N); do
  rss+=("vm$i $(vm_ssh "$i" 'awk "/VmRSS/ {printf \"%.1f MiB\", \$2 / 1024}" /proc/$(systemctl show -p MainPID --value flotilla.service)/status')")
done

# The peer, in the same VMs and run (scripts/bench/vms.sh sets FLOTILLA_VM_PEER=1): a 3-member
# etcd cluster (Debian's etcd-server, the store k3s embeds for HA), time to healthy and RSS.
peer=
if [[ -n ${FLOTILLA_VM_PEER:-} ]]; then
  command -v etcd >/dev/null || fail "FLOTILLA_VM_PEER needs etcd on the host (Debian's etcd-server)"
  members=$(for i in $(seq 1 $N); do printf 'e%s=http://%s:2380,' "$i" "$(vm_ip "$i")"; done)
  for i in $(seq 1 $N); do vm_put "$i" "$(command -v etcd)" "$P/etcd" & done
  for i in $(seq 1 $N); do wait -n || fail "copying etcd failed"; done
  t0=$SECONDS
  for i in $(seq 1 $N); do
    vm_ssh "$i" "systemd-run -q --unit etcd-peer $P/etcd --name e$i --data-dir /var/tmp/etcd-peer \
      --listen-peer-urls http://$(vm_ip "$i"):2380 --initial-advertise-peer-urls http://$(vm_ip "$i"):2380 \
      --listen-client-urls http://$(vm_ip "$i"):2379 --advertise-client-urls http://$(vm_ip "$i"):2379 \
      --initial-cluster ${members%,} --initial-cluster-state new --log-level error"
  done
  etcd_healthy() {
    local i
    for i in $(seq 1 $N); do
      vm_ssh "$i" "exec 3<>/dev/tcp/$(vm_ip "$i")/2379 && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3" | grep -q '"health":"true"' || return 1
    done
  }
  wait_until 180 "the etcd peer healthy" etcd_healthy
  t_etcd=$((SECONDS - t0))
  etcd_rss=()
  for i in $(seq 1 $N); do
    etcd_rss+=("vm$i $(vm_ssh "$i" 'awk "/VmRSS/ {printf \"%.1f MiB\", \$2 / 1024}" /proc/$(systemctl show -p MainPID --value etcd-peer.service)/status')")
    vm_ssh "$i" "systemctl stop etcd-peer.service; rm -rf /var/tmp/etcd-peer $P/etcd"
  done
  peer="
  peer: etcd 3-member cluster started -> healthy ${t_etcd} s (no pods, no API, no proxy)
  peer: etcd RSS, empty store                   ${etcd_rss[*]}"
fi

log "upgrade vm1's binary in place (a voter) while writes go through vm2"
httpd_vm1=$(vm_ssh 1 "pgrep -x httpd | sort | xargs")
vm_ssh 1 "cp $P/flotilla $P/flotilla-new && printf upgrade >>$P/flotilla-new && $P/install.sh --binary $P/flotilla-new" >/dev/null
for k in 1 2 3; do
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: during-upgrade-%s\ndata:\n  k: v\n' "$k" | cli apply -f - >/dev/null ||
    fail "a write failed while vm1 was being upgraded"
done
wait_until 60 "vm1 Ready after its upgrade" node_is vm1 Ready
sleep 3
[[ $(vm_ssh 1 "pgrep -x httpd | sort | xargs") == "$httpd_vm1" ]] || fail "the upgrade restarted vm1's containers"
log "vm1 upgraded: its pods kept running, the quorum kept taking writes"

log "cut vm3's power"
on_vm3=$(cli get pods -l app=web -o wide | awk '$7 == "vm3"' | wc -l)
t0=$SECONDS
vm_power_off 3
wait_until 120 "vm3 NotReady" node_is vm3 NotReady
log "vm3 NotReady after $((SECONDS - t0)) s"
# Writes through each remaining voter: 2 of 3 is a quorum.
for i in 1 2; do
  sed -i -E "s|^( *server:).*|\1 https://$(vm_ip "$i"):7443|" "$CFG"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-power-cut-vm%s\ndata:\n  k: v\n' "$i" | cli apply -f - ||
    fail "a write through vm$i failed with vm3 gone"
done
replaced() { cli get pods -l app=web -o wide | awk '$3 == "Running" && $2 == "1/1" && $7 != "vm3"' | wc -l; }
all_replaced() { [[ $(replaced) -eq 6 ]]; }
wait_until 240 "vm3's pods replaced" all_replaced
t_heal=$((SECONDS - t0))
cli get pods -l app=web -o wide
log "vm3's $on_vm3 pods replaced on vm1 and vm2 ${t_heal} s after its power cut"
for i in 1 2; do
  page "$i" "$cluster_ip" 80 | grep -q "Hello from Flotilla" || fail "vm$i cannot reach the Service after vm3 went"
done

cat <<EOF

== vm-tests figures ($N VMs, QEMU $VM_ACCEL, ${VM_MEM} MiB and ${FLOTILLA_VM_CPUS:-1} vCPU each, on $(nproc) host cores)
  VMs booted to ssh (the baseline)              ${t_booted} s
  start to a Ready $N-node cluster (install.sh) ${t_ready} s
  6-replica Deployment applied -> all Running   ${t_pods} s
  agent RSS after the Deployment                ${rss[*]}
  power cut -> its $on_vm3 pods Running elsewhere   ${t_heal} s (node grace 30 s by default)${peer}
EOF
log "PASS: 3-VM cluster: install, join, spread, Service from every VM, upgrade in place, power cut"
