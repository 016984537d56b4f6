#!/usr/bin/env bash
# Makes a Python 3.11 base image from Debian bookworm's own packages, for machines that can
# reach Debian and PyPI but no container registry (CI here): debootstrap a minimal root
# filesystem, then `podman import` it. The Dockerfile takes it through
# `--build-arg BASE_IMAGE=...`; a normal `docker build` uses python:3.11-slim instead.
#
#   deploy/build-base.sh            prints the image name; builds it only when it is missing
#   FORCE=1 deploy/build-base.sh    builds it again
#
# The tag carries a hash of this script, so a change to the package list makes a new image
# and an unchanged script reuses the one already built (the slow part, 2-4 minutes). Needs
# root, debootstrap and podman. The Debian mirror is debootstrap's default unless
# DEBIAN_MIRROR names one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/podman/containers.conf}

# What the image needs: Python 3.11 with venv (uv is installed into a venv by pip),
# certificates to reach PyPI over HTTPS, and the programs the example workflows call.
PACKAGES=python3,python3-venv,ca-certificates,procps
SUITE=bookworm

digest=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
image=${BASE_IMAGE_NAME:-localhost/spindle-base}:$SUITE-$digest

if [[ -z ${FORCE:-} ]] && podman image exists "$image"; then
  echo "$image"
  exit 0
fi

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install $tool)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/spindle-base.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "debootstrap $SUITE into $work/rootfs" >&2
# shellcheck disable=SC2086 # DEBIAN_MIRROR is one optional word
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" \
  ${DEBIAN_MIRROR:-} >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

# The machine's own extra certificate authorities (e.g. a TLS-intercepting egress proxy's)
# are trusted in the image too, so the build reaches PyPI the way the machine does.
# EXTRA_CA_DIR= (empty) leaves them out.
extra_ca=${EXTRA_CA_DIR-/usr/local/share/ca-certificates}
if [[ -n $extra_ca ]] && compgen -G "$extra_ca/*.crt" >/dev/null; then
  cp "$extra_ca"/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
  chroot "$work/rootfs" update-ca-certificates >/dev/null
fi

# Nothing the image needs at run time: package caches, downloaded lists, docs.
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
  "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/*

tar -C "$work/rootfs" --numeric-owner -c . |
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$image" >&2
echo "$image"
