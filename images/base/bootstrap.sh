#!/usr/bin/env bash
# Builds Bento's offline base image: a minimal Debian bookworm with python3,
# made with debootstrap and `docker import`, for machines that cannot pull
# from a container registry. Idempotent: does nothing if the tag exists,
# unless --force is given.
#
#   images/base/bootstrap.sh [--force]
#
# Environment:
#   BENTO_BASE_TAG       tag to create            (default bento/base:bookworm)
#   BENTO_DEBIAN_MIRROR  Debian mirror to use     (default: the first one apt uses here)
#   BENTO_SUITE          Debian suite             (default bookworm)
set -euo pipefail

tag="${BENTO_BASE_TAG:-bento/base:bookworm}"
suite="${BENTO_SUITE:-bookworm}"
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "bootstrap: $tag already exists"
  exit 0
fi

# The mirror is whatever this machine's apt already uses, so the script works
# behind the same package proxy or mirror as apt itself.
mirror="${BENTO_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | awk '{print $2}' | grep -v security | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null \
             | awk '{print $2}' | grep -v security | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  echo "bootstrap: no Debian mirror found; set BENTO_DEBIAN_MIRROR" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "bootstrap: installing debootstrap" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d /tmp/bento-rootfs.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT

echo "bootstrap: debootstrap $suite from $mirror (about a minute)"
debootstrap --variant=minbase --include=python3-minimal,python3 "$suite" "$root" "$mirror" >/dev/null

# Keep the image small: package caches and docs are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "bootstrap: built $tag"
