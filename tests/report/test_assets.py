"""The report page's CSS and JavaScript are package data, inlined as they are."""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

import pytest

from logprobscope.report import render_html


def _asset(name: str) -> str:
    resource = files("logprobscope.report") / "assets" / name
    assert resource.is_file(), f"{name} is not in the package data"
    return resource.read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@pytest.mark.parametrize(("name", "tag", "directive"), [
    ("report.css", "style", "style-src"),
    ("report.js", "script", "script-src"),
])  # fmt: skip
def test_asset_is_package_data_inlined_and_allowed_by_hash(
    name: str, tag: str, directive: str
) -> None:
    text = _asset(name).strip()
    assert len(text) > 1000  # the real file, not an empty placeholder
    page = render_html([])
    assert f"<{tag}>{text}</{tag}>" in page
    assert f"{directive} 'sha256-{_digest(text)}'" in page
