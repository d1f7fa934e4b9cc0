#!/usr/bin/env bash
# Builds the test image flotilla.local/busybox:1 from Debian's busybox-static as an OCI image
# layout tarball, so every example and test runs with no internet:
#
#   scripts/test-image.sh OUT.tar [REF]
#
# Three gzip layers (busybox and its applets; /etc and /tmp; a web root), reproducible: the same
# busybox gives the same digests. REF defaults to flotilla.local/busybox:1.
set -euo pipefail

out=${1:?usage: $0 OUT.tar [REF]}
ref=${2:-flotilla.local/busybox:1}
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
  if [[ $(id -u) -ne 0 ]]; then echo "test-image: need busybox-static (apt-get install busybox-static)" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
case $(dpkg --print-architecture) in
  amd64) arch=amd64 ;; arm64) arch=arm64 ;; armhf) arch=arm ;; *) arch=$(dpkg --print-architecture) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/l1/bin" "$work/l2/etc" "$work/l2/tmp" "$work/l2/root" "$work/l3/www" "$work/blobs/sha256"

# Layer 1: busybox and a link per applet.
cp /bin/busybox "$work/l1/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$work/l1/bin/$applet"
done
# Layer 2: users, groups, /tmp.
cat >"$work/l2/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$work/l2/etc/group" <<'G'
root:x:0:
www-data:x:33:
nogroup:x:65534:
G
echo 'NAME="Flotilla test image"' >"$work/l2/etc/os-release"
chmod 1777 "$work/l2/tmp"
chmod 700 "$work/l2/root"
# Layer 3: a default web root.
echo '<h1>flotilla test image</h1>' >"$work/l3/www/index.html"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
blob() { # file -> moves into blobs/, prints its hex digest
  local d; d=$(sha "$1"); mv "$1" "$work/blobs/sha256/$d"; echo "$d"
}

layers_json= diffs_json=
for l in l1 l2 l3; do
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/$l" -cf "$work/$l.tar" .
  diff=$(sha "$work/$l.tar")
  gzip -n -9 "$work/$l.tar"
  sz=$(size "$work/$l.tar.gz")
  d=$(blob "$work/$l.tar.gz")
  layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$sz}"
  diffs_json+="${diffs_json:+,}\"sha256:$diff\""
done

printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created_by":"scripts/test-image.sh"}]}' \
  "$arch" "$diffs_json" >"$work/config.json"
csz=$(size "$work/config.json"); cd_=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
  "$cd_" "$csz" "$layers_json" >"$work/manifest.json"
msz=$(size "$work/manifest.json"); md=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s","io.containerd.image.name":"%s"},"platform":{"architecture":"%s","os":"linux"}}]}' \
  "$md" "$msz" "$ref" "$ref" "$arch" >"$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out_abs" oci-layout index.json blobs
echo "test-image: $ref -> $out (manifest sha256:$md)"
