#!/usr/bin/env bash
# README's test command (and CI's): every test of the workspace, then the cluster-in-a-box
# smoke test with the real binary. Installs what it needs on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export FLOTILLA_PYTHON=${FLOTILLA_PYTHON:-${FLOTILLA_PY_VENV:-/var/tmp/flotilla-py}/bin/python}

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== build"
cargo build --locked --workspace --all-targets

echo "== test image (flotilla.local/busybox:1)"
target=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$target"
scripts/test-image.sh "$target/flotilla-test-image.tar"
export FLOTILLA_TEST_IMAGE=$target/flotilla-test-image.tar

echo "== cluster-in-a-box smoke test"
scripts/box-smoke.sh

# Pod cgroups live under /flotilla; tests remove their own, and the empty parent goes when the
# tests end, passed or failed (not per test: a parallel test may be making a child then).
remove_cgroup_parent() {
  for d in /sys/fs/cgroup/*/flotilla /sys/fs/cgroup/flotilla; do
    if [[ -d $d ]]; then rmdir "$d" 2>/dev/null || true; fi
  done
}
trap remove_cgroup_parent EXIT

echo "== unit, property and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi

# The VM tests: install.sh on a fresh Debian VM and a 3-VM cluster under QEMU (about 8 minutes
# here; FLOTILLA_SKIP_VM_TESTS=1 skips them while iterating).
if [[ -z ${FLOTILLA_SKIP_VM_TESTS:-} ]]; then
  echo "== VM tests (vm-tests/run.sh)"
  vm-tests/run.sh
fi
