"""The reconnecting client against a faulty in-memory network, over a thousand seeds.

See ``tests/simulation.py`` for the network model and the properties checked: at most
once and in order, nothing silently lost, queues within bounds, reconnects exactly when
the policy scheduled them, no giving up on retryable faults, every request ending once.
"""

from __future__ import annotations

import pytest

from tests.simulation import Simulation, check, run_seed


@pytest.mark.parametrize("block", range(10))
def test_thousand_faulty_sessions(block: int) -> None:
    for seed in range(block * 100, block * 100 + 100):
        run_seed(seed)


def test_simulation_exercises_every_fault() -> None:
    """The model really injects what the properties are about (a guard against a no-op sim)."""
    totals = {"dropped": 0, "lost": 0, "attempts": 0, "received": 0, "refused": 0}
    for seed in range(200):
        out = run_seed(seed)
        totals["dropped"] += len(out.dropped)
        totals["lost"] += len(out.possibly_lost)
        totals["attempts"] += len(out.attempts)
        totals["received"] += len(out.received)
        totals["refused"] += len(out.refused)
    assert totals["dropped"] > 0
    assert totals["lost"] > 0
    assert totals["refused"] > 0
    assert totals["attempts"] > 400  # reconnects happened, many times
    assert totals["received"] > 1000


def test_check_catches_a_silent_loss() -> None:
    """The property checker itself fails when a message disappears without an event."""
    sim = Simulation(3)
    out = sim.run()
    out.received.remove(out.received[0]) if out.received else None
    out.possibly_lost.clear()
    out.dropped.clear()
    with pytest.raises(AssertionError):
        check(out, sim)
