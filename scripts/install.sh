#!/usr/bin/env bash
# Installs Flotilla on this machine (Debian, Ubuntu, Raspberry Pi OS; as root) as a systemd
# service, or removes it again.
#
#   install.sh --init [OPTIONS]                         first node of a new cluster
#   install.sh --join HOST:7946 --token T [OPTIONS]     any other node, through any member
#   install.sh [--binary FILE]                          upgrade in place (keeps the service's mode)
#   install.sh --check                                  only check the kernel, change nothing
#   install.sh --uninstall [--purge]                    remove everything install.sh made
#
# Options:
#   --binary FILE           the flotilla binary to install (default: ./flotilla beside this
#                           script, else the repository's target/release/flotilla)
#   --packages DIR          install the needed .deb files from DIR instead of the network
#                           (air-gapped sites; vm-tests/image.sh shows how to gather them)
#   --data-dir DIR          the node's state (default /var/lib/flotilla)
#   --node-name NAME, --advertise-address IP, --pod-cidr CIDR
#                           passed to `flotilla agent` (without --pod-cidr each node gets a
#                           free /24 of the cluster's 10.42.0.0/16 by itself)
#   --agent-arg ARG         any other `flotilla agent` flag (repeat it)
#   --no-start              write everything but do not start the service
#   --purge                 with --uninstall: also delete the data dir (the node's identity,
#                           store, images) and the packages install.sh installed
#
# What it does, in order: checks the kernel (nothing is changed when something is missing: it
# says what and how to fix it), installs the packages (nftables, conntrack, kmod) when missing,
# installs the binary as /usr/local/bin/flotilla, writes /etc/systemd/system/flotilla.service
# and /etc/flotilla/flotilla.env (the join token, root-only), and starts the service. Running it
# again with the same arguments changes nothing; with a new binary it replaces the binary and
# restarts the agent, and the pods keep running (their shims own them; KillMode=process).
set -euo pipefail

PREFIX_BIN=/usr/local/bin/flotilla
UNIT=/etc/systemd/system/flotilla.service
ETC=/etc/flotilla
ENV_FILE=$ETC/flotilla.env
STATE=$ETC/install.state   # what install.sh made: packages it installed, the data dir
PACKAGES=(nftables conntrack kmod)

here=$(cd "$(dirname "$0")" && pwd)
say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

mode= join= token= binary= packages= data_dir=/var/lib/flotilla start=1 purge= check_only=
agent_args=()
while (($#)); do
  case $1 in
    --init) mode=init ;;
    --join) mode=join; join=${2:?--join needs HOST:PORT}; shift ;;
    --token) token=${2:?--token needs a value}; shift ;;
    --binary) binary=${2:?--binary needs a file}; shift ;;
    --packages) packages=${2:?--packages needs a directory}; shift ;;
    --data-dir) data_dir=${2:?--data-dir needs a directory}; shift ;;
    --node-name | --advertise-address | --pod-cidr)
      agent_args+=("$1" "${2:?$1 needs a value}"); shift ;;
    --agent-arg) agent_args+=("${2:?--agent-arg needs a value}"); shift ;;
    --no-start) start= ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --check) check_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $mode == join && -z $token ]] && die "--join needs --token (the first node prints it; also in DATA_DIR/join-token there)"
[[ -n $token && $mode != join ]] && die "--token goes with --join"
[[ -n $purge && $mode != uninstall ]] && die "--purge goes with --uninstall"
if [[ $mode == join && ! $join =~ ^[^:]+:[0-9]+$ ]]; then
  die "--join: '$join' is not HOST:PORT (the cluster port is 7946)"
fi

# ---- kernel checks ------------------------------------------------------------------------
have_module() { # name: built in, loaded, or loadable
  local m=$1
  [[ -d /sys/module/$m ]] && return 0
  grep -qw "$m" "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null && return 0
  modprobe -q "$m" 2>/dev/null && return 0
  return 1
}
pi_cmdline() {
  if [[ -f /boot/firmware/cmdline.txt ]]; then echo /boot/firmware/cmdline.txt; else echo /boot/cmdline.txt; fi
}
check_kernel() {
  local problems=() ns
  for ns in net pid ipc uts mnt; do
    [[ -e /proc/self/ns/$ns ]] || problems+=("no $ns namespaces: the kernel needs CONFIG_$(tr a-z A-Z <<<"$ns")_NS=y")
  done
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    local c
    for c in memory cpu pids; do
      grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || {
        if [[ $c == memory ]]; then
          problems+=("cgroup v2 without the memory controller: add 'cgroup_memory=1 cgroup_enable=memory' to the kernel command line ($(pi_cmdline) on a Raspberry Pi, GRUB_CMDLINE_LINUX in /etc/default/grub elsewhere) and reboot")
        else
          problems+=("cgroup v2 without the $c controller: the kernel needs CONFIG_CGROUP_$(tr a-z A-Z <<<"$c")")
        fi
      }
    done
  elif [[ -d /sys/fs/cgroup/memory ]] || grep -q '^memory' /proc/cgroups 2>/dev/null; then
    awk '$1 == "memory" && $4 == 1 { ok = 1 } END { exit !ok }' /proc/cgroups || problems+=("cgroup v1 memory controller disabled: add 'cgroup_memory=1 cgroup_enable=memory' to the kernel command line ($(pi_cmdline) on a Raspberry Pi) and reboot")
    [[ -d /sys/fs/cgroup/memory ]] || problems+=("cgroup v1 memory hierarchy not mounted at /sys/fs/cgroup/memory")
  else
    problems+=("no cgroups mounted at /sys/fs/cgroup (v1 or v2): boot with systemd, or mount cgroup2 there")
  fi
  grep -qw overlay /proc/filesystems || have_module overlay || problems+=("no overlayfs: the kernel needs CONFIG_OVERLAY_FS (module overlay)")
  have_module nf_tables || problems+=("no nftables in the kernel: needs CONFIG_NF_TABLES (module nf_tables)")
  have_module veth || problems+=("no veth: the kernel needs CONFIG_VETH (module veth)")
  have_module bridge || problems+=("no bridges: the kernel needs CONFIG_BRIDGE (module bridge)")
  have_module vxlan || problems+=("no vxlan (the overlay between nodes): the kernel needs CONFIG_VXLAN (module vxlan); on a single node pass --agent-arg --backend=host-gw")
  if ((${#problems[@]})); then
    echo "install.sh: this kernel ($(uname -r)) lacks what Flotilla needs:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    return 1
  fi
  say "kernel $(uname -r): namespaces, cgroup $([[ -f /sys/fs/cgroup/cgroup.controllers ]] && echo v2 || echo v1) with memory, overlayfs, nftables, veth, bridge, vxlan: ok"
}

# ---- uninstall ----------------------------------------------------------------------------
uninstall() {
  local dd=$data_dir
  if [[ -f $STATE ]]; then
    dd=$(sed -n 's/^data_dir=//p' "$STATE")
    dd=${dd:-$data_dir}
  fi
  if command -v systemctl >/dev/null && [[ -f $UNIT ]]; then
    systemctl disable --now flotilla.service >/dev/null 2>&1 || true
  fi
  # The agent is stopped; its pods are not (KillMode=process): reset stops them and removes
  # their mounts, cgroups, addresses, the nftables table, the bridge and the VXLAN device.
  local bin=$PREFIX_BIN
  [[ -x $bin ]] || bin=${binary:-}
  if [[ -n $bin && -x $bin && -d $dd ]]; then
    "$bin" reset --data-dir "$dd" --network || say "reset reported problems (above); carrying on"
  fi
  # Whatever is still in the service's cgroup (shims of containers that were already gone).
  if command -v systemctl >/dev/null; then
    systemctl kill --signal=SIGKILL flotilla.service >/dev/null 2>&1 || true
    systemctl reset-failed flotilla.service >/dev/null 2>&1 || true
  fi
  # Anything still mounted under the data dir (an interrupted pod setup).
  if [[ -d $dd ]]; then
    { findmnt -rn -o TARGET | grep -F "$dd/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
  rm -f "$UNIT"
  command -v systemctl >/dev/null && systemctl daemon-reload || true
  rm -f "$PREFIX_BIN"
  local installed=
  [[ -f $STATE ]] && installed=$(sed -n 's/^packages=//p' "$STATE")
  if [[ -n $purge ]]; then
    rm -rf "$dd"
    say "removed the data dir $dd"
    if [[ -n $installed ]]; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $installed >/dev/null && say "removed the packages it installed: $installed"
    fi
  elif [[ -d $dd ]]; then
    say "kept the data dir $dd (the node's identity and store; --purge deletes it)"
  fi
  rm -rf "$ETC"
  say "uninstalled"
}

if [[ $mode == uninstall ]]; then
  uninstall
  exit 0
fi

check_kernel || exit 1
[[ -n $check_only ]] && exit 0

# ---- what to install ----------------------------------------------------------------------
if [[ -z $binary ]]; then
  for b in "$here/flotilla" "$here/../target/release/flotilla"; do
    [[ -x $b ]] && { binary=$b; break; }
  done
  [[ -n $binary ]] || die "no flotilla binary beside this script or in target/release: build it (cargo build --release) or give --binary FILE"
fi
[[ -f $binary && -x $binary ]] || die "--binary: '$binary' is not an executable file"
"$binary" --version >/dev/null 2>&1 || die "--binary: '$binary' does not run here ($(uname -m)); is it built for this architecture?"

if [[ -z $mode ]]; then
  [[ -f $UNIT ]] || die "give --init (a new cluster) or --join HOST:7946 --token T (an existing one)"
  ((${#agent_args[@]} == 0)) || die "--node-name, --advertise-address, --pod-cidr and --agent-arg need --init or --join (an upgrade keeps the service's flags)"
  mode=upgrade
fi

# ---- packages -----------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
prior_packages=
[[ -f $STATE ]] && prior_packages=$(sed -n 's/^packages=//p' "$STATE")
installed_now() { dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | awk '/install ok installed/ {print $1}' | sort; }
if ((${#missing[@]})); then
  pkgs_before=$(installed_now)
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} with this system's package manager, then run this again"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -n $packages ]]; then
    [[ -d $packages ]] || die "--packages: '$packages' is not a directory"
    compgen -G "$packages/*.deb" >/dev/null || die "--packages: no .deb files in '$packages'"
    say "installing ${missing[*]} from $packages"
    # dpkg, not apt: apt's sandbox user cannot read a root-only directory, and dpkg orders
    # the set itself (unpack all, then configure).
    dpkg -i "$packages"/*.deb >/dev/null || die "could not install the packages from $packages (dpkg -i said why, above)"
  else
    say "installing ${missing[*]}"
    apt-get update -qq || die "apt-get update failed (no network? use --packages DIR)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "could not install ${missing[*]}"
  fi
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || die "$p is still not installed"
  done
  # Everything that came in with them (libraries too), so --uninstall --purge can take it away.
  new_packages=$(comm -13 <(echo "$pkgs_before") <(installed_now) | xargs)
fi
installed_by_us=$(echo "$prior_packages ${new_packages:-}" | xargs -n1 2>/dev/null | sort -u | xargs)

# ---- binary, unit, environment ------------------------------------------------------------
mkdir -p "$ETC"
chmod 755 "$ETC"
changed=
if ! cmp -s "$binary" "$PREFIX_BIN"; then
  # A new file renamed over the old: the running agent keeps its (deleted) inode.
  install -m 755 "$binary" "$PREFIX_BIN.new"
  mv -f "$PREFIX_BIN.new" "$PREFIX_BIN"
  changed=1
  say "installed $PREFIX_BIN ($("$PREFIX_BIN" --version))"
fi

write_if_changed() { # file mode: content on stdin
  local f=$1 m=$2 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  chmod "$m" "$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$f"
}

if [[ $mode != upgrade ]]; then
  exec_args=(agent --data-dir "$data_dir")
  [[ $mode == init ]] && exec_args+=(--init)
  [[ $mode == join ]] && exec_args+=(--join "$join")
  exec_args+=("${agent_args[@]}")
  quoted=$(printf '%q ' "${exec_args[@]}")
  if if [[ -n $token ]]; then printf 'FLOTILLA_TOKEN=%s\n' "$token"; else echo "# no join token: this node made the cluster"; fi |
    write_if_changed "$ENV_FILE" 600; then changed=1; fi
  if write_if_changed "$UNIT" 644 <<EOF; then changed=1; fi
# Written by Flotilla's install.sh; run it again to change this (install.sh --uninstall removes it).
[Unit]
Description=Flotilla node agent
Documentation=https://github.com/flotilla/flotilla
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
EnvironmentFile=-$ENV_FILE
ExecStartPre=-/sbin/modprobe -a overlay nf_tables veth bridge vxlan br_netfilter
ExecStart=$PREFIX_BIN ${quoted% }
# The containers belong to their shims, not to the agent: stopping or restarting the agent
# (an upgrade) must not stop them, so only the agent's own process is signalled.
KillMode=process
Restart=always
RestartSec=2
LimitNOFILE=1048576
TasksMax=infinity
# Under memory pressure the kernel should pick a pod, not the node's agent.
OOMScoreAdjust=-900

[Install]
WantedBy=multi-user.target
EOF
fi
printf 'data_dir=%s\npackages=%s\n' "$data_dir" "$installed_by_us" | write_if_changed "$STATE" 644 || true

# ---- start --------------------------------------------------------------------------------
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable flotilla.service >/dev/null 2>&1
  if [[ -n $start ]]; then
    if [[ -n $changed ]] || ! systemctl is-active -q flotilla.service; then
      systemctl restart flotilla.service
      say "started flotilla.service"
    else
      say "flotilla.service is running and nothing changed"
    fi
    # Wait for the node's API (its admin config appears when it listens).
    for _ in $(seq 1 120); do
      if [[ -s $data_dir/admin.yaml ]] && "$PREFIX_BIN" --config "$data_dir/admin.yaml" get nodes >/dev/null 2>&1; then
        say "the agent answers: $PREFIX_BIN --config $data_dir/admin.yaml get nodes"
        if [[ $mode == init ]]; then
          addr=$(hostname -I 2>/dev/null | awk '{print $1}')
          for ((k = 0; k + 1 < ${#agent_args[@]}; k++)); do
            [[ ${agent_args[k]} == --advertise-address ]] && addr=${agent_args[k + 1]}
          done
          say "join other nodes with: install.sh --join $addr:7946 --token \$(cat $data_dir/join-token)"
        fi
        exit 0
      fi
      systemctl is-failed -q flotilla.service && break
      sleep 1
    done
    journalctl -u flotilla.service -n 30 --no-pager >&2 || true
    die "the agent did not answer within 120 s (journalctl -u flotilla)"
  fi
else
  say "no systemd running here: wrote $UNIT; start the agent with: $PREFIX_BIN ${quoted:-agent}"
fi
