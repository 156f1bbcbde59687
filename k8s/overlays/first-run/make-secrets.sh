#!/usr/bin/env bash
# The passwords and API keys of a first run, one file each in secrets/ beside this script (or in
# the folder given), for kustomization.yaml's secretGenerator. Files that exist are kept: running
# it again changes nothing (delete a file to make a new one, then re-apply and restart).
#   secrets/{dispatcher,worker,operator}-nats-password   the three NATS users (nats-server.conf)
#   secrets/developer-api-key   your API key at the gateway (every user scope, and admin)
#   secrets/ui-api-key          the UI's own identity at the gateway (act_as only)
#   secrets/metrics-token       what Prometheus sends to scrape any service (README, Observability)
#   secrets/api-keys.json       the gateway's FLOTILLA_GATEWAY_API_KEYS_FILE: those two keys
set -euo pipefail
DIR="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets}"
mkdir -p "$DIR"
chmod 0700 "$DIR"
umask 077

random_hex() { od -An -N20 -tx1 /dev/urandom | tr -d ' \n'; }
# No trailing newline: the value is the file's bytes. NATS reads a password from the environment
# as a config value, so each starts with letters.
new_secret() { [ -s "$DIR/$1" ] || printf '%s%s' "$2" "$(random_hex)" >"$DIR/$1"; }

new_secret dispatcher-nats-password pw
new_secret worker-nats-password pw
new_secret operator-nats-password pw
new_secret developer-api-key flk_dev_
new_secret ui-api-key flk_ui_
new_secret metrics-token flk_metrics_
if [ ! -s "$DIR/api-keys.json" ]; then
  printf '[{"name": "developer", "key": "%s", "scopes": ["runs:read", "runs:write", "workflows:read", "admin"]},\n {"name": "ui", "key": "%s", "scopes": ["act_as"]}]\n' \
    "$(cat "$DIR/developer-api-key")" "$(cat "$DIR/ui-api-key")" >"$DIR/api-keys.json"
fi
echo "secrets in $DIR (your API key: $DIR/developer-api-key)" >&2
