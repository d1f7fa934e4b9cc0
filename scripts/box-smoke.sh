#!/usr/bin/env bash
# Smoke test of the cluster in a box with the real binary: up 3 (node 1 inits, 2 and 3 join),
# import the test image on every node, apply the example through node 3, see its pods spread
# over the nodes with addresses on each node's pod network, reach a pod on another node over
# the VXLAN overlay, and the Service by name from a pod; down. The box is removed even on
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-$PWD/target}
export FLOTILLA_BIN=${FLOTILLA_BIN:-$target/debug/flotilla}
export FLOTILLA_BOX_DIR=${FLOTILLA_BOX_DIR:-$(mktemp -d /tmp/flotilla-smoke-XXXXXX)}
trap 'scripts/cluster-in-a-box.sh down >/dev/null 2>&1 || true' EXIT

if ip netns list | grep -qw fbox-hub; then
  echo "box-smoke: a cluster in a box is already up; not touching it" >&2
  exit 1
fi
scripts/cluster-in-a-box.sh up 3
fln() { local i=$1; shift; scripts/cluster-in-a-box.sh shell "$i" flotilla "$@"; }
fl() { fln 1 "$@"; }

ok=
for _ in $(seq 1 100); do
  [[ $(fln 3 get nodes | grep -c '^node-[123] *Ready') -eq 3 ]] && { ok=1; break; }
  sleep 0.2
done
[[ -n $ok ]] || { echo "box-smoke: node-3 does not see 3 Ready nodes" >&2; fln 3 get nodes >&2; exit 1; }
image=${FLOTILLA_TEST_IMAGE:-$target/flotilla-test-image.tar}
[[ -s $image ]] || scripts/test-image.sh "$image"
for i in 1 2 3; do fln "$i" image import "$image" >/dev/null; done
fln 3 apply -f examples/web.yaml
ok=
for _ in $(seq 1 300); do
  wide=$(fl get pods -l app=web -o wide 2>/dev/null)
  if [[ $(grep -c ' Running .* 10\.42\.[0-2]\.[0-9]* *node-[123]' <<<"$wide") -eq 3 &&
        $(awk 'NR>1 {print $7}' <<<"$wide" | sort -u | wc -l) -ge 2 ]]; then ok=1; break; fi
  sleep 0.2
done
[[ -n $ok ]] || { echo "box-smoke: expected 3 running web pods spread over the nodes" >&2; fl get pods -o wide >&2; tail -20 "$FLOTILLA_BOX_DIR"/node*.log >&2; exit 1; }
# Every pod answers node 1, also those on other nodes (the VXLAN overlay).
for ip in $(fl get pods -l app=web -o wide | awk 'NR>1 {print $6}'); do
  page=$(ip netns exec fbox-1 timeout 5 busybox wget -qO- "http://$ip:8080/" || true)
  [[ $page == "<h1>Hello from Flotilla</h1>" ]] || { echo "box-smoke: pod $ip answered '$page' to node 1" >&2; exit 1; }
done
# The Service, by name from inside a pod (cluster DNS, then the nftables proxy), once the pods
# are Ready (their readiness probe gates the endpoints).
pod=$(fl get pods -l app=web -o wide | awk '$7 == "node-1" {print $1; exit}')
[[ -n $pod ]] || pod=$(fl get pods -l app=web -o name | head -1)
page=
for _ in $(seq 1 150); do
  page=$(fl exec "$pod" -- wget -qO- http://web/ 2>/dev/null) && break
  sleep 0.2
done
[[ $page == "<h1>Hello from Flotilla</h1>" ]] || { echo "box-smoke: the web Service answered '$page'" >&2; cat "$FLOTILLA_BOX_DIR/node1.log" >&2; exit 1; }
# The real kubectl, as typed in a node's shell, reads the same admin.yaml (a kubeconfig).
nodes=$(scripts/cluster-in-a-box.sh shell 2 kubectl get nodes --no-headers)
[[ $(grep -c '^node-[123] *Ready' <<<"$nodes") -eq 3 ]] || { echo "box-smoke: kubectl get nodes on node 2 said: $nodes" >&2; exit 1; }
pods=$(scripts/cluster-in-a-box.sh shell 2 kubectl get pods -l app=web --no-headers)
[[ $(grep -c ' Running ' <<<"$pods") -eq 3 ]] || { echo "box-smoke: kubectl get pods on node 2 said: $pods" >&2; exit 1; }
# kubectl port-forward through node 2 to a pod on another node (node 2 passes the WebSocket on
# to the pod's node), fetched from node 2's loopback.
far=$(fl get pods -l app=web -o wide | awk 'NR>1 && $7 != "node-2" {print $1; exit}')
page=$(scripts/cluster-in-a-box.sh shell 2 sh -c "
  kubectl port-forward pod/$far 18080:8080 >/dev/null 2>&1 & pf=\$!
  for _ in \$(seq 1 50); do busybox wget -qO- http://127.0.0.1:18080/ 2>/dev/null && break; sleep 0.2; done
  kill \$pf")
[[ $page == "<h1>Hello from Flotilla</h1>" ]] || { echo "box-smoke: port-forward through node 2 to $far answered '$page'" >&2; exit 1; }
scripts/cluster-in-a-box.sh down
trap - EXIT
ip netns list | grep -q '^fbox-' && { echo "box-smoke: namespaces left after down" >&2; exit 1; }
echo "box-smoke: ok"
