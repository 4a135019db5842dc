#!/usr/bin/env bash
# `make run`: the main job on the embedded default. Starts the registry and its dashboard
# (SQLite + a local folder under $JUBAKO_HOME), pushes the example bentos to it with a fresh
# token, then serves the torch example in the foreground. Ctrl-C stops everything.
set -euo pipefail
J=${JUBAKO:-.venv/bin/jubako}
REGISTRY_PORT=${REGISTRY_PORT:-8000}
PORT=${PORT:-3000}
HOME_DIR=${JUBAKO_HOME:-$HOME/.jubako}
mkdir -p "$HOME_DIR"
export JUBAKO_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT

echo "== local store ($HOME_DIR)"
$J list
$J models list

echo "== registry on $JUBAKO_REGISTRY_URL (log: $HOME_DIR/registry.log)"
$J registry serve --host 127.0.0.1 --port "$REGISTRY_PORT" >"$HOME_DIR/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true; wait $registry 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  .venv/bin/python -c "import urllib.request as u; u.urlopen('$JUBAKO_REGISTRY_URL/readyz', timeout=1)" 2>/dev/null && break
  kill -0 $registry 2>/dev/null || { cat "$HOME_DIR/registry.log"; exit 1; }
  sleep 0.2
done
JUBAKO_TOKEN=$($J registry create-token --scope admin --name "make run" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export JUBAKO_TOKEN
echo "admin token (shown once): $JUBAKO_TOKEN"
echo "dashboard: $JUBAKO_REGISTRY_URL/ui (log in with that token)"

echo "== push the examples"
$J push mlp-torch
$J push mlp-onnx
$J registry list

echo "== serve mlp-torch on http://127.0.0.1:$PORT (docs: /docs; Ctrl-C stops)"
echo "   try: curl -s -XPOST localhost:$PORT/classify -H 'content-type: application/json' -d '[{\"values\": [$(seq -s, 1 16)]}]'"
$J serve mlp-torch --port "$PORT"
