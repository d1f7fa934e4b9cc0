#!/usr/bin/env bash
# scripts/install.sh on a fresh machine: one VM booted from the image of vm-tests/image.sh
# (Debian with systemd and sshd, nothing of Flotilla's), no network out of it.
#
#   vm-tests/install-test.sh
#
# Checks, as a person would: the kernel check passes; bad input is refused with nothing
# changed; install --init from the offline package bundle gives a running flotilla.service and
# a Ready node that runs pods from the test image; installing again changes nothing; upgrading
# the binary in place restarts the agent but no container; --uninstall --purge leaves the
# machine as it was (packages, files, units, mounts, cgroups, nftables, links, processes).
# Everything it made is removed when it ends, passed or failed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

vm_setup
log "booting vm1, and vm2 with its memory cgroup disabled as Raspberry Pi OS ships (accel $VM_ACCEL)"
vm_boot 1
vm_boot 2 cgroup_disable=memory
wait_ssh 1
wait_ssh 2
log "vm1 and vm2 are up"

log "vm2: no memory controller -> install.sh says what and how, and changes nothing"
vm_ssh 2 'mkdir -p /root/payload'
vm_put 2 "$VM_REPO/scripts/install.sh" /root/payload/
vm2_before=$(vm_ssh 2 'find /usr/local /etc/systemd/system /var/lib -xdev | sort; dpkg -l | wc -l')
for args in --check "--init --binary /bin/true"; do
  if out=$(vm_ssh 2 "/root/payload/install.sh $args" 2>&1); then fail "install.sh $args passed without a memory cgroup"; fi
  grep -q "without the memory controller: add 'cgroup_memory=1 cgroup_enable=memory'" <<<"$out" ||
    fail "install.sh $args did not explain the missing memory controller: $out"
done
echo "$out" >&2
[[ $(vm_ssh 2 'find /usr/local /etc/systemd/system /var/lib -xdev | sort; dpkg -l | wc -l') == "$vm2_before" ]] ||
  fail "a refused install changed vm2"
vm_power_off 2

# What a machine looks like, for comparing before and after. Pseudo-files and logs that change
# on their own are left out; everything install.sh could make is in.
snapshot() {
  vm_ssh 1 'set -e
    echo "## packages"; dpkg-query -W -f "\${Package} \${Status}\n" | grep "install ok installed" | sort
    echo "## files"; find /usr/local /etc/systemd/system /etc/flotilla /var/lib/flotilla /run/flotilla /opt -xdev 2>/dev/null | sort
    echo "## mounts"; findmnt -rn -o TARGET,FSTYPE | sort
    echo "## cgroups"; find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d | sort
    echo "## nftables"; nft list tables 2>/dev/null || true
    echo "## links"; ip -o link show | awk -F": " "{print \$2}" | sort
    echo "## units"; systemctl list-unit-files "flotilla*" --no-legend | sort
    echo "## processes"; ps -e -o comm= | sort -u | grep -Ev "^(kworker|ps|sort|grep|sshd|bash|sh|find)" '
}
before=$(snapshot)

vm_ssh 1 'mkdir -p /root/payload'
vm_put 1 "$VM_BINARY" "$VM_REPO/scripts/install.sh" "$VM_IMAGE/debs" "$VM_TEST_IMAGE" "$VM_REPO/examples/web.yaml" /root/payload/
P=/root/payload

log "install.sh --check"
vm_ssh 1 "$P/install.sh --check" | tee -a /dev/stderr | grep >/dev/null "cgroup v2 with memory" || fail "--check did not pass on a Debian kernel"

log "bad input is refused and changes nothing"
expect_refused() { # message-substring args...
  local want=$1 out; shift
  if out=$(vm_ssh 1 "$P/install.sh $*" 2>&1); then fail "install.sh $* succeeded"; fi
  grep -qF -- "$want" <<<"$out" || fail "install.sh $*: expected '$want', got: $out"
}
expect_refused "--join needs --token" --join 10.98.0.1:7946
expect_refused "is not HOST:PORT" --join nowhere --token x
expect_refused "give --init" --binary $P/flotilla
expect_refused "--binary: '/etc/hostname'" --init --binary /etc/hostname
[[ $(snapshot) == "$before" ]] || { diff <(echo "$before") <(snapshot) >&2 || true; fail "a refused install changed the machine"; }

log "install.sh --init (offline packages)"
install_args="--binary $P/flotilla --packages $P/debs --node-name vm1 --advertise-address $(vm_ip 1)"
t0=$SECONDS
vm_ssh 1 "$P/install.sh --init $install_args"
log "installed and answering in $((SECONDS - t0)) s"
vm_ssh 1 'systemctl is-active flotilla.service; systemctl show -p KillMode flotilla.service' | tee -a /dev/stderr | grep >/dev/null KillMode=process
F="flotilla --config /var/lib/flotilla/admin.yaml"
wait_for() { # seconds description command
  local t=$1 what=$2 start=$SECONDS; shift 2
  until vm_ssh 1 "$@" >/dev/null 2>&1; do
    ((SECONDS - start < t)) || { vm_ssh 1 "$F get pods -o wide; journalctl -u flotilla -n 40 --no-pager" >&2 || true; fail "$what: not within ${t}s"; }
    sleep 2
  done
}
wait_for 60 "node vm1 Ready" "$F get nodes | grep -E '^vm1 +Ready'"

log "pods from the test image"
vm_ssh 1 "$F image import $P/$(basename "$VM_TEST_IMAGE") && $F apply -f $P/web.yaml"
wait_for 240 "3 web pods Running and Ready" "test \$($F get pods -l app=web | grep -c ' 1/1 .*Running') -eq 3"
pod_ip=$(vm_ssh 1 "$F get pods -l app=web -o wide | awk 'NR==2 {print \$6}'")
page() { vm_ssh 1 "exec 3<>/dev/tcp/$1/$2 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3"; }
page "$pod_ip" 8080 | grep -q "Hello from Flotilla" || fail "no page from pod $pod_ip"
containers() { vm_ssh 1 "pgrep -x httpd | sort | xargs"; }
httpd_before=$(containers)
[[ $(wc -w <<<"$httpd_before") -eq 3 ]] || fail "expected 3 httpd processes, got: $httpd_before"

log "install.sh again with the same arguments changes nothing"
agent_pid=$(vm_ssh 1 'systemctl show -p MainPID --value flotilla.service')
vm_ssh 1 "$P/install.sh --init $install_args" | tee -a /dev/stderr | grep >/dev/null "nothing changed" || fail "a second install did something"
[[ $(vm_ssh 1 'systemctl show -p MainPID --value flotilla.service') == "$agent_pid" ]] || fail "a second install restarted the agent"

log "upgrade in place: a new binary, the same pods"
# A different file that runs the same program (bytes after an ELF's end are ignored).
vm_ssh 1 "cp $P/flotilla $P/flotilla-new && printf upgrade >>$P/flotilla-new"
vm_ssh 1 "$P/install.sh --binary $P/flotilla-new"
new_pid=$(vm_ssh 1 'systemctl show -p MainPID --value flotilla.service')
[[ $new_pid != "$agent_pid" && $new_pid != 0 ]] || fail "the upgrade did not restart the agent"
vm_ssh 1 "cmp $P/flotilla-new /usr/local/bin/flotilla" || fail "the upgrade did not install the new binary"
wait_for 60 "node vm1 Ready after the upgrade" "$F get nodes | grep -E '^vm1 +Ready'"
sleep 5 # a restarted agent that wrongly recreated pods would have done so by now
[[ $(containers) == "$httpd_before" ]] || fail "the upgrade restarted containers: $httpd_before -> $(containers)"
vm_ssh 1 "$F get pods -l app=web" | awk 'NR > 1 && $4 != 0 { bad = 1 } END { exit bad }' || fail "restart counts went up"
page "$pod_ip" 8080 | grep -q "Hello from Flotilla" || fail "no page after the upgrade"

log "install.sh --uninstall --purge"
vm_ssh 1 "$P/install.sh --uninstall --purge"
vm_ssh 1 "rm -rf $P"
after=$(snapshot)
if [[ $after != "$before" ]]; then
  diff <(echo "$before") <(echo "$after") >&2 || true
  fail "--uninstall --purge left something behind (diff above: < before install, > after uninstall)"
fi
log "PASS: install, reinstall, upgrade in place, uninstall on a fresh VM"
