#!/usr/bin/env bash
# Builds every image docker-compose.yml runs, through Pants:
#   flotilla/{nats,dispatcher,worker,gateway,ui}:local
#
#   compose/build-images.sh
#   FLOTILLA_BASE_IMAGE=python:3.11-slim compose/build-images.sh   # with a registry at hand
#
# Without FLOTILLA_BASE_IMAGE the images start FROM the local flotilla-base:bookworm, which
# tools/build-base-image.sh makes first when it is missing (debootstrap; needs root).
# Honours DOCKER_HOST (passed on to Pants with --docker-env-vars).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
log() { echo "[build-images $(date +%T)] $*" >&2; }

args=(--docker-env-vars=DOCKER_HOST)
if [ -n "${FLOTILLA_BASE_IMAGE:-}" ]; then
  args+=("--docker-build-args=BASE_IMAGE=$FLOTILLA_BASE_IMAGE")
else
  tools/build-base-image.sh
fi

# The worker image carries the bundled model (it runs offline): fetched and verified once, cached.
log "the bundled model -> services/worker/docker/model/"
./pants run libs/flotilla/llm:fetch-model -- "$REPO_ROOT/services/worker/docker/model" >/dev/null

log "./pants package (PEXes, then images)"
./pants "${args[@]}" package \
  compose/nats:image \
  services/dispatcher/docker:image \
  services/worker/docker:image \
  services/gateway/docker:image \
  services/ui/docker:image

# The classic builder keeps each Dockerfile's first stage as an untagged image, and a rebuild
# leaves the previous image untagged: drop those (only ours, only untagged ones).
docker image prune -f --filter label=flotilla.build-stage=true >/dev/null
docker image prune -f --filter label=flotilla.component >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^flotilla(-base)?[/:]' >&2
