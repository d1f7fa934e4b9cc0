#!/usr/bin/env bash
# Smoke test of the cluster in a box with the real binary: up 1, import the test image, apply
# the example from inside the node's namespace, see its pods run with addresses on the node's
# pod network and serve the page to the node, down. The box is removed even on failure.
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
scripts/cluster-in-a-box.sh up 1
fl() { ip netns exec fbox-1 "$FLOTILLA_BIN" --config "$FLOTILLA_BOX_DIR/node1/admin.yaml" "$@"; }

fl get nodes | grep -q "node-1 .*Ready" || { echo "box-smoke: node-1 is not Ready" >&2; fl get nodes >&2; exit 1; }
image=${FLOTILLA_TEST_IMAGE:-$target/flotilla-test-image.tar}
[[ -s $image ]] || scripts/test-image.sh "$image"
fl image import "$image" >/dev/null
fl apply -f examples/web.yaml
ok=
for _ in $(seq 1 300); do
  if [[ $(fl get pods -l app=web -o wide | grep -c ' Running .* 10\.42\.0\.[0-9]* *node-1') -eq 3 ]]; then ok=1; break; fi
  sleep 0.1
done
[[ -n $ok ]] || { echo "box-smoke: expected 3 running web pods with addresses on node-1" >&2; fl get pods -o wide >&2; cat "$FLOTILLA_BOX_DIR/node1.log" >&2; exit 1; }
ip=$(fl get pods -l app=web -o wide | awk 'NR==2 {print $6}')
page=$(ip netns exec fbox-1 busybox wget -qO- "http://$ip:8080/")
[[ $page == "<h1>Hello from Flotilla</h1>" ]] || { echo "box-smoke: pod $ip answered '$page'" >&2; exit 1; }
# The Service, by name from inside a pod (cluster DNS, then the nftables proxy), once the pods
# are Ready (their readiness probe gates the endpoints).
pod=$(fl get pods -l app=web -o name | head -1)
page=
for _ in $(seq 1 150); do
  page=$(fl exec "$pod" -- wget -qO- http://web/ 2>/dev/null) && break
  sleep 0.2
done
[[ $page == "<h1>Hello from Flotilla</h1>" ]] || { echo "box-smoke: the web Service answered '$page'" >&2; cat "$FLOTILLA_BOX_DIR/node1.log" >&2; exit 1; }
scripts/cluster-in-a-box.sh down
trap - EXIT
ip netns list | grep -q '^fbox-' && { echo "box-smoke: namespaces left after down" >&2; exit 1; }
echo "box-smoke: ok"
