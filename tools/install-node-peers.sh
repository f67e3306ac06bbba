#!/usr/bin/env bash
# Install the Node.js test peers' dependency (the `ws` package from the npm registry) into
# <repo>/.cache/node-peers/node_modules.  Idempotent: does nothing when the pinned version
# is already there.  Called automatically by tests/support/node.py; no need to run it by hand.
#
#   tools/install-node-peers.sh            # prints the node_modules path on success
#
# Env: ZENWS_NODE_PEERS_DIR (default <repo>/.cache/node-peers, gitignored),
#      ZENWS_NODE_WS_VERSION (default 8.23.0), NPM (default npm).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${ZENWS_NODE_PEERS_DIR:-$REPO/.cache/node-peers}"
WS_VERSION="${ZENWS_NODE_WS_VERSION:-8.23.0}"
NPM="${NPM:-npm}"

installed_version() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch (e) { console.log("") }' \
    "$DIR/node_modules/ws/package.json"
}

mkdir -p "$DIR"
# One installer at a time (parallel pytest workers may all ask at once).
exec 9>"$DIR/.install.lock"
flock -w 300 9

if [ "$(installed_version)" != "$WS_VERSION" ]; then
  echo "install-node-peers: installing ws@$WS_VERSION into $DIR" >&2
  [ -f "$DIR/package.json" ] || printf '{\n  "name": "zenws-node-peers",\n  "private": true\n}\n' > "$DIR/package.json"
  "$NPM" install --prefix "$DIR" --no-audit --no-fund --no-package-lock --save=false \
    --loglevel=error "ws@$WS_VERSION" >&2
  got="$(installed_version)"
  if [ "$got" != "$WS_VERSION" ]; then
    echo "install-node-peers: expected ws@$WS_VERSION, found '${got:-nothing}'" >&2
    exit 1
  fi
fi
echo "$DIR/node_modules"
