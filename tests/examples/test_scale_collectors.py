"""examples/scale: a load-balancing tier routing by trace id to tail-sampling collectors.

Docker and the collector do not run here: the two files are parsed and checked against the
schema the collector-contrib components document (the tail_sampling processor's policy types
and their settings, the loadbalancing exporter's routing keys and resolvers), and the
sampling policies are evaluated on spans our telemetry really emits: a confident answer is
left to the probabilistic share, a low-confidence one and a failed one are always kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from logprobscope import ChatOpenAI
from logprobscope import _contract as n
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import Faults, ReplayServer, make_completion
from tests.support.otel import InMemoryOtel

SCALE = Path(__file__).resolve().parents[2] / "examples" / "scale"
GATEWAY = SCALE / "otel-collector-gateway.yaml"
SAMPLER = SCALE / "otel-collector-sampler.yaml"

# The tail_sampling processor's documented settings: top level, and per policy type the
# settings block it reads (named as the type) with each setting's type.
TAIL_SAMPLING_TOP = {
    "decision_wait": str,
    "num_traces": int,
    "expected_new_traces_per_sec": int,
    "policies": list,
}
POLICY_SETTINGS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "always_sample": {},
    "latency": {"threshold_ms": int, "upper_threshold_ms": int},
    "numeric_attribute": {"key": str, "min_value": int, "max_value": int, "invert_match": bool},
    "probabilistic": {"hash_salt": str, "sampling_percentage": (int, float)},
    "status_code": {"status_codes": list},
    "string_attribute": {
        "key": str,
        "values": list,
        "enabled_regex_matching": bool,
        "cache_max_size": int,
        "invert_match": bool,
    },
    "rate_limiting": {"spans_per_second": int},
    "span_count": {"min_spans": int, "max_spans": int},
    "trace_state": {"key": str, "values": list},
    "boolean_attribute": {"key": str, "value": bool},
    "ottl_condition": {"error_mode": str, "span": list, "spanevent": list},
}
STATUS_CODES = {"OK", "ERROR", "UNSET"}
OTTL_ERROR_MODES = {"ignore", "silent", "propagate"}
ROUTING_KEYS = {"traceID", "service", "resource", "metric", "streamID", "attributes"}
RESOLVERS = {"static", "dns", "k8s", "aws_cloud_map"}
# The one OTTL form our policies use: a span attribute compared with a number.
OTTL_COMPARISON = re.compile(
    r'^attributes\["(?P<key>[^"]+)"\]\s*(?P<op><=|>=|<|>|==|!=)\s*(?P<value>-?\d+(\.\d+)?)$'
)
# Span attributes whose values are integers or floats in our telemetry.
INT_ATTRIBUTES = {n.LOGPROBS_LOW_CONFIDENCE_COUNT, n.LOGPROBS_TOKEN_COUNT, n.LOGPROBS_MIN_INDEX}
FLOAT_ATTRIBUTES = {
    n.LOGPROBS_MIN,
    n.LOGPROBS_MEAN,
    n.LOGPROBS_SUM,
    n.LOGPROBS_PERPLEXITY,
    n.LOGPROBS_ENTROPY_MEAN,
    n.LOGPROBS_MARGIN_MEAN,
}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _policies() -> list[dict[str, Any]]:
    policies = _load(SAMPLER)["processors"]["tail_sampling"]["policies"]
    assert isinstance(policies, list)
    return policies


@pytest.mark.parametrize("path", [GATEWAY, SAMPLER], ids=["gateway", "sampler"])
def test_pipelines_reference_defined_components(path: Path) -> None:
    config = _load(path)
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            missing = set(pipeline.get(kind) or []) - set(config.get(kind) or {})
            assert not missing, f"{path.name}: {name} uses undefined {kind} {missing}"
        assert pipeline["processors"][0] == "memory_limiter"


def test_the_gateway_routes_traces_by_trace_id() -> None:
    config = _load(GATEWAY)
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    assert exporter == "loadbalancing"
    settings = config["exporters"]["loadbalancing"]
    assert set(settings) <= {"routing_key", "protocol", "resolver", "timeout"}
    assert settings["routing_key"] == "traceID" and settings["routing_key"] in ROUTING_KEYS
    assert set(settings["protocol"]) == {"otlp"}  # the only protocol it speaks
    [resolver] = settings["resolver"]  # exactly one resolver
    assert resolver in RESOLVERS
    dns = settings["resolver"]["dns"]
    assert set(dns) <= {"hostname", "port", "interval", "timeout"} and dns["hostname"]
    # Tail sampling happens behind the gateway, never in it.
    assert "tail_sampling" not in (config.get("processors") or {})
    # Routing happens in front of the samplers: what they receive on is what it sends to.
    sampler = _load(SAMPLER)
    assert (
        int(sampler["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":")[1])
        == (dns["port"])
    )


def test_tail_sampling_settings_follow_the_documented_schema() -> None:
    processor = _load(SAMPLER)["processors"]["tail_sampling"]
    assert set(processor) <= set(TAIL_SAMPLING_TOP)
    for key, kind in TAIL_SAMPLING_TOP.items():
        assert isinstance(processor[key], kind), key
    assert re.fullmatch(r"\d+(ms|s|m)", processor["decision_wait"])
    names = [p["name"] for p in processor["policies"]]
    assert len(names) == len(set(names))
    for policy in processor["policies"]:
        kind = policy["type"]
        assert kind in POLICY_SETTINGS, kind
        assert set(policy) == {"name", "type", kind}, policy["name"]
        settings = policy[kind]
        schema = POLICY_SETTINGS[kind]
        assert set(settings) <= set(schema), (policy["name"], set(settings) - set(schema))
        for key, value in settings.items():
            assert isinstance(value, schema[key]) and not (
                isinstance(value, bool) and schema[key] is int
            ), (policy["name"], key)
        if kind == "status_code":
            assert set(settings["status_codes"]) <= STATUS_CODES
        if kind == "numeric_attribute":
            assert settings["min_value"] <= settings["max_value"]
        if kind == "probabilistic":
            assert 0 < settings["sampling_percentage"] <= 100
        if kind == "ottl_condition":
            assert settings.get("error_mode", "propagate") in OTTL_ERROR_MODES
            for condition in settings["span"]:
                assert OTTL_COMPARISON.match(condition), condition


def test_the_policies_read_attributes_we_emit_with_their_types() -> None:
    read: dict[str, str] = {}
    for policy in _policies():
        kind = policy["type"]
        if kind == "numeric_attribute":
            read[policy[kind]["key"]] = "int"  # the policy compares integers only
        elif kind == "ottl_condition":
            for condition in policy[kind]["span"]:
                match = OTTL_COMPARISON.match(condition)
                assert match is not None
                read[match["key"]] = "number"
    assert read == {n.LOGPROBS_LOW_CONFIDENCE_COUNT: "int", n.LOGPROBS_MIN: "number"}
    for key, kind in read.items():
        assert key in (INT_ATTRIBUTES if kind == "int" else INT_ATTRIBUTES | FLOAT_ATTRIBUTES)
    # logprobs.min below ln(0.1): the least likely token under 10 %
    [ottl] = [p for p in _policies() if p["type"] == "ottl_condition"]
    bound = float(OTTL_COMPARISON.match(ottl["ottl_condition"]["span"][0])["value"])  # type: ignore[index]
    assert math.isclose(math.exp(bound), 0.1, rel_tol=1e-6)


# -- the policies, evaluated on our spans ---------------------------------------------------


def _compare(left: float, op: str, right: float) -> bool:
    return {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
        "==": left == right,
        "!=": left != right,
    }[op]


def _kept_by(span: ReadableSpan) -> set[str]:
    """The deterministic policies that keep `span`'s trace (probabilistic ones left out)."""
    attributes: Mapping[str, Any] = dict(span.attributes or {})
    kept: set[str] = set()
    for policy in _policies():
        kind, settings = policy["type"], policy[policy["type"]]
        if kind == "status_code":
            if span.status.status_code.name in settings["status_codes"]:
                kept.add(policy["name"])
        elif kind == "numeric_attribute":
            value = attributes.get(settings["key"])
            if isinstance(value, int) and settings["min_value"] <= value <= settings["max_value"]:
                kept.add(policy["name"])
        elif kind == "ottl_condition":
            for condition in settings["span"]:
                match = OTTL_COMPARISON.match(condition)
                assert match is not None
                value = attributes.get(match["key"])
                if isinstance(value, (int, float)) and _compare(
                    value, match["op"], float(match["value"])
                ):
                    kept.add(policy["name"])
    return kept


def _span(otel: InMemoryOtel, server: ReplayServer, *, fails: bool = False) -> ReadableSpan:
    handler = OpenTelemetryCallbackHandler(tracer_provider=otel.tracer_provider)
    model = ChatOpenAI(
        model="gpt-4o", logprobs=True, base_url=server.base_url, api_key="k", max_retries=0
    )
    if fails:
        with pytest.raises(Exception, match="500"):
            model.invoke("hi", callbacks=[handler])
    else:
        model.invoke("hi", callbacks=[handler])
    [span] = otel.spans()
    return span


@pytest.mark.parametrize(
    ("tokens", "kept"),
    [
        ([("Paris", -0.01), (".", -0.001)], set()),
        ([("Paris", -0.01), (" maybe", -1.2)], {"low-confidence-tokens"}),
        ([("Lyon", -3.0), (".", -0.001)], {"low-confidence-tokens", "unlikely-token"}),
    ],
    ids=["confident", "one-token-below-0.5", "one-token-below-0.1"],
)
def test_policies_on_answers(
    otel: InMemoryOtel, tokens: list[tuple[str, float]], kept: set[str]
) -> None:
    with ReplayServer([make_completion(tokens)]) as server:
        span = _span(otel, server)
    assert span.status.status_code is not StatusCode.ERROR
    assert _kept_by(span) == kept


def test_a_failed_call_is_kept(otel: InMemoryOtel) -> None:
    with ReplayServer(faults=Faults(status=500)) as server:
        span = _span(otel, server, fails=True)
    assert _kept_by(span) == {"errors"}
