#!/usr/bin/env bash
# (Re)generates the gitignored Pants lockfiles of the resolves whose lockfile is missing or whose
# inputs (requirements + constraints files) changed since it was generated. Lockfiles name
# registry hosts, so they are never committed; the exact versions come from the constraints files.
#   3rdparty/python/lockfiles.sh          only what is missing or stale
#   3rdparty/python/lockfiles.sh --force  all of them
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR=3rdparty/python
cd "$ROOT"

inputs() { # resolve -> its input files
  case "$1" in
    python-default) echo "$DIR/requirements.txt $DIR/constraints.txt" ;;
    tools) echo "$DIR/tools-requirements.txt $DIR/tools-constraints.txt" ;;
  esac
}
digest() { cat $(inputs "$1") | sha256sum | cut -d' ' -f1; }

stale=()
for r in python-default tools; do
  if [ "${1:-}" = --force ] || [ ! -s "$DIR/$r.lock" ] ||
    [ "$(cat "$DIR/.$r.lock.inputs" 2>/dev/null)" != "$(digest "$r")" ]; then
    stale+=("$r")
  fi
done
((${#stale[@]})) || exit 0

args=()
for r in "${stale[@]}"; do args+=("--resolve=$r"); done
echo "[lockfiles] generating: ${stale[*]}" >&2
for attempt in 1 2 3; do
  if ./pants --no-pantsd generate-lockfiles "${args[@]}"; then
    for r in "${stale[@]}"; do digest "$r" >"$DIR/.$r.lock.inputs"; done
    exit 0
  fi
  echo "[lockfiles] attempt $attempt failed" >&2
  sleep $((attempt * 10))
done
exit 1
