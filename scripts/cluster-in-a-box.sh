#!/usr/bin/env bash
# The cluster in a box: N agents, each in its own network namespace fbox-I, joined by a bridge
# that lives in a namespace of its own (fbox-hub), so the host's network is never touched.
#
#   scripts/cluster-in-a-box.sh up N     start N agents (node 1 inits the cluster)
#   scripts/cluster-in-a-box.sh down     stop them and remove every namespace, process, container and dir
#   scripts/cluster-in-a-box.sh status   list what is running
#   scripts/cluster-in-a-box.sh shell I [CMD...]
#                                        a shell (or CMD) in node I's namespace where `flotilla`
#                                        and `kubectl` talk to its API as typed
#
# Node I has address 10.99.0.I/24 on the box network, pod CIDR 10.42.(I-1).0/24 and its data dir
# at $FLOTILLA_BOX_DIR/nodeI (default /tmp/flotilla-box). Node 1 inits the cluster; the others join
# through it with its join token (any member would do). Extra agent flags: $FLOTILLA_AGENT_ARGS. Every data dir holds admin.yaml, the
# kubeconfig of that node's own API, which `shell I` sets for both clients:
#   scripts/cluster-in-a-box.sh shell 1 kubectl get nodes
# The agent binary is $FLOTILLA_BIN, else target/release/flotilla, else flotilla on PATH.
set -euo pipefail

BOX_DIR=${FLOTILLA_BOX_DIR:-/tmp/flotilla-box}
HUB=fbox-hub
here=$(cd "$(dirname "$0")/.." && pwd)

bin() {
  if [[ -n ${FLOTILLA_BIN:-} ]]; then echo "$FLOTILLA_BIN"; return; fi
  local t=${CARGO_TARGET_DIR:-$here/target}/release/flotilla
  if [[ -x $t ]]; then echo "$t"; return; fi
  command -v flotilla || { echo "cluster-in-a-box: no flotilla binary (build it or set FLOTILLA_BIN)" >&2; exit 1; }
}

need_root() {
  [[ $(id -u) -eq 0 ]] || { echo "cluster-in-a-box: must run as root (network namespaces)" >&2; exit 1; }
}

up() {
  local n=${1:-1}
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "cluster-in-a-box: N must be a positive number, got '$n'" >&2; exit 2; }
  need_root
  local flotilla; flotilla=$(bin)
  if ip netns list | grep -qw "$HUB"; then
    echo "cluster-in-a-box: a box is already up ('$0 down' first)" >&2
    exit 1
  fi
  mkdir -p "$BOX_DIR"
  # down uses the same binary to reset the nodes, whatever its environment then.
  echo "$flotilla" >"$BOX_DIR/flotilla.bin"
  # The kernel has one ARP table for all namespaces (limit gc_thresh3, 1,024 by default) and
  # N nodes that all talk need N² entries: raise it for big boxes, restored by down.
  local arp=/proc/sys/net/ipv4/neigh/default/gc_thresh3
  if ((n > 20)) && [[ $(cat $arp) -lt $((n * n * 2)) ]]; then
    cat $arp >"$BOX_DIR/gc_thresh3.orig"
    echo $((n * n * 2)) >$arp
  fi
  ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add fbox-br type bridge
  ip -n "$HUB" link set fbox-br up
  for i in $(seq 1 "$n"); do
    local ns=fbox-$i dir=$BOX_DIR/node$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # veth pair: eth0 inside the node, hub side enslaved to the bridge. No default route: the
    # box has no way out of the machine.
    ip -n "$ns" link add eth0 type veth peer name "veth$i" netns "$HUB"
    ip -n "$HUB" link set "veth$i" master fbox-br up
    ip -n "$ns" addr add "10.99.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$dir"
    local args=(agent --data-dir "$dir" --node-name "node-$i" --advertise-address "10.99.0.$i"
      --pod-cidr "10.42.$((i - 1)).0/24")
    if ((i == 1)); then
      args+=(--init)
    else
      args+=(--join 10.99.0.1:7946 --token "$(cat "$BOX_DIR/node1/join-token")")
    fi
    # shellcheck disable=SC2206
    args+=(${FLOTILLA_AGENT_ARGS:-})
    nsenter --net="/run/netns/$ns" "$flotilla" "${args[@]}" >"$BOX_DIR/node$i.log" 2>&1 &
    echo $! >"$BOX_DIR/node$i.pid"
    local up=
    for _ in $(seq 1 300); do
      [[ -s $dir/admin.yaml ]] && ip netns exec "$ns" "$flotilla" --config "$dir/admin.yaml" get nodes 2>/dev/null | grep -q "^node-$i " && { up=1; break; }
      kill -0 "$(cat "$BOX_DIR/node$i.pid")" 2>/dev/null || { cat "$BOX_DIR/node$i.log" >&2; echo "cluster-in-a-box: node $i exited" >&2; exit 1; }
      sleep 0.1
    done
    [[ -n $up ]] || { tail -20 "$BOX_DIR/node$i.log" >&2; echo "cluster-in-a-box: node $i did not come up within 30 s" >&2; exit 1; }
    echo "node-$i up in netns $ns (10.99.0.$i), config $dir/admin.yaml, log $BOX_DIR/node$i.log"
  done
}

down() {
  need_root
  for pidfile in "$BOX_DIR"/node*.pid; do
    [[ -e $pidfile ]] || continue
    local pid; pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    # Gone for good (its lock on the data dir with it) before reset runs.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  # Containers outlive their agent (their shims own them): remove them with the nodes.
  local flotilla=""
  if [[ -s $BOX_DIR/flotilla.bin ]]; then
    flotilla=$(cat "$BOX_DIR/flotilla.bin")
  else
    # (bin exits when it finds none; that must not end down here.)
    flotilla=$(bin 2>/dev/null) || flotilla=""
  fi
  for dir in "$BOX_DIR"/node*/; do
    [[ -d $dir ]] || continue
    if [[ ! -x $flotilla ]]; then
      echo "cluster-in-a-box: no flotilla binary to reset ${dir%/}: its containers are left running" >&2
      continue
    fi
    "$flotilla" reset --data-dir "${dir%/}" >/dev/null 2>&1 || echo "cluster-in-a-box: could not reset ${dir%/}" >&2
  done
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^fbox-' || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns"
  done
  if [[ -s $BOX_DIR/gc_thresh3.orig ]]; then
    cat "$BOX_DIR/gc_thresh3.orig" >/proc/sys/net/ipv4/neigh/default/gc_thresh3
  fi
  rm -rf "$BOX_DIR"
  echo "cluster-in-a-box: down"
}

status() {
  ip netns list | grep -E '^fbox-' || echo "no box namespaces"
  for pidfile in "$BOX_DIR"/node*.pid; do
    [[ -e $pidfile ]] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$pidfile" .pid): running (pid $pid)"; else echo "$(basename "$pidfile" .pid): stopped"; fi
  done
}

# A shell in node I's namespace, or CMD there: the node's kubeconfig in KUBECONFIG and
# FLOTILLA_CONFIG, and the box's flotilla binary first on PATH, so `flotilla get pods` and
# `kubectl get pods` work as typed.
shell() {
  local i=${1:-}
  [[ $i =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 shell I [CMD...]" >&2; exit 2; }
  shift
  need_root
  local ns=fbox-$i dir=$BOX_DIR/node$i
  if ! ip netns list | grep -qw "$ns" || [[ ! -s $dir/admin.yaml ]]; then
    echo "cluster-in-a-box: node $i is not up (no namespace $ns or no $dir/admin.yaml)" >&2
    exit 1
  fi
  local flotilla; flotilla=$(cat "$BOX_DIR/flotilla.bin")
  local bindir=$BOX_DIR/bin
  mkdir -p "$bindir"
  ln -sf "$flotilla" "$bindir/flotilla"
  local env=(env "KUBECONFIG=$dir/admin.yaml" "FLOTILLA_CONFIG=$dir/admin.yaml" "PATH=$bindir:$PATH")
  if (($#)); then
    exec ip netns exec "$ns" "${env[@]}" "$@"
  fi
  echo "node-$i (namespace $ns): flotilla and kubectl talk to its API; exit to leave" >&2
  exec ip netns exec "$ns" "${env[@]}" "PS1=[fbox-$i \\W]\\$ " bash --norc -i
}

case ${1:-} in
  up) up "${2:-1}" ;;
  down) down ;;
  status) status ;;
  shell) shift; shell "$@" ;;
  *) echo "usage: $0 up N | down | status | shell I [CMD...]" >&2; exit 2 ;;
esac
