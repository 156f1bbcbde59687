#!/usr/bin/env bash
# Makes the Pants lockfiles of every resolve ready to build with, on this machine. ./pants runs it
# before each call; by hand:
#   3rdparty/python/lockfiles.sh          only what is missing or stale
#   3rdparty/python/lockfiles.sh --force  regenerate all of them
#
# 1. Generate (pex, via `./pants generate-lockfiles`) the resolves whose lock is missing or whose
#    inputs (requirements + constraints files) changed. Pex's lock names registry URLs: it is kept
#    as .<resolve>.lock.origin. Lockfiles name registry hosts, so none of this is committed.
# 2. Fetch: tools/fetch_artifacts.py downloads the artifacts that lock needs on this machine into
#    $FLOTILLA_PANTS_HOME/artifacts (retries with backoff, sha256 checked, every failure spelled
#    out) and writes <resolve>.lock, the lock Pants reads, pointing at them with file:// URLs. So
#    builds copy verified local files: no pip download, no network. Quick when nothing is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR=3rdparty/python
RESOLVES=(python-default tools)
cd "$ROOT"
source "$ROOT/tools/build-env.sh"

inputs() { # resolve -> its input files
  case "$1" in
    python-default) echo "$DIR/requirements.txt $DIR/constraints.txt" ;;
    tools) echo "$DIR/tools-requirements.txt $DIR/tools-constraints.txt" ;;
  esac
}
digest() { cat $(inputs "$1") | sha256sum | cut -d' ' -f1; }

stale=()
for r in "${RESOLVES[@]}"; do
  lock="$DIR/$r.lock" origin="$DIR/.$r.lock.origin"
  # A lock that names no local artifact was just written by `generate-lockfiles` (here or by
  # hand): it is the new origin.
  if [ -s "$lock" ] && ! grep -q '"url": "file://' "$lock"; then
    mv "$lock" "$origin"
  fi
  if [ "${1:-}" = --force ] || [ ! -s "$origin" ] ||
    [ "$(cat "$DIR/.$r.lock.inputs" 2>/dev/null)" != "$(digest "$r")" ]; then
    stale+=("$r")
  fi
done

if ((${#stale[@]})); then
  args=()
  for r in "${stale[@]}"; do args+=("--resolve=$r"); done
  echo "[lockfiles] generating: ${stale[*]}" >&2
  generated=""
  for attempt in 1 2 3; do
    if ./pants --no-pantsd generate-lockfiles "${args[@]}"; then
      generated=1
      break
    fi
    echo "[lockfiles] attempt $attempt of 3 failed (the error is above)" >&2
    [ "$attempt" = 3 ] || sleep $((attempt * 10))
  done
  [ -n "$generated" ] || exit 1
  for r in "${stale[@]}"; do
    mv "$DIR/$r.lock" "$DIR/.$r.lock.origin"
    digest "$r" >"$DIR/.$r.lock.inputs"
  done
fi

pairs=()
for r in "${RESOLVES[@]}"; do pairs+=("$DIR/.$r.lock.origin=$DIR/$r.lock"); done
# The interpreter the resolves are for: its wheel tags decide which artifact each lock entry uses.
python="$(command -v python3.11 || command -v python3)"
exec "$python" tools/fetch_artifacts.py --store "$FLOTILLA_PANTS_HOME/artifacts" \
  ${FLOTILLA_CA_BUNDLE:+--cafile "$FLOTILLA_CA_BUNDLE"} "${pairs[@]}"
