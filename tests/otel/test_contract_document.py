"""Every name of the contract module is documented in docs/telemetry.md (append-only)."""

from __future__ import annotations

from pathlib import Path

from logprobscope import _contract as n

DOC = Path(__file__).parents[2] / "docs" / "telemetry.md"


def test_every_name_of_ours_is_in_the_document() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = {
        value
        for key, value in vars(n).items()
        if key.isupper() and isinstance(value, str) and value.startswith("logprobs.")
    }
    assert len(names) > 40
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == []


def test_the_refusal_summary_mirrors_the_content_summary() -> None:
    assert all(
        refusal == content.replace("logprobs.", "logprobs.refusal.", 1)
        for content, refusal in n.REFUSAL_SUMMARY.items()
    )
    assert len(n.REFUSAL_SUMMARY) == 9
