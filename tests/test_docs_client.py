"""docs/client.md embeds the state diagram generated from the client's transition table."""

from __future__ import annotations

from pathlib import Path

from zenws_core import client_state_diagram

DOC = Path(__file__).resolve().parent.parent / "docs" / "client.md"


def test_client_doc_diagram_matches_the_transition_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "```mermaid\n" + client_state_diagram() + "```" in text
