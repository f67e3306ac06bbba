"""Autobahn|Testsuite conformance, ``quick`` subset (every section, 337 cases), both roles.

Server mode: ``zenws serve --echo`` (the asyncio adapter, started through
``tools/autobahn_server.py``) against the fuzzing client.  Client mode: the zenws asyncio
client, driven by ``tools/autobahn_client.py``, against the fuzzing server.  Both must show
0 FAILED and 0 NON-STRICT; the only INFORMATIONAL cases allowed are the three the suite
never grades (see docs/conformance.md).  The suite itself (``wstest`` in a venv under
``.cache/autobahn``) is installed by ``tools/autobahn.sh setup`` from the shared harness at
``<repo>/../shared/tools/autobahn``: idempotent, about 15 s the first time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.support.procs import RunResult, free_port, run_process, start_ready_process

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO.parent / "shared" / "tools" / "autobahn"
SCRIPT = REPO / "tools" / "autobahn.sh"
QUICK_CASES = 337
#: The two 16 MiB echo cases are left out of the per-commit quick run: under load on 2 cores the
#: fuzzer's closing-handshake timer can expire while a 16 MiB echo is still in flight (seen once
#: in a CI-like run: 9.2.6 UNCLEAN, behaviour OK).  The full runs in docs/conformance.md include
#: them (514 OK / 0 NON-STRICT), and tests/adapters exercise 16 MiB both ways on every adapter.
QUICK_EXCLUDE = "9.1.6,9.2.6"
#: Cases the suite reports as INFORMATIONAL whatever the peer does (docs/conformance.md).
INFORMATIONAL = {"7.1.6", "7.13.1", "7.13.2"}
SUMMARY = re.compile(
    r"^autobahn: OK=(\d+) NON-STRICT=(\d+) INFO=(\d+) UNIMPL=(\d+) FAILED=(\d+)$", re.M
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def harness_env(out: Path) -> dict[str, str]:
    return {"AB_HARNESS": str(HARNESS), "AB_OUT": str(out), "AB_AGENT": "zenws"}


@pytest.fixture(scope="module")
def autobahn() -> Path:
    """Install ``wstest`` through the project's script (never by hand); returns the harness."""
    assert HARNESS.is_dir(), f"the shared Autobahn harness is missing at {HARNESS}"
    run = run_process(
        ["bash", str(SCRIPT), "setup"], timeout=300, env={"AB_HARNESS": str(HARNESS)}, cwd=REPO
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return HARNESS


def check_report(run: RunResult, index: Path, cases: int = QUICK_CASES) -> None:
    """The summary line and the JSON index agree: nothing FAILED, nothing NON-STRICT."""
    output = run.stdout + run.stderr
    match = SUMMARY.search(run.stdout)
    assert match is not None, output
    ok, non_strict, info, unimplemented, failed = map(int, match.groups())
    assert (failed, non_strict, unimplemented) == (0, 0, 0), output
    assert ok + info == cases, output
    assert run.returncode == 0, output
    results = next(iter(json.loads(index.read_text()).values()))
    assert len(results) == cases
    graded = {case: r["behavior"] for case, r in results.items()}
    assert {c for c, b in graded.items() if b == "INFORMATIONAL"} <= INFORMATIONAL
    assert {b for c, b in graded.items() if c not in INFORMATIONAL} == {"OK"}
    assert {r["behaviorClose"] for r in results.values()} <= {"OK", "INFORMATIONAL"}


def test_zenws_serve_echo_passes_autobahn_quick(autobahn: Path, tmp_path: Path) -> None:
    server_argv = [sys.executable, str(REPO / "tools" / "autobahn_server.py"), "--port", "0"]
    with start_ready_process(server_argv, cwd=REPO) as server:
        url = server.ready_fields[0]
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/", url), server.ready_line
        run = run_process(
            ["bash", str(SCRIPT), "server", url, "quick"],
            timeout=480,
            env={**harness_env(tmp_path), "AB_EXCLUDE": QUICK_EXCLUDE},
            cwd=REPO,
        )
    check_report(run, tmp_path / "servers" / "index.json", QUICK_CASES - 2)


def test_zenws_asyncio_client_passes_autobahn_quick(autobahn: Path, tmp_path: Path) -> None:
    client = f"{sys.executable} tools/autobahn_client.py --adapter asyncio"
    run = run_process(
        ["bash", str(SCRIPT), "client", str(free_port()), client],
        timeout=480,
        env={**harness_env(tmp_path), "AB_CASES": "quick", "AB_EXCLUDE": QUICK_EXCLUDE},
        cwd=REPO,
    )
    check_report(run, tmp_path / "clients" / "index.json", QUICK_CASES - 2)


#: A valid message, then a protocol violation in the same TCP segment: strict peers answer
#: the message before they fail the connection.  Each adapter orders this differently
#: (tasks, threads, timers), so the other adapters run these cases in both roles.  (curio's
#: reader task lets the application run between two chunks it reads, which case 3.4 needs.)
ORDERING_CASES = "3.2,3.3,3.4,4.1.3,4.1.4,4.1.5,4.2.3,4.2.4,4.2.5,5.15,6.4.3,6.4.4"


@pytest.mark.parametrize("adapter", ["sync", "trio", "curio"])
def test_other_adapters_answer_before_failing(autobahn: Path, tmp_path: Path, adapter: str) -> None:
    server_argv = [sys.executable, str(REPO / "tools" / "autobahn_server.py")]
    server_argv += ["--adapter", adapter, "--port", "0"]
    with start_ready_process(server_argv, cwd=REPO) as server:
        run = run_process(
            ["bash", str(SCRIPT), "server", server.ready_fields[0], ORDERING_CASES],
            timeout=120,
            env=harness_env(tmp_path / "server"),
            cwd=REPO,
        )
    check_report(run, tmp_path / "server" / "servers" / "index.json", 12)
    client = f"{sys.executable} tools/autobahn_client.py --adapter {adapter}"
    run = run_process(
        ["bash", str(SCRIPT), "client", str(free_port()), client],
        timeout=120,
        env={**harness_env(tmp_path / "client"), "AB_CASES": ORDERING_CASES},
        cwd=REPO,
    )
    check_report(run, tmp_path / "client" / "clients" / "index.json", 12)
