#!/usr/bin/env bash
# Run the Autobahn|Testsuite conformance cases against zenws (or any peer) through the
# shared harness in $AB_HARNESS (default <repo>/../shared/tools/autobahn; see its README.md).
#
#   tools/autobahn.sh setup                      # install wstest (idempotent, ~15 s cold)
#   tools/autobahn.sh server URL [CASES]         # fuzzingclient -> echo *server* at URL
#   tools/autobahn.sh client PORT CMD [ARGS...]  # fuzzingserver on 127.0.0.1:PORT, run *client* CMD
#   tools/autobahn.sh summary [server|client]    # re-print the summary of the last run
#   tools/autobahn.sh zenws-server [ADAPTER] [CASES]  # zenws echo server (tools/autobahn_server.py)
#   tools/autobahn.sh zenws-client [ADAPTER] [CASES]  # zenws client (tools/autobahn_client.py)
#
# CASES: comma-separated patterns ("1.*,2.*,9.1.1"), "quick" (every section, 337 cases)
# or "*" (all 517, the default). In client mode the cases come from AB_CASES.
# ADAPTER: asyncio (default; the server is `zenws serve --echo`), sync, trio or curio.
#
# Defaults (override by exporting them):
#   AB_VENV  <repo>/.cache/autobahn/venv    wstest venv (gitignored, made by setup)
#   AB_OUT   <repo>/.cache/autobahn/out     reports: $AB_OUT/servers, $AB_OUT/clients
#   AB_AGENT zenws                          agent name in server-mode reports
# Exit status is the harness's: 0 = nothing FAILED, 1 = FAILED/missing cases, 2 = no report.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The shared harness sits beside the clone (<repo>/../shared/tools/autobahn; read-only in CI).
HARNESS="${AB_HARNESS:-$(cd "$REPO/.." && pwd)/shared/tools/autobahn}"
export AB_VENV="${AB_VENV:-$REPO/.cache/autobahn/venv}"
export AB_OUT="${AB_OUT:-$REPO/.cache/autobahn/out}"
export AB_AGENT="${AB_AGENT:-zenws}"
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,20p' "$0" >&2; exit 2; }

if [ ! -d "$HARNESS" ]; then
  echo "autobahn.sh: harness not found at $HARNESS (set AB_HARNESS)" >&2
  exit 2
fi
[ $# -ge 1 ] || usage
cmd="$1"; shift
mkdir -p "$AB_OUT"

case "$cmd" in
  setup)
    [ $# -eq 0 ] || usage
    exec "$HARNESS/setup.sh"
    ;;
  server)
    [ $# -ge 1 ] && [ $# -le 2 ] || usage
    "$HARNESS/setup.sh" >/dev/null
    exec "$HARNESS/test-server.sh" "$@"
    ;;
  client)
    [ $# -ge 2 ] || usage
    "$HARNESS/setup.sh" >/dev/null
    exec "$HARNESS/test-client.sh" "$@"
    ;;
  zenws-server)
    [ $# -le 2 ] || usage
    adapter="${1:-asyncio}"; cases="${2:-*}"
    "$HARNESS/setup.sh" >/dev/null
    log="$AB_OUT/zenws-server-$adapter.log"
    "$PYTHON" "$REPO/tools/autobahn_server.py" --adapter "$adapter" --port 0 > "$log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
    url=""
    for _ in $(seq 1 200); do
      url="$(sed -n 's/^READY \(ws:[^ ]*\).*/\1/p' "$log" | head -1)"
      [ -n "$url" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -z "$url" ]; then
      echo "autobahn.sh: the $adapter server did not start:" >&2; tail -20 "$log" >&2; exit 2
    fi
    echo "autobahn.sh: zenws $adapter echo server at $url"
    set +e
    AB_AGENT="zenws-$adapter" "$HARNESS/test-server.sh" "$url" "$cases"
    status=$?
    exit "$status"
    ;;
  zenws-client)
    [ $# -le 2 ] || usage
    adapter="${1:-asyncio}"
    export AB_CASES="${2:-${AB_CASES:-*}}"
    "$HARNESS/setup.sh" >/dev/null
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    exec "$HARNESS/test-client.sh" "$port" \
      "$PYTHON" "$REPO/tools/autobahn_client.py" --adapter "$adapter" --agent "zenws-$adapter"
    ;;
  summary)
    mode="${1:-server}"
    case "$mode" in
      server) dir="$AB_OUT/servers" ;;
      client) dir="$AB_OUT/clients" ;;
      *) usage ;;
    esac
    exec python3 "$HARNESS/summarize.py" "$dir"
    ;;
  *)
    usage
    ;;
esac
