#!/usr/bin/env bash
# Installs the Debian packages Flotilla's scripts and tests need, and only those missing, so a
# fresh Debian machine (as root) is ready and a prepared one is not slowed down.
set -euo pipefail

PACKAGES=(
  iproute2     # ip netns, veth, bridge: the cluster in a box
  util-linux   # nsenter: start agents inside their network namespace
  procps       # pgrep/pkill in the scripts
  ca-certificates
  curl
  busybox-static  # the test image (scripts/test-image.sh), and crond beside CronJobs in the workloads bench
  pkg-config      # building libseccomp-sys (libcontainer)
  libseccomp-dev
  tar
  gzip
  docker-registry # a real registry on 127.0.0.1 for the pull tests (its service is not started)
  apache2-utils   # htpasswd: the registry's basic-auth file in the pull tests
  nftables        # nft: the service proxy applies its table with `nft -f -` (netproxy)
  conntrack       # conntrack -D: the service proxy forgets UDP flows to endpoints that left
  python3-venv    # a venv for the Python kubernetes client the end-to-end tests drive the API with
  bsdutils        # script: a terminal for kubectl exec -t in the end-to-end tests
)

# kubectl, the real client the end-to-end tests drive the API with: the machine's own if it
# has one, Debian's otherwise.
if ! command -v kubectl >/dev/null 2>&1; then
  PACKAGES+=(kubernetes-client)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Install without starting services (docker-registry's): the tests run their own on loopback.
  made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

# The Python `kubernetes` client from PyPI, in a venv of Debian's python3 (the tests find it
# through $FLOTILLA_PYTHON; scripts/test.sh sets it). Pinned to the API version Flotilla
# reports (1.31).
py=${FLOTILLA_PY_VENV:-/var/tmp/flotilla-py}
if ! "$py/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
  echo "install-deps: installing the Python kubernetes client into $py" >&2
  /usr/bin/python3 -m venv "$py"
  "$py/bin/pip" install -q --disable-pip-version-check 'kubernetes==31.0.0'
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: no Rust toolchain (cargo) found. Install one with rustup (https://rustup.rs)," >&2
  echo "  then run this again. Debian's own cargo package is too old for this workspace (edition 2024)." >&2
  exit 1
fi
