"""The `logprobscope` command through its real entry point, in a subprocess.

Every model call goes to a `ReplayServer` on 127.0.0.1 started by the test (never to the
network); every subprocess has a timeout.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from logprobscope import AIMessage
from logprobscope.__main__ import main
from logprobscope.report import read_traces
from logprobscope.testing import (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_TOP_LOGPROBS,
    Completion,
    Deviations,
    Faults,
    ReplayServer,
)
from tests.support.contract_spans import SEED_TOP, write_call

TIMEOUT = 90
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _content(completion: Completion) -> str:
    choices = completion["choices"]
    assert isinstance(choices, list)
    message = choices[0]["message"]
    text: str = message["content"]
    return text


def _tokens(completion: Completion) -> list[tuple[str, float]]:
    choices = completion["choices"]
    assert isinstance(choices, list)
    return [(t["token"], t["logprob"]) for t in choices[0]["logprobs"]["content"]]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points the CLI elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OTEL_"))
        and k not in ("NO_COLOR", "FORCE_COLOR", "LOGPROBSCOPE_MODEL", "LOGPROBSCOPE_DEBUG")
    }
    env.update(extra)
    return env


def cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logprobscope", *args],
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


class InProcess:
    """`main(argv)` in this process (fast): for the many variants of one behaviour."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        for name in list(os.environ):
            if name.startswith(("OPENAI_", "OTEL_")) or name in ("NO_COLOR", "FORCE_COLOR"):
                monkeypatch.delenv(name)

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        with self.monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            self.capsys.readouterr()
            code = main(list(args))
            captured = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, *needles: str
) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("logprobscope: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        yield srv


@pytest.fixture
def env(server: ReplayServer) -> dict[str, str]:
    return clean_env(OPENAI_BASE_URL=server.base_url)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- help and usage --------------------------------------------------------------------------


def test_help() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: logprobscope" in result.stdout
    assert "exit codes:" in result.stdout and "3  bad input file" in result.stdout


@pytest.mark.parametrize("command", ["run", "demo", "report"])
def test_help_of_every_subcommand(in_process: InProcess, command: str) -> None:
    result = in_process(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: logprobscope {command}" in result.stdout
    assert "exit codes:" in result.stdout and "3  bad input file" in result.stdout


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("logprobscope")
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("logprobscope ")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["run", "x", "--top-logprobs", "21"],
        ["run", "x", "--max-tokens", "0"],
        ["run", "x", "--input", "p.jsonl"],
        ["run", "x", "--output", "r.jsonl"],
        ["report"],
        ["bogus"],
    ],
)
def test_usage_errors_exit_2(in_process: InProcess, args: list[str], env: dict[str, str]) -> None:
    result = in_process(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip()


# -- run ---------------------------------------------------------------------------------------


def test_run_prints_answer_and_summary(server: ReplayServer, env: dict[str, str]) -> None:
    result = cli("run", "how are you today?", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not ANSI.search(out)  # not a terminal: plain text
    assert out.startswith(_content(SEED_TOP_LOGPROBS) + "\n")  # default --top-logprobs 3
    assert "perplexity 1.1307" in out
    assert "least likely tokens:" in out
    assert '#0    "I\'m"' in out and "alternatives: 'Thank' 0.7509, 'Hello' 0.1305" in out
    assert "low-confidence spans (p < 0.5): 1" in out
    body = server.requests[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "how are you today?"}]


def test_run_options_reach_the_request(server: ReplayServer, env: dict[str, str]) -> None:
    result = cli(
        "run",
        "hi",
        "--model",
        "my-model",
        "--system",
        "Be brief.",
        "--temperature",
        "0.5",
        "--max-tokens",
        "40",
        "--top-logprobs",
        "0",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(_content(SEED_INVOKE))
    body = server.requests[-1]
    assert body["model"] == "my-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert body["temperature"] == 0.5 and body["max_tokens"] == 40
    assert "top_logprobs" not in body


def test_run_base_url_flag(server: ReplayServer) -> None:
    result = cli("run", "hi", "--base-url", server.base_url, "--top-logprobs", "0")
    assert result.returncode == 0, result.stderr
    assert _content(SEED_INVOKE) in result.stdout


def test_run_stream(server: ReplayServer, env: dict[str, str]) -> None:
    result = cli("run", "How are you today?", "--stream", "--top-logprobs", "0", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(_content(SEED_STREAM) + "\n")
    assert f"── {len(_tokens(SEED_STREAM))} tokens" in result.stdout
    assert server.requests[-1]["stream"] is True


def test_run_colours_only_on_request(env: dict[str, str]) -> None:
    coloured = cli("run", "hi", "--stream", env={**env, "FORCE_COLOR": "1"})
    assert coloured.returncode == 0, coloured.stderr
    assert ANSI.search(coloured.stdout)
    assert ANSI.sub("", coloured.stdout).startswith(_content(SEED_TOP_LOGPROBS))
    assert "token probability:" in coloured.stdout  # the legend
    plain = cli("run", "hi", env={**env, "FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.returncode == 0 and not ANSI.search(plain.stdout)


@pytest.mark.parametrize("stream", [False, True])
def test_run_json(in_process: InProcess, env: dict[str, str], stream: bool) -> None:
    args = ["run", "hi", "--json", "--top-logprobs", "3"] + (["--stream"] if stream else [])
    result = cli(*args, env=env) if stream else in_process(*args, env=env)
    assert result.returncode == 0, result.stderr
    message = AIMessage.model_validate_json(result.stdout)
    assert message.content == _content(SEED_TOP_LOGPROBS)
    assert message.response_metadata.logprobs is not None
    content = message.response_metadata.logprobs.content
    assert content is not None
    assert [(t.token, t.logprob) for t in content] == _tokens(SEED_TOP_LOGPROBS)
    assert [a.token for a in content[0].top_logprobs] == ["Thank", "Hello", "I'm"]


def test_run_prompt_from_stdin(
    in_process: InProcess, monkeypatch: pytest.MonkeyPatch, server: ReplayServer
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    result = in_process("run", "-", env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 0, result.stderr
    assert server.requests[-1]["messages"] == [{"role": "user", "content": "from stdin\n"}]


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A stand-in OTLP/HTTP receiver: (endpoint, [(path, body)])."""
    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append((self.path, self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_run_sends_telemetry_where_otel_variables_say(
    env: dict[str, str], collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    endpoint, received = collector
    result = cli("run", "hi", env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert result.returncode == 0, result.stderr
    traces = [body for path, body in received if path == "/v1/traces"]
    metrics = [body for path, body in received if path == "/v1/metrics"]
    assert traces and b"chat gpt-4o-mini" in b"".join(traces)
    assert metrics and b"logprobs.token.probability" in b"".join(metrics)


# -- demo ----------------------------------------------------------------------------------------


def test_demo_offline_writes_traces_and_report(tmp_path: Path) -> None:
    result = cli("demo", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "replay server" in out and "capture_content=True" in out
    traces = tmp_path / "logprobscope-traces.jsonl"
    report = tmp_path / "logprobscope-report.html"
    assert f"traces: {traces.resolve()}" in out
    assert f"report: {report.resolve()}" in out
    assert _content(SEED_INVOKE) in out and _content(SEED_STREAM) in out
    calls = read_traces(traces).calls
    assert len(calls) == 3
    by_response = {c.attr_str("gen_ai.response.id"): c for c in calls}
    for seed in (SEED_INVOKE, SEED_STREAM, SEED_TOP_LOGPROBS):
        call = by_response[str(seed["id"])]
        assert call.tokens_complete
        assert [(t.text, t.logprob) for t in call.tokens] == _tokens(seed)
    streamed = by_response["chatcmpl-seed-stream"]
    assert streamed.stream and streamed.attr_bool("logprobs.stream.completed") is True
    assert len({t.time_unix_nano for t in streamed.tokens}) > 5  # a real timeline
    top = by_response["chatcmpl-seed-top-logprobs"]
    assert [a.token for a in top.tokens[0].alternatives] == ["Thank", "Hello", "I'm"]
    assert len({c.trace_id for c in calls}) == 1  # one demo trace
    page = report.read_text(encoding="utf-8")
    assert page.count('class="tok ') == sum(len(_tokens(s)) for s in calls_seeds())
    assert "<circle " in page


def test_demo_with_an_otlp_endpoint_writes_no_files(
    tmp_path: Path, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    endpoint, received = collector
    result = cli("demo", env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the OTLP endpoint" in result.stdout and "report:" not in result.stdout
    assert list(tmp_path.iterdir()) == []
    traces = b"".join(body for path, body in received if path == "/v1/traces")
    assert traces.count(b"chat gpt-4o") == 3 and b"logprobs.token.text" in traces


def calls_seeds() -> tuple[Completion, ...]:
    return (SEED_INVOKE, SEED_STREAM, SEED_TOP_LOGPROBS)


def test_demo_out_dir_and_own_endpoint(server: ReplayServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "nested" / "out"
    result = cli("demo", "--out", str(out_dir), env=clean_env(OPENAI_BASE_URL=server.base_url))
    assert result.returncode == 0, result.stderr
    assert f"endpoint: {server.base_url}" in result.stdout
    assert "replay server" not in result.stdout
    assert (out_dir / "logprobscope-traces.jsonl").exists()
    assert (out_dir / "logprobscope-report.html").exists()


# -- report ---------------------------------------------------------------------------------------


def test_report_command(tmp_path: Path) -> None:
    traces = write_call(tmp_path / "t.jsonl", SEED_TOP)
    result = cli("report", str(traces), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert "1 model call" in result.stdout
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_report_default_output_name(in_process: InProcess, tmp_path: Path) -> None:
    traces = write_call(tmp_path / "t.jsonl", SEED_TOP)
    result = in_process("report", str(traces), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.html").exists()


# -- batch --------------------------------------------------------------------------------------


def test_batch_jsonl(server: ReplayServer, tmp_path: Path, env: dict[str, str]) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"id": "a", "prompt": "Is it blue? yes or no"},
        {"messages": [{"role": "user", "content": "second"}]},
        {"id": 7, "prompt": "third"},
    ] * 3
    prompts.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    results = tmp_path / "results.jsonl"
    result = cli(
        "run",
        "--input",
        str(prompts),
        "--output",
        str(results),
        "--concurrency",
        "3",
        "--system",
        "Classify.",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "9 of 9 prompts answered" in result.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", 2, 7, "a", 5, 7, "a", 8, 7]  # input order
    first = records[0]
    assert first["answer"] == _content(SEED_TOP_LOGPROBS)
    assert first["token_count"] == len(_tokens(SEED_TOP_LOGPROBS))
    assert first["perplexity"] == pytest.approx(1.1307, abs=1e-4)
    assert first["min_probability"] == pytest.approx(0.1016, abs=1e-4)
    assert first["min_token"] == {"index": 0, "token": "I'm"}
    assert first["first_token"]["token"] == "I'm"
    assert first["first_token"]["probability"] == pytest.approx(0.10164, abs=1e-4)
    assert [a["token"] for a in first["first_token"]["top_logprobs"]] == ["Thank", "Hello", "I'm"]
    assert first["low_confidence_count"] == 1
    system = {"role": "system", "content": "Classify."}
    for body in server.requests[-9:]:
        messages = body["messages"]
        assert isinstance(messages, list) and messages[0] == system


def test_batch_to_stdout_with_a_failing_prompt(tmp_path: Path) -> None:
    calls = {"n": 0}

    def choose(body: Mapping[str, object]) -> Completion:
        calls["n"] += 1
        return SEED_INVOKE

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    with ReplayServer(choose, faults=Faults(status=500, fail_first=1)) as srv:
        result = cli(
            "run",
            "--input",
            str(prompts),
            "--concurrency",
            "1",
            "--max-retries",
            "0",
            env=clean_env(OPENAI_BASE_URL=srv.base_url),
        )
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["id"] == 1 and "HTTP 500" in records[0]["error"]
    assert records[1]["id"] == 2 and records[1]["answer"] == _content(SEED_INVOKE)
    assert_one_line_error(result, 1, "1 of 2 prompts answered", "HTTP 500")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"prompt": "ok"}\n{"prompt": \n', "p.jsonl:2: not JSON"),
        ('{"prompt": "ok"}\n["x"]\n', 'p.jsonl:2: expected an object with "prompt"'),
        ('{"text": "x"}\n', 'p.jsonl:1: give exactly one of "prompt"'),
        ('{"prompt": ""}\n', 'p.jsonl:1: "prompt" must be a non-empty string'),
        ('{"messages": [{"role": "robot", "content": "x"}]}\n', "p.jsonl:1: message 0 has role"),
        ('{"prompt": "x", "id": [1]}\n', 'p.jsonl:1: "id" must be'),
        ("\n\n", "p.jsonl: no prompts"),
    ],
)
def test_batch_bad_input_exit_3(
    in_process: InProcess,
    server: ReplayServer,
    tmp_path: Path,
    env: dict[str, str],
    content: str,
    needle: str,
) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(content)
    before = len(server.requests)
    first = content.startswith('{"prompt": "ok"}\n{"prompt": \n')
    run = cli if first else in_process  # one through the real entry point, the rest fast
    result = run("run", "--input", str(prompts), env=env)
    assert_one_line_error(result, 3, needle)
    assert len(server.requests) == before  # validated before any request


def test_batch_missing_input_file(
    in_process: InProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    result = in_process("run", "--input", str(tmp_path / "nope.jsonl"), env=env)
    assert_one_line_error(result, 3, "nope.jsonl: cannot read")


# -- structured output: --json-schema ------------------------------------------------------

LOCATION_SCHEMA = {
    "title": "Location",
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "units": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city", "temperature", "units"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
def test_run_json_schema_prints_each_fields_confidence(
    in_process: InProcess, server: ReplayServer, env: dict[str, str], tmp_path: Path, stream: bool
) -> None:
    schema = tmp_path / "location.json"
    schema.write_text(json.dumps(LOCATION_SCHEMA))
    args = ["run", "Weather in SF?", "--json-schema", str(schema)] + (
        ["--stream"] if stream else []
    )
    result = in_process(*args, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith('{"city":"San Francisco","temperature":65,"units":"f"}\n')
    assert server.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Location", "schema": LOCATION_SCHEMA},
    }
    table = out[out.index("fields: 3") :].splitlines()
    assert table[1].split() == ["path", "value", "p", "min", "p"]
    city, temperature, units = (line.split() for line in table[2:5])
    assert city[:4] == ["$.city", '"San', 'Francisco"', "0.9975"]
    assert temperature[:3] == ["$.temperature", "65", "0.5617"]
    assert units[:4] == ["$.units", '"f"', "0.9991", "0.9991"]
    assert "alternatives: 'f' 0.9991" in table[4]  # the schema's enum
    assert "alternatives" not in table[2] + table[3]


def test_run_json_schema_takes_a_response_format_and_names_by_file(
    in_process: InProcess, server: ReplayServer, env: dict[str, str], tmp_path: Path
) -> None:
    wrapper = tmp_path / "fmt.json"
    wrapper.write_text(json.dumps({"type": "json_object"}))
    result = in_process("run", "x", "--json-schema", str(wrapper), env=env)
    assert result.returncode == 0, result.stderr
    assert server.requests[-1]["response_format"] == {"type": "json_object"}
    assert "fields: 3" in result.stdout and "alternatives" not in result.stdout.split("fields")[1]
    untitled = tmp_path / "my weather.schema.json"
    untitled.write_text(json.dumps({"type": "object"}))
    result = in_process("run", "x", "--json-schema", str(untitled), env=env)
    assert result.returncode == 0, result.stderr
    sent = server.requests[-1]["response_format"]
    assert sent["json_schema"]["name"] == "my_weather_schema"


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "cannot read the JSON schema"), ("{", "is not JSON"), ("[1]", "holds no JSON schema")],
)
def test_run_json_schema_bad_file_exit_3(
    in_process: InProcess,
    server: ReplayServer,
    env: dict[str, str],
    tmp_path: Path,
    content: str | None,
    needle: str,
) -> None:
    path = tmp_path / "s.json"
    if content is not None:
        path.write_text(content)
    before = len(server.requests)
    result = in_process("run", "x", "--json-schema", str(path), env=env)
    assert_one_line_error(result, 3, needle)
    assert len(server.requests) == before


def test_batch_json_schema_adds_the_fields(
    in_process: InProcess, server: ReplayServer, env: dict[str, str], tmp_path: Path
) -> None:
    schema = tmp_path / "location.json"
    schema.write_text(json.dumps(LOCATION_SCHEMA))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "SF?"}\n')
    result = in_process("run", "--input", str(prompts), "--json-schema", str(schema), env=env)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(f["path"], f["value"]) for f in record["fields"]] == [
        ("$.city", "San Francisco"),
        ("$.temperature", 65),
        ("$.units", "f"),
    ]
    units = record["fields"][2]
    assert units["probability"] == pytest.approx(0.9991, abs=1e-4)
    assert units["alternatives"][0] == {"token": "f", "probability": units["probability"]}
    assert record["fields"][0]["alternatives"] is None


# -- bad input: one line on stderr, an exit code, no traceback ----------------------------


def test_missing_api_key() -> None:
    result = cli("run", "hi", env=clean_env())
    assert_one_line_error(result, 2, "no API key", "OPENAI_API_KEY")


def test_unreachable_base_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = cli("run", "hi", "--max-retries", "0", env=clean_env(OPENAI_BASE_URL=url))
    assert_one_line_error(result, 1, f"cannot connect to {url}")


def test_unreachable_base_url_in_demo(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = cli("demo", "--out", str(tmp_path), env=clean_env(OPENAI_BASE_URL=url))
    assert_one_line_error(result, 1, f"cannot connect to {url}")


@pytest.mark.parametrize("stream", [False, True])
def test_model_without_logprobs(in_process: InProcess, stream: bool) -> None:
    with ReplayServer(deviations=Deviations(no_logprobs=True)) as srv:
        args = ["run", "hi"] + (["--stream"] if stream else [])
        env = clean_env(OPENAI_BASE_URL=srv.base_url)
        result = cli(*args, env=env) if stream else in_process(*args, env=env)
    assert_one_line_error(result, 1, "returned no logprobs", "'gpt-4o-mini'")
    assert result.stdout.startswith(_content(SEED_TOP_LOGPROBS)[:20])


def test_batch_without_logprobs(in_process: InProcess, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "one"}\n')
    with ReplayServer(deviations=Deviations(no_logprobs=True)) as srv:
        result = in_process("run", "--input", str(prompts), env={"OPENAI_BASE_URL": srv.base_url})
    assert_one_line_error(result, 1, "no logprobs for any prompt")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["warning"] == "the server returned no logprobs" and record["token_count"] == 0


@pytest.mark.parametrize(
    ("status", "needle"),
    [(401, "authentication failed"), (404, "HTTP 404"), (429, "HTTP 429"), (500, "HTTP 500")],
)
def test_api_errors(in_process: InProcess, status: int, needle: str, tmp_path: Path) -> None:
    with ReplayServer(faults=Faults(status=status)) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-test"}
        run = cli if status == 401 else in_process
        single = run("run", "hi", "--max-retries", "0", env=clean_env(**env))
        prompts = tmp_path / "p.jsonl"
        prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
        batch = in_process("run", "--input", str(prompts), "--max-retries", "0", env=env)
    assert_one_line_error(single, 1, needle)
    assert_one_line_error(batch, 1, needle)


def test_malformed_trace_file(tmp_path: Path) -> None:
    bad = tmp_path / "traces.jsonl"
    bad.write_text('{"resourceSpans": []}\n{"resourceSpans": [\n')
    result = cli("report", str(bad), "-o", str(tmp_path / "r.html"))
    assert_one_line_error(result, 3, "traces.jsonl:2: not JSON")
    assert not (tmp_path / "r.html").exists()


def test_trace_file_without_model_calls(in_process: InProcess, tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "GET /"}]}]}]}\n')
    result = in_process("report", str(path))
    assert_one_line_error(result, 3, "1 spans, none of them a model call")


def test_missing_trace_file(in_process: InProcess, tmp_path: Path) -> None:
    result = in_process("report", str(tmp_path / "none.jsonl"))
    assert_one_line_error(result, 3, "none.jsonl: cannot read")
