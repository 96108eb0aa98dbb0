"""Running an app under `opentelemetry-instrument`, as a user does, and reading what it exported.

The app runs in a subprocess of this interpreter's environment with a clean OpenTelemetry
configuration: only the variables a test passes, the console exporter's output on stdout
(read back as JSON), and the app's own view of each call in the file $APP_OUTPUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APPS = Path(__file__).resolve().parent / "apps"
RAW_APP = APPS / "raw_openai_app.py"
LANGCHAIN_APP = APPS / "langchain_app.py"
# OpenTelemetry's own GenAI instrumentations, when installed, are left out unless a test
# asks for them: these tests are about ours.
OFFICIAL = "openai,langchain"
TIMEOUT = 120


def opentelemetry_instrument() -> Path:
    """The `opentelemetry-instrument` of this interpreter's environment."""
    path = Path(sys.executable).parent / "opentelemetry-instrument"
    assert path.is_file(), f"{path} missing: install the 'instrument' extra"
    return path


@dataclass(frozen=True)
class Run:
    """What one instrumented run of an app printed and saw."""

    calls: list[dict[str, Any]]  # the app's view: one {"call", "logprobs"} per call
    exported: list[dict[str, Any]]  # the console exporters' JSON objects, in order
    stderr: str

    def spans(self, name: str | None = None) -> list[dict[str, Any]]:
        """The spans the console exporter printed (named `name`), by start time."""
        found = [o for o in self.exported if "context" in o and "name" in o]
        if name is not None:
            found = [s for s in found if s["name"] == name]
        return sorted(found, key=lambda s: str(s["start_time"]))

    def metric_names(self) -> set[str]:
        """Names of the metrics the console metric exporter printed."""
        return {
            str(metric["name"])
            for o in self.exported
            for rm in o.get("resource_metrics", [])
            for sm in rm["scope_metrics"]
            for metric in sm["metrics"]
        }


def _objects(text: str) -> list[dict[str, Any]]:
    # The console exporters print indented JSON objects one after another.
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return out
        value, position = decoder.raw_decode(text, position)
        assert isinstance(value, dict), value
        out.append(value)


def run_instrumented(
    app: Path, *, base_url: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Run:
    """`opentelemetry-instrument python app` against `base_url`; fails on a non-zero exit."""
    output = workdir / f"{app.stem}-calls.jsonl"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    environment.update(
        {
            "OPENAI_BASE_URL": base_url,
            "APP_OUTPUT": str(output),
            "OTEL_SERVICE_NAME": "zero-code-app",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": OFFICIAL,
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.update(env or {})
    done = subprocess.run(
        [str(opentelemetry_instrument()), sys.executable, str(app)],
        cwd=workdir,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-4000:]}"
    calls = [json.loads(line) for line in output.read_text().splitlines()]
    return Run(calls=calls, exported=_objects(done.stdout), stderr=done.stderr)


def event_logprobs(span: Mapping[str, Any]) -> list[float]:
    """The token logprobs of a span's `logprobs.token` events, in order."""
    return [
        float(event["attributes"]["logprobs.token.logprob"])
        for event in span["events"]
        if event["name"] == "logprobs.token"
    ]
