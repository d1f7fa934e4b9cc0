#!/usr/bin/env bash
# README's main command: installs what is missing, builds Flotilla and the test image, starts a
# one-node cluster in a box (the agent in its own network namespace; the host's network is not
# touched), imports the image into the node and applies examples/web.yaml.
# Leave it with: scripts/cluster-in-a-box.sh down
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
echo "== building flotilla (release)"
cargo build --release --locked -p flotilla
target=${CARGO_TARGET_DIR:-$PWD/target}
export FLOTILLA_BIN=$target/release/flotilla

if ip netns list 2>/dev/null | grep -qw fbox-hub; then
  echo "== an earlier box is up; taking it down first"
  scripts/cluster-in-a-box.sh down
fi
echo "== starting a one-node cluster in a box"
scripts/cluster-in-a-box.sh up 1

fl() { scripts/cluster-in-a-box.sh shell 1 flotilla "$@"; }

echo "== building the test image and importing it into node-1"
scripts/test-image.sh "$target/flotilla-test-image.tar"
fl image import "$target/flotilla-test-image.tar"

echo "== flotilla apply -f examples/web.yaml"
fl apply -f examples/web.yaml
echo "== waiting for the 3 web pods to run"
for _ in $(seq 1 150); do
  [[ $(fl get pods -l app=web 2>/dev/null | grep -c ' Running ') -ge 3 ]] && break
  sleep 0.2
done
echo "== flotilla get nodes,deployments,replicasets,pods,services"
fl get nodes -o wide
echo
fl get deployments,replicasets,services
echo
fl get pods -o wide
pod=$(fl get pods -l app=web -o name | awk 'NR==1')
ip=$(fl get pods -l app=web -o wide | awk 'NR==2 {print $6}')
echo
echo "== from node-1: wget -qO- http://$ip:8080/   (a pod's address on the node's pod network)"
ip netns exec fbox-1 busybox wget -qO- "http://$ip:8080/"
cip=$(fl get service web | awk 'NR==2 {print $3}')
echo "== from node-1: wget -qO- http://$cip/   (the Service's ClusterIP, load-balanced by nftables)"
ok=
for _ in $(seq 1 50); do ip netns exec fbox-1 busybox wget -qO- "http://$cip/" 2>/dev/null && { ok=1; break; }; sleep 0.2; done
[[ -n $ok ]] || echo "(the Service did not answer yet: its pods may not be Ready; try again in a few seconds)"
echo "== flotilla exec $pod -- wget -qO- http://web/   (the Service by name: cluster DNS)"
fl exec "$pod" -- wget -qO- http://web/
cat <<MSG

The Deployment made a ReplicaSet, which made 3 pods, which the scheduler bound to node-1, whose
agent runs them as real containers (each under its own shim, in its own sandbox with an address
on the node's bridge flotilla0) and probes them. The agent programs the Service in nftables
(table inet flotilla) from its Ready pods and answers the pods' DNS at 10.43.0.10.

Try:  scripts/cluster-in-a-box.sh shell 1     (a shell on node-1: flotilla and kubectl as typed)
        flotilla logs $pod
        flotilla describe deployment web
        kubectl get pods -o wide             (the node's admin.yaml is a kubeconfig)
Stop: scripts/cluster-in-a-box.sh down
MSG
