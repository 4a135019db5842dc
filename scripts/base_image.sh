#!/usr/bin/env bash
# A Debian bookworm base image made from Debian packages, for machines that reach no
# container registry (only a Debian mirror): debootstrap a minimal root filesystem with
# Python 3.11, then `docker import` it. Skipped when the image already exists.
#
#   scripts/base_image.sh [IMAGE]        (default jubako/base:bookworm; honours DOCKER_HOST)
#
# Needs root (debootstrap), debootstrap and a running Docker engine (`make system-deps`).
set -euo pipefail

IMAGE=${1:-jubako/base:bookworm}
SUITE=bookworm
# passwd: useradd/groupadd for the images' non-root user; minbase leaves it out.
PACKAGES=python3,python3-venv,ca-certificates,passwd

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists"
  exit 0
fi

# The mirror apt already uses on this machine (deb822 sources or a one-line sources.list).
MIRROR=${DEBIAN_MIRROR:-$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
    grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}'; } |
  grep -v -e security -e nodesource | head -n1 || true
)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/jubako-rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT
start=$(date +%s)
echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -n 30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# Smaller image: no apt lists, docs or caches (nothing installs from apt inside our builds).
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$IMAGE"
echo "base image $IMAGE built in $(( $(date +%s) - start )) s"
