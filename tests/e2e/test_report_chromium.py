"""The HTML report in a real headless Chromium, driven over the DevTools protocol.

The report under test is the one `logprobscope demo` builds (run through its entry point,
offline), plus one made of hostile token texts and a call without content capture. Checks:
the tokens render with their colours, hovering (a real mouse event) or focusing (a real key
press) a token shows its probability and top alternatives, hostile text stays text, the
page logs no error (so our own CSP allows our own script and style), and Chromium sees no
request but the page itself. A screenshot with the tooltip open is kept in
``artifacts/report.png`` for CI. A second page holds tokens with bidi controls and
invisible characters: they show as escapes and reverse nothing (``artifacts/report-bidi.png``).

Chromium (Debian's ``chromium``; ``LOGPROBSCOPE_CHROMIUM_BIN`` overrides) and the
``websockets`` client are needed: without them the test is skipped, unless
``LOGPROBSCOPE_REQUIRE_E2E=1``, then it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from logprobscope.report import read_traces, write_html
from tests.support.contract_spans import HOSTILE, HOSTILE_TOKENS, SEED_TOP, Token, write_call

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
TIMEOUT = 60.0


def _missing(what: str) -> NoReturn:
    if os.environ.get("LOGPROBSCOPE_REQUIRE_E2E") == "1":
        pytest.fail(f"{what} (LOGPROBSCOPE_REQUIRE_E2E=1)")
    pytest.skip(what)


def _chromium() -> str:
    explicit = os.environ.get("LOGPROBSCOPE_CHROMIUM_BIN")
    for candidate in (explicit, shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing("Chromium is not installed (apt-get install chromium)")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one websocket (flat sessions)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no DevTools message in time")
        message: dict[str, Any] = json.loads(self._ws.recv(timeout=remaining))
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        request: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session is not None:
            request["sessionId"] = session
        self._ws.send(json.dumps(request))
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_event(self, method: str, *, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        seen = after
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    def named(self, method: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == method]


class Page:
    """One tab of the browser, attached as a flat session."""

    def __init__(self, devtools: DevTools) -> None:
        self.dt = devtools
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        self.session: str = devtools.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.dt.call(method, self.session, **params)

    def open(self, path: Path) -> None:
        mark = len(self.dt.events)
        self.call("Page.navigate", url=path.as_uri())
        self.dt.wait_event("Page.loadEventFired", after=mark)

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def center_of(self, selector: str) -> tuple[float, float]:
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return float(box[0]), float(box[1])

    def hover(self, selector: str) -> None:
        x, y = self.center_of(selector)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def key(self, key: str, code: str, key_code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=code,
                windowsVirtualKeyCode=key_code,
            )

    def tooltip(self) -> str | None:
        value = self.js(
            "(() => { const t = document.getElementById('lps-tip');"
            " return t.hidden || getComputedStyle(t).display === 'none' ? null : t.textContent;"
            " })()"
        )
        return value if isinstance(value, str) else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    executable = _chromium()
    profile = tmp_path / "profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("wb")
    process = subprocess.Popen(
        [
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],  # fmt: skip
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from websockets.sync.client import connect
    except ImportError:
        _missing("the websockets package is not installed")
    devtools: DevTools | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                text = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"Chromium did not start its DevTools endpoint:\n{text}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        url = f"ws://127.0.0.1:{port}{path}"
        with connect(url, max_size=None, proxy=None, open_timeout=TIMEOUT) as ws:
            devtools = DevTools(ws)
            try:
                yield devtools
            finally:
                try:
                    devtools.call("Browser.close")
                except Exception:  # already gone: the kill below still runs
                    pass
    finally:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def demo_report(tmp_path: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OTEL_"))}
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "logprobscope", "demo", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out / "logprobscope-report.html"


@pytest.fixture
def hostile_report(tmp_path: Path) -> Path:
    traces = write_call(tmp_path / "hostile.jsonl", HOSTILE_TOKENS, model="<b>m</b>")
    write_call(  # starts later, so it is the second call of the page
        traces, SEED_TOP, mode="batched", capture=False, stream=False, start=1_800_000_000 * 10**9
    )
    calls = read_traces(traces).calls
    return write_html(tmp_path / "hostile.html", calls, title="<script>alert(5)</script>")


def test_report_in_chromium(browser: DevTools, demo_report: Path, hostile_report: Path) -> None:
    page = Page(browser)
    page.open(demo_report)

    # The script ran (CSP allowed it by hash) and rendered the three demo calls.
    assert page.js("document.documentElement.getAttribute('data-lps-ready')") == "3"
    texts = page.js(
        "[...document.querySelectorAll('.tokens')].map(d =>"
        " [...d.querySelectorAll('.tok')].map(t => t.textContent).join(''))"
    )
    assert texts[0].startswith("Thank you for asking! I'm just a computer program")
    assert (
        texts[1] == "Thank you for asking! I'm here and ready to help. How can I assist you today?"
    )
    assert texts[2].startswith("I'm just a computer program")
    assert page.js("document.querySelectorAll('.tok').length") == 37 + 19 + 25
    assert page.js("document.querySelectorAll('svg.timeline circle').length") == 19
    # The style sheet applies (CSP allowed it by hash): "I'm" at p 0.10 is orange-red.
    colour = page.js(
        'getComputedStyle(document.querySelector(\'[data-call="2"] [data-k="0"]\')).backgroundColor'
    )
    assert colour == "rgb(240, 122, 98)"

    # Hover, with a real mouse event: the alternatives appear.
    assert page.tooltip() is None
    page.hover('[data-call="2"] [data-k="0"]')
    tip = page.tooltip()
    assert tip is not None
    assert '#0  "I\'m"' in tip and "p 0.1016" in tip and "low confidence" in tip
    assert "'Thank'0.7509" in tip and "'Hello'0.1305" in tip and '"I\'m" ✓0.1016' in tip
    ARTIFACTS.mkdir(exist_ok=True)
    shot = page.call("Page.captureScreenshot", format="png")["data"]
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot))

    # Moving away hides it; keyboard focus shows it, the arrow keys move along the tokens.
    page.call("Input.dispatchMouseEvent", type="mouseMoved", x=2, y=2)
    assert page.tooltip() is None
    page.js('document.querySelector(\'[data-call="0"] [data-k="0"]\').focus()')
    tip = page.tooltip()
    assert tip is not None and "#0  'Thank'" in tip and "no alternatives recorded" in tip
    page.key("ArrowRight", "ArrowRight", 39)
    assert page.js("document.activeElement.getAttribute('data-k')") == "1"
    tip = page.tooltip()
    assert tip is not None and "#1  ' you'" in tip
    page.key("Escape", "Escape", 27)
    assert page.tooltip() is None

    # Hostile token texts stay text; no dialog, no injected element.
    page.open(hostile_report)
    assert page.js("document.querySelectorAll('img, b').length") == 0
    assert page.js("document.title") == "<script>alert(5)</script>"
    hostile = page.js(
        "[...document.querySelectorAll('[data-call=\"0\"] .tok')]"
        f".findIndex(t => t.textContent === {json.dumps(HOSTILE)})"
    )
    assert hostile >= 0
    page.hover(f'[data-call="0"] [data-k="{hostile}"]')
    tip = page.tooltip()
    assert tip is not None and repr(HOSTILE) in tip and "</script><script>" not in tip
    assert page.js("document.querySelectorAll('img, b').length") == 0
    # Without content capture: positions and probabilities.
    positions = page.js(
        "[...document.querySelectorAll('[data-call=\"1\"] .tok')].map(t => t.textContent)"
    )
    assert positions == ["#0", "#1", "#2", "#3"]
    page.hover('[data-call="1"] [data-k="0"]')
    tip = page.tooltip()
    assert tip is not None and "text not captured" in tip and "#1" in tip and "0.7509" in tip

    # Nothing but the pages themselves was requested; nothing was logged as an error.
    urls = [e["params"]["request"]["url"] for e in browser.named("Network.requestWillBeSent")]
    assert urls == [demo_report.as_uri(), hostile_report.as_uri()]
    assert not browser.named("Network.loadingFailed")
    assert not browser.named("Page.javascriptDialogOpening")
    assert not browser.named("Runtime.exceptionThrown")
    errors = [
        e["params"]["entry"]
        for e in browser.named("Log.entryAdded")
        if e["params"]["entry"]["level"] in ("error", "warning")
    ]
    assert not errors, errors
    consoles = browser.named("Runtime.consoleAPICalled")
    assert not consoles, consoles


# A right-to-left override, a left-to-right isolate and a zero-width space in tokens: shown
# raw, the override reverses every token after it ("&lt;b&gt;" reads ";tg&b;tl&").
BIDI_TOKENS: list[Token] = [
    ("Say", -0.1, []),
    (" \u202e", -2.0, [(" \u202e", -2.0), (" \u2066", -2.5)]),
    ("&lt;b&gt;", -0.3, []),
    (" then", -0.2, []),
    (" \u2066", -1.5, []),
    ("x", -0.4, []),
    (" \u200b", -0.6, []),
    ("y", -0.1, []),
    (" end", -0.05, []),
]


def test_report_bidi_tokens_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    traces = write_call(tmp_path / "bidi.jsonl", BIDI_TOKENS)
    report = write_html(tmp_path / "bidi.html", read_traces(traces).calls)
    page = Page(browser)
    page.open(report)
    assert page.js("document.documentElement.getAttribute('data-lps-ready')") == "1"

    # The DOM text: each hidden character as its escape, in order, and nothing raw.
    line = page.js("document.querySelector('.tokens').innerText")
    assert line == "Say \\u202e&lt;b&gt; then \\u2066x \\u200by end"
    assert not [c for c in line if unicodedata.category(c) in ("Cf", "Cc")]

    # The layout: tokens run left to right, and so do the characters inside a token.
    lefts = page.js(
        "[...document.querySelectorAll('.tok')].map(t => t.getBoundingClientRect().left)"
    )
    tops = page.js("[...document.querySelectorAll('.tok')].map(t => t.getBoundingClientRect().top)")
    assert len(set(tops)) == 1  # one line: left-to-right order is the reading order
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
    first, last = page.js(
        "(() => { const n = document.querySelector('[data-k=\"2\"]').firstChild;"
        " const at = i => { const r = document.createRange(); r.setStart(n, i);"
        " r.setEnd(n, i + 1); return r.getBoundingClientRect().left; };"
        " return [at(0), at(n.length - 1)]; })()"
    )
    assert first < last  # "&lt;b&gt;" is not mirrored to ";tg&b;tl&"

    # The tooltip names the token and its alternatives with the same escapes.
    page.hover('[data-k="1"]')
    tip = page.tooltip()
    assert tip is not None and "#1  ' \\u202e'" in tip and "' \\u2066'" in tip
    ARTIFACTS.mkdir(exist_ok=True)
    shot = page.call("Page.captureScreenshot", format="png")["data"]
    (ARTIFACTS / "report-bidi.png").write_bytes(base64.b64decode(shot))
    assert not browser.named("Runtime.exceptionThrown")
