#!/usr/bin/env bash
# Run the Autobahn|Testsuite conformance cases against zenws (or any peer) through the
# shared harness in $AB_HARNESS (default /work/shared/tools/autobahn; see its README.md).
#
#   tools/autobahn.sh setup                      # install wstest (idempotent, ~15 s cold)
#   tools/autobahn.sh server URL [CASES]         # fuzzingclient -> echo *server* at URL
#   tools/autobahn.sh client PORT CMD [ARGS...]  # fuzzingserver on 127.0.0.1:PORT, run *client* CMD
#   tools/autobahn.sh summary [server|client]    # re-print the summary of the last run
#
# CASES: comma-separated patterns ("1.*,2.*,9.1.1"), "quick" (every section, 337 cases)
# or "*" (all 517, the default). In client mode the cases come from AB_CASES.
#
# Defaults (override by exporting them):
#   AB_VENV  <repo>/.cache/autobahn/venv    wstest venv (gitignored, made by setup)
#   AB_OUT   <repo>/.cache/autobahn/out     reports: $AB_OUT/servers, $AB_OUT/clients
#   AB_AGENT zenws                          agent name in server-mode reports
# Exit status is the harness's: 0 = nothing FAILED, 1 = FAILED/missing cases, 2 = no report.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="${AB_HARNESS:-/work/shared/tools/autobahn}"
export AB_VENV="${AB_VENV:-$REPO/.cache/autobahn/venv}"
export AB_OUT="${AB_OUT:-$REPO/.cache/autobahn/out}"
export AB_AGENT="${AB_AGENT:-zenws}"

usage() { sed -n '2,17p' "$0" >&2; exit 2; }

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
