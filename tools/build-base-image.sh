#!/usr/bin/env bash
# Builds the local base image Flotilla's container images start FROM, for machines that reach
# Debian's archive but no image registry (so `FROM python:3.11-slim` cannot be pulled):
#
#   tools/build-base-image.sh [--rebuild] [TAG]      # TAG defaults to flotilla-base:bookworm
#
#   * debootstrap --variant=minbase bookworm, plus python3 (Debian's 3.11, which runs the service
#     PEXes), ca-certificates, wget (for health checks) and libgomp1 (the OpenMP runtime the
#     worker's llama.cpp, xllamacpp, loads), upgraded from bookworm-updates and
#     bookworm-security, with apt lists, .debs, docs and man pages removed; then `docker import`.
#   * The Debian mirror is the one this machine's apt already uses (read from `apt-cache policy`),
#     so no archive host is written in this repository.
#   * Idempotent: does nothing when TAG already exists with this package list (its label
#     flotilla.base-packages), unless --rebuild (or FLOTILLA_BASE_REBUILD=1).
#   * Needs root (debootstrap, chroot), debootstrap and a running Docker engine (DOCKER_HOST is
#     honoured). About a minute; the image is ~120 MB.
#
# With a registry at hand, skip this: build the service images with
#   --docker-build-args=BASE_IMAGE=python:3.11-slim   (any image with python3.11 on its PATH).
set -euo pipefail

TAG="flotilla-base:bookworm"
REBUILD="${FLOTILLA_BASE_REBUILD:-}"
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) TAG="$arg" ;;
  esac
done
SUITE=bookworm
PACKAGES=python3,ca-certificates,wget,libgomp1

log() { echo "[build-base-image $(date +%T)] $*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

command -v docker >/dev/null || { log "no docker CLI on PATH (compose/README.md: Build the images)"; exit 1; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"; exit 1; }
if [ -z "$REBUILD" ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  built_with="$(docker image inspect -f '{{ index .Config.Labels "flotilla.base-packages" }}' "$TAG" 2>/dev/null || true)"
  if [ "$built_with" = "$PACKAGES" ]; then
    log "$TAG exists already (--rebuild to build it again)"
    exit 0
  fi
  log "$TAG was built with other packages (${built_with:-unknown}): building it again"
fi

if ! command -v debootstrap >/dev/null; then
  log "apt-get install debootstrap"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null
fi

# "URL SUITE" for every bookworm suite apt uses here (main, -updates, -security).
mirrors() {
  apt-cache policy | awk -v s="$SUITE" '$1 ~ /^[0-9]+$/ && $2 ~ /^https?:/ && $3 ~ ("^" s "(-updates|-security)?/main$") {
      suite=$3; sub(/\/main$/, "", suite); print $2, suite }' | sort -u
}
[ -n "$(mirrors)" ] || $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
MIRROR="$(mirrors | awk -v s="$SUITE" '$2 == s { print $1; exit }')"
[ -n "$MIRROR" ] || { log "cannot derive a $SUITE mirror from apt-cache policy"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-base.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
  $SUDO umount "$ROOTFS/proc" 2>/dev/null || true
  $SUDO rm -rf "$WORK"
}
trap cleanup EXIT

log "debootstrap $SUITE (minbase + $PACKAGES) into $ROOTFS"
$SUDO debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  { tail -30 "$WORK/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }

log "applying $SUITE-updates and $SUITE-security"
mirrors | while read -r url suite; do
  echo "deb $url $suite main"
done | $SUDO tee "$ROOTFS/etc/apt/sources.list" >/dev/null
$SUDO mount -t proc proc "$ROOTFS/proc"
$SUDO chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade && apt-get clean' \
  >"$WORK/upgrade.log" 2>&1 || { tail -30 "$WORK/upgrade.log" >&2; log "apt-get upgrade failed"; exit 1; }
$SUDO umount "$ROOTFS/proc"

log "trimming"
$SUDO find "$ROOTFS/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
$SUDO find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
$SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* \
  "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
$SUDO chroot "$ROOTFS" python3.11 -c "import ssl, sqlite3, ctypes, venv" || { log "python3.11 is incomplete"; exit 1; }

log "docker import -> $TAG"
$SUDO tar -C "$ROOTFS" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'LABEL flotilla.component=base' \
  --change "LABEL flotilla.base-packages=$PACKAGES" \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
docker image ls "$TAG" --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' >&2
log "done"
