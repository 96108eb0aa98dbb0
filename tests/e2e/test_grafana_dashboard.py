"""Every Grafana dashboard query, evaluated by a real Prometheus scraping the handler.

The handler's metrics are served by `configure_telemetry(prometheus_port=0)`; Prometheus
(the e2e fixture) scrapes them every second. Calls are made in two rounds, after the first
scrape, so that `rate()` and `increase()` have something to see.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry
from logprobscope.testing import Faults, ReplayServer
from tests.e2e.receivers import StartPrometheus
from tests.support.dashboard import load_dashboard, queries, substitute

pytestmark = pytest.mark.e2e


def _round(model: ChatOpenAI, server: ReplayServer) -> None:
    server.set_faults(Faults())
    model.invoke("how are you today?")
    model.invoke("how are you today?", top_logprobs=0)
    for _ in model.stream("How are you today?"):
        pass
    server.set_faults(Faults(status=500))
    with pytest.raises(Exception, match="500"):
        model.invoke("fails")


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # The e2e tier's rule: in CI (LOGPROBSCOPE_REQUIRE_E2E=1) a missing tool fails.
        if os.environ.get("LOGPROBSCOPE_REQUIRE_E2E") == "1":
            pytest.fail("promtool is not installed (LOGPROBSCOPE_REQUIRE_E2E=1)")
        pytest.skip("promtool is not installed")
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(queries(load_dashboard())):
        rules += [f"      - record: dashboard:query_{i}", f"        expr: '{substitute(expr)}'"]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_returns_data(
    start_prometheus: StartPrometheus,
) -> None:
    handle = configure_telemetry(
        service_name="dashboard-e2e",
        prometheus_port=0,
        set_global=False,
        otlp_endpoint=None,
    )
    try:
        assert handle.prometheus_port is not None
        handler = OpenTelemetryCallbackHandler(
            tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
        )
        prometheus = start_prometheus([f"127.0.0.1:{handle.prometheus_port}"])
        with ReplayServer(faults=Faults()) as server:
            model = ChatOpenAI(
                model="gpt-4o",
                logprobs=True,
                top_logprobs=3,
                base_url=server.base_url,
                max_retries=0,
                callbacks=[handler],
            )
            _round(model, server)
            prometheus.wait_for("logprobs_token_probability_count", timeout=60)
            time.sleep(2.5 * prometheus.scrape_interval)
            _round(model, server)
            prometheus.wait_for("increase(logprobs_token_probability_count[1m]) > 0", timeout=60)
            prometheus.wait_for(
                "increase(gen_ai_client_operation_time_to_first_chunk_seconds_count[1m]) > 0",
                timeout=60,
            )
        empty = []
        for where, expr in queries(load_dashboard()):
            result = prometheus.query(substitute(expr))
            values = [
                float(r["value"][1])  # type: ignore[index]
                for r in result
                if "value" in r
            ]
            if not any(not math.isnan(v) for v in values):
                empty.append(f"{where}: {expr}")
        assert not empty, "queries without data:\n" + "\n".join(empty)
    finally:
        handle.shutdown()
