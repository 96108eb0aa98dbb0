"""Field-level confidence: hand-made tokenisations of JSON answers, then random documents from
random schemas under random whitespace, cut into random tokens (inside multi-byte characters
too), checked against the spans the serialiser recorded."""

from __future__ import annotations

import enum
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionTokenLogprob
from openai.types.chat.chat_completion_token_logprob import TopLogprob as SdkTopLogprob
from pydantic import BaseModel

from logprobscope import (
    FieldConfidence,
    FieldReport,
    TokenLogprob,
    TokenLogprobList,
    TopLogprob,
    field_confidence,
)

INF = math.inf
NAN = math.nan


def tok(
    text: str,
    logprob: float = -0.1,
    *,
    raw: bytes | None = None,
    tops: Sequence[tuple[str, float]] = (),
) -> TokenLogprob:
    return TokenLogprob(
        token=text,
        logprob=logprob,
        bytes=None if raw is None else list(raw),
        top_logprobs=[TopLogprob(token=t, logprob=lp) for t, lp in tops],
    )


def toks(*texts: str) -> list[TokenLogprob]:
    """Tokens with distinct logprobs: token i has logprob -(i + 1) / 10."""
    return [tok(t, -(i + 1) / 10) for i, t in enumerate(texts)]


def summary(report: FieldReport) -> list[tuple[str, object, int, int]]:
    return [(f.path, f.value, f.token_start, f.token_stop) for f in report.fields]


# -- hand-made tokenisations ---------------------------------------------------------------------


def test_a_token_straddling_the_end_of_a_value_counts_for_that_value() -> None:
    tokens = toks('{"a":{"b":"', "x", '"},', '"c":', "1", "}")
    report = field_confidence(tokens)
    assert report.complete
    assert summary(report) == [("$.a.b", "x", 0, 3), ("$.c", 1, 4, 5)]
    b = report["$.a.b"]
    assert b.logprob == math.fsum([-0.1, -0.2, -0.3])
    assert b.min_probability == math.exp(-0.3)
    assert b.probability == math.exp(b.logprob)
    assert b.alternatives is None and report["$.c"].alternatives is None


def test_one_token_spelling_several_values_counts_for_each() -> None:
    report = field_confidence(toks("[", "1,2,", "3]"))
    assert summary(report) == [("$[0]", 1, 1, 2), ("$[1]", 2, 1, 2), ("$[2]", 3, 2, 3)]
    assert report["$[0]"].logprob == report["$[1]"].logprob == -0.2


def test_multi_byte_characters_split_across_tokens_come_from_bytes() -> None:
    smile = "😀".encode()
    e_acute = "é".encode()
    tokens = [
        tok('{"v":"', -0.1),
        tok("\ufffd", -0.2, raw=e_acute[:1]),
        tok("\ufffd", -0.3, raw=e_acute[1:] + smile[:2]),
        tok("\ufffd", -0.4, raw=smile[2:]),
        tok('"}', -0.5),
    ]
    report = field_confidence(tokens)
    assert summary(report) == [("$.v", "é😀", 0, 5)]
    assert report["$.v"].alternatives is None
    # Without the bytes, the replacement characters are the text.
    assert field_confidence(TokenLogprobList(tokens)) == report
    text_only = [tok(t.token, t.logprob) for t in tokens]
    assert field_confidence(text_only)["$.v"].value == "\ufffd\ufffd\ufffd"


def test_escaped_quotes_and_unicode_escapes_in_strings_and_keys() -> None:
    tokens = toks('{"k\\"ey":"say ', '\\"hi', '\\" \\u00e9 \\ud83d', '\\ude00 \\n\\\\"}')
    report = field_confidence(tokens)
    assert summary(report) == [('$["k\\"ey"]', 'say "hi" é 😀 \n\\', 0, 4)]
    # A lone escaped surrogate is not text: it becomes U+FFFD, and the report dumps to JSON.
    lone = field_confidence(toks('["\\ud800x"]'))
    assert summary(lone) == [("$[0]", "\ufffdx", 0, 1)]
    assert json.loads(lone.model_dump_json())["fields"][0]["value"] == "\ufffdx"


def test_nested_and_empty_arrays_and_objects() -> None:
    report = field_confidence(toks('[[1,[2,3]],[],{"a":{', "},", '"b":[ ]', ',"c":[{}]}]'))
    assert summary(report) == [
        ("$[0][0]", 1, 0, 1),
        ("$[0][1][0]", 2, 0, 1),
        ("$[0][1][1]", 3, 0, 1),
        ("$[1]", [], 0, 1),
        ("$[2].a", {}, 0, 2),
        ("$[2].b", [], 2, 3),
        ("$[2].c[0]", {}, 3, 4),
    ]
    assert summary(field_confidence(toks("{", "}"))) == [("$", {}, 0, 2)]


def test_numbers_negative_with_exponents_and_huge() -> None:
    text = "[-0, -1.5e-3, 2E+10, 0.25, 1e400, 12345678901234567890, " + "9" * 5000 + "]"
    values = [f.value for f in field_confidence(toks(text)).fields]
    assert values[:6] == [0, -1.5e-3, 2e10, 0.25, INF, 12345678901234567890]
    assert [type(v) for v in values[:6]] == [int, float, float, float, float, int]
    # Beyond int()'s digit limit (where the Python has one): a float, and no error.
    assert values[6] in (INF, 10**5000 - 1)


def test_top_level_scalars_and_whitespace_around_the_value() -> None:
    assert summary(field_confidence(toks(' \n "x"', "\n"))) == [("$", "x", 0, 1)]
    assert summary(field_confidence(toks("4", "2 "))) == [("$", 42, 0, 2)]
    assert summary(field_confidence(toks("null"))) == [("$", None, 0, 1)]
    report = field_confidence(toks(" true", "\n"))
    assert summary(report) == [("$", True, 0, 1)] and report.complete


def test_keys_that_are_not_identifiers_are_quoted() -> None:
    doc = {"odd key": 1, "é": 2, "a.b": 3, "_x1": 4, "": 5, "1a": 6, "Z9": 7}
    report = field_confidence(toks(json.dumps(doc)))
    paths = [f.path for f in report.fields]
    assert paths == ['$["odd key"]', '$["é"]', '$["a.b"]', "$._x1", '$[""]', '$["1a"]', "$.Z9"]


def test_a_json_fence_and_trailing_prose_are_skipped() -> None:
    tokens = toks("```", "json\n", '{"a":', " 1}", "\n```", "\nDone.")
    report = field_confidence(tokens)
    assert summary(report) == [("$.a", 1, 3, 4)] and report.complete
    assert summary(field_confidence(toks("```json"))) == []


def test_non_finite_logprobs_follow_the_figures_conventions() -> None:
    tokens = [tok('["', -0.5), tok("a", NAN), tok('",', -9999.0), tok('"b"', -INF), tok("]", 800.0)]
    report = field_confidence(tokens)
    a, b = report.fields
    assert (a.token_start, a.token_stop) == (0, 3)
    assert a.logprob == -9999.5  # the NaN token is skipped
    assert a.min_probability == 0.0  # exp(-9999) underflows: no error
    assert b.logprob == -INF and b.min_probability == 0.0 and b.probability == 0.0
    only_nan = field_confidence([tok("1", NAN)]).fields[0]
    assert math.isnan(only_nan.logprob) and math.isnan(only_nan.min_probability)
    assert math.isnan(field_confidence([tok("1", INF)]).fields[0].logprob)
    # Malformed floors so low that their sum overflows: -inf, not an OverflowError.
    huge = field_confidence([tok('"a', -1e308), tok('"', -1e308)]).fields[0]
    assert huge.logprob == -INF and huge.min_probability == 0.0


def test_truncated_and_invalid_json_give_what_parsed_fully() -> None:
    cases: list[tuple[str, list[tuple[str, object]]]] = [
        ('{"a":1,"b":"hel', [("$.a", 1)]),
        ('{"a":12', []),  # more digits may have been cut off
        ('{"a":true', [("$.a", True)]),
        ('{"a":tr', []),
        ('{"a":01}', []),
        ('{"a":1,}', [("$.a", 1)]),
        ('{"a" 1}', []),
        ('{"a":"x" "b"}', [("$.a", "x")]),
        ('{"a":"\\x"}', []),
        ("{1:2}", []),
        ("[1 2]", [("$[0]", 1)]),
        ('[1,"a":2]', [("$[0]", 1), ("$[1]", "a")]),
        ("Sure! Here it is.", []),
        ("", []),
        ("   ", []),
        ("-", []),
        ("[1.]", []),
        ("[truex]", []),
    ]
    for text, expected in cases:
        report = field_confidence(toks(text) if text else [])
        assert not report.complete, text
        assert [(f.path, f.value) for f in report.fields] == expected, text


def test_deep_nesting_does_not_recurse() -> None:
    depth = 20_000
    report = field_confidence(toks("[" * depth, "1", "]" * depth))
    assert report.complete
    (field,) = report.fields
    assert field.path == "$" + "[0]" * depth and field.value == 1


def test_lookup_by_path() -> None:
    report = field_confidence(toks('{"a":1,"a":2}'))
    assert [f.value for f in report.fields] == [1, 2]
    assert report["$.a"].value == 2 and report.get("$.a") is report.fields[1]
    assert report.get("$.b") is None
    with pytest.raises(KeyError):
        report["$.b"]


def test_results_are_frozen_and_dump_to_json() -> None:
    report = field_confidence(toks('{"ok":', "false}"))
    with pytest.raises(ValueError):
        report.fields[0].path = "$.x"
    loaded = FieldReport.model_validate_json(report.model_dump_json())
    assert loaded == report
    assert isinstance(loaded.fields[0], FieldConfidence)


# -- alternatives: booleans, enums ---------------------------------------------------------------

SENTIMENT_TOPS = [("pos", -0.2), ("neg", -1.8)]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    colour: Colour
    size: Literal["S", "M"] | None
    price: float


class Answer(BaseModel):
    label: Literal["positive", "negative"]
    items: list[Item]
    note: str
    flag: bool


ANSWER = {
    "label": "positive",
    "items": [{"colour": "red", "size": None, "price": 1.5}, {"colour": "blue", "size": "M"}],
    "note": "fine",
    "flag": False,
}


def answer_tokens() -> list[TokenLogprob]:
    text = json.dumps(ANSWER)
    # One token per character, each with alternatives of its own.
    return [tok(c, -0.01 * i, tops=[(c, -0.01 * i), ("?", -5.0)]) for i, c in enumerate(text)]


def first_value_token(text: str, path_key: str) -> int:
    return text.index(path_key) + len(path_key)


def test_with_a_pydantic_schema_enums_and_booleans_get_alternatives() -> None:
    tokens = answer_tokens()
    report = field_confidence(tokens, schema=Answer)
    choices = {f.path for f in report.fields if f.alternatives is not None}
    expected = {"$.label", "$.items[0].colour", "$.items[0].size", "$.items[1].colour"}
    assert choices == expected | {"$.items[1].size", "$.flag"}
    label = report["$.label"]
    text = json.dumps(ANSWER)
    at = first_value_token(text, '"label": "')  # the "p" after the opening quote
    assert label.alternatives_token == at and tokens[at].token == "p"
    assert label.alternatives is not None
    assert [(a.token, a.logprob) for a in label.alternatives] == [("p", -0.01 * at), ("?", -5.0)]
    assert label.alternatives[1].probability == math.exp(-5.0)
    assert report["$.items[0].size"].value is None  # Optional[Literal]: still a choice
    assert report["$.note"].alternatives is None and report["$.note"].alternatives_token is None


def test_without_a_schema_only_booleans_get_alternatives() -> None:
    report = field_confidence(answer_tokens())
    assert [f.path for f in report.fields if f.alternatives is not None] == ["$.flag"]


@pytest.mark.parametrize(
    "schema",
    [
        Answer.model_json_schema(),
        {"name": "answer", "schema": Answer.model_json_schema()},
        {"type": "json_schema", "json_schema": {"name": "a", "schema": Answer.model_json_schema()}},
    ],
)
def test_json_schemas_and_openai_wrappers_are_read_alike(schema: dict[str, Any]) -> None:
    expected = field_confidence(answer_tokens(), schema=Answer)
    assert field_confidence(answer_tokens(), schema=schema) == expected


def test_schema_keywords_that_mark_enums() -> None:
    schema = {
        "type": "array",
        "prefixItems": [{"const": "x"}, {"$ref": "#/$defs/E"}],
        "items": {"oneOf": [{"type": "string"}, {"allOf": [{"enum": [1, 2]}]}]},
        "$defs": {"E": {"$ref": "#/$defs/E2"}, "E2": {"enum": ["a"]}},
    }
    report = field_confidence(toks('["x","a","s"]'), schema=schema)
    assert [f.alternatives is not None for f in report.fields] == [True, True, True]
    objects = {
        "type": "object",
        "properties": {"fixed": {"type": "string"}},
        "additionalProperties": {"enum": ["on", "off"]},
    }
    report = field_confidence(toks('{"fixed":"on","other":"on"}'), schema=objects)
    assert [f.alternatives is not None for f in report.fields] == [False, True]
    # A cyclic or remote $ref, a malformed schema: nothing declared, nothing raised.
    for odd in ({"$ref": "#"}, {"$ref": "other.json#/x"}, {"items": 3, "anyOf": "x"}):
        report = field_confidence(toks('["on"]'), schema=odd)
        assert report.fields[0].alternatives is None, odd


def test_a_schema_that_is_neither_a_mapping_nor_a_model_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        field_confidence(toks("1"), schema=["not", "a", "schema"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("texts", "expected_at"),
    [
        (['{"s":', '"', "pos", 'itive"}'], 2),  # the quote alone adds no value character
        (['{"s":"', "pos", 'itive"}'], 1),
        (['{"s":', '"pos', 'itive"}'], 1),
        (['{"s":"', '"}'], 1),  # an empty string: the token of its closing quote
        (['{"s":""', "}"], 0),
    ],
)
def test_alternatives_come_from_the_first_token_that_adds_value_characters(
    texts: list[str], expected_at: int
) -> None:
    tokens = [tok(t, -0.1, tops=[(t, -0.1), (f"alt{i}", -3.0)]) for i, t in enumerate(texts)]
    field = field_confidence(tokens, schema={"properties": {"s": {"enum": ["positive", ""]}}})
    (s,) = field.fields
    assert s.alternatives_token == expected_at
    assert s.alternatives is not None and s.alternatives[1].token == f"alt{expected_at}"


def test_a_choice_without_alternatives_from_the_server_has_none_to_give() -> None:
    (field,) = field_confidence(toks("true")).fields
    assert field.alternatives == () and field.alternatives_token == 0


# -- the token types accepted --------------------------------------------------------------------


def test_openai_sdk_tokens_and_our_token_list_give_the_same_report() -> None:
    ours = answer_tokens()
    sdk = [
        ChatCompletionTokenLogprob(
            token=t.token,
            logprob=t.logprob,
            bytes=t.bytes,
            top_logprobs=[SdkTopLogprob(token=a.token, logprob=a.logprob) for a in t.top_logprobs],
        )
        for t in ours
    ]
    expected = field_confidence(ours, schema=Answer)
    assert len(expected.fields) == 8
    assert field_confidence(sdk, schema=Answer) == expected
    assert field_confidence(TokenLogprobList(ours), schema=Answer) == expected
    assert field_confidence(TokenLogprobList(ours)[2:], schema=Answer) != expected


class Odd:
    def __init__(self, token: object, logprob: object, raw: object, tops: object) -> None:
        self.token = token
        self.logprob = logprob
        self.bytes = raw
        self.top_logprobs = tops


def test_malformed_token_objects_never_raise() -> None:
    tokens: list[Any] = [
        Odd("[tr", "-0.5", [300], [Odd(3, None, None, None)]),  # bytes not 0..255: the text
        Odd("ue", "x", 5, "abc"),  # an int is not bytes; a str is not a list of alternatives
        Odd(None, None, None, None),
        Odd(",2", -1, b",1", []),  # bytes given as bytes: they win over the text
        object(),
        Odd("2]", -0.25, None, None),
    ]
    report = field_confidence(tokens)
    assert report.complete
    assert summary(report) == [("$[0]", True, 0, 2), ("$[1]", 12, 3, 6)]
    first, second = report.fields
    assert first.logprob == -0.5  # "x" is NaN, skipped
    assert first.alternatives is not None
    assert [(a.token, math.isnan(a.logprob)) for a in first.alternatives] == [("", True)]
    assert second.logprob == -1.25  # the object() token has a NaN logprob
    no_list: list[Any] = [Odd("false", -1, None, "abc")]
    assert field_confidence(no_list).fields[0].alternatives == ()


# -- random documents from random schemas, cut into random tokens -------------------------------

KEYS = st.text(max_size=5)
SCALAR_SCHEMAS = st.sampled_from(
    [{"type": t} for t in ("string", "integer", "number", "boolean", "null")]
)
ENUM_SCHEMAS = st.lists(
    st.text(max_size=6) | st.integers(-1000, 1000), min_size=1, max_size=4, unique=True
).map(lambda values: {"enum": values})


def _container_schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    arrays = children.map(lambda s: {"type": "array", "items": s})
    objects = st.dictionaries(KEYS, children, max_size=4).flatmap(
        lambda props: st.sets(st.sampled_from(sorted(props)) if props else st.nothing()).map(
            lambda required: {"type": "object", "properties": props, "required": sorted(required)}
        )
    )
    return arrays | objects


SCHEMAS = st.recursive(SCALAR_SCHEMAS | ENUM_SCHEMAS, _container_schemas, max_leaves=12)
WHITESPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "  ", "\r\n  "])


def values_of(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "array":
        return st.lists(values_of(schema["items"]), max_size=4)
    if kind == "object":
        props = schema["properties"]
        required = {k: values_of(s) for k, s in props.items() if k in schema["required"]}
        optional = {k: values_of(s) for k, s in props.items() if k not in schema["required"]}
        return st.fixed_dictionaries(required, optional=optional)
    return {
        "string": st.text(max_size=8)
        | st.text(st.characters(min_codepoint=0x80, codec="utf-8"), max_size=4),
        "integer": st.integers(),
        "number": st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "null": st.none(),
    }[kind]


def member_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if key.isascii() and (key[:1].isalpha() or key[:1] == "_"):
        if all(c.isalnum() or c == "_" for c in key):
            return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


class Serialised:
    """A document written with random whitespace, and each leaf's path, value and span."""

    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw
        self.out = bytearray()
        # path, value, begin, end, content_begin, declared enum
        self.leaves: list[tuple[str, Any, int, int, int, bool]] = []

    def ws(self) -> None:
        self.out += self.draw(WHITESPACE).encode()

    def value(self, value: Any, schema: dict[str, Any], path: str) -> None:
        begin = len(self.out)
        if isinstance(value, (dict, list)):
            is_dict = isinstance(value, dict)
            self.out += b"{" if is_dict else b"["
            items: list[tuple[Any, Any]]
            items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
            if not items:
                self.ws()
            for i, (key, item) in enumerate(items):
                if i:
                    self.out += b","
                self.ws()
                if is_dict:
                    self.out += json.dumps(key, ensure_ascii=self.draw(st.booleans())).encode()
                    self.ws()
                    self.out += b":"
                    self.ws()
                    child = schema["properties"][key]
                else:
                    child = schema["items"]
                self.value(item, child, member_path(path, key))
                self.ws()
            self.out += b"}" if is_dict else b"]"
            if not items:
                self.leaves.append((path, value, begin, len(self.out), begin, False))
            return
        if isinstance(value, str):
            lexeme = json.dumps(value, ensure_ascii=self.draw(st.booleans()))
        else:
            lexeme = json.dumps(value)
        self.out += lexeme.encode()
        content = begin + 1 if isinstance(value, str) else begin
        self.leaves.append((path, value, begin, len(self.out), content, "enum" in schema))


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Serialised]:
    schema = draw(SCHEMAS)
    value = draw(values_of(schema))
    doc = Serialised(draw(st.data()))
    doc.ws()
    doc.value(value, schema, "$")
    doc.ws()
    return schema, value, doc


LOGPROBS = st.one_of(
    st.floats(min_value=-30.0, max_value=0.0),
    st.sampled_from([NAN, -INF, -9999.0, 800.0]),
)


@st.composite
def tokenisations(draw: st.DrawFn, data: bytes) -> list[TokenLogprob]:
    """`data` cut at random points (empty tokens and cuts inside characters included)."""
    anywhere = st.integers(0, len(data))
    # Cutting before a continuation byte splits a character: make that common.
    inside = [i for i, byte in enumerate(data) if 0x80 <= byte < 0xC0]
    points = anywhere | st.sampled_from(inside) if inside else anywhere
    cuts = sorted(draw(st.lists(points, max_size=max(1, len(data) // 2))))
    bounds = [0, *cuts, len(data)]
    tokens = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = data[a:b]
        try:
            text = piece.decode()
            raw = piece if draw(st.booleans()) else None
        except UnicodeDecodeError:
            text, raw = piece.decode(errors="replace"), piece
        tops = draw(st.lists(st.tuples(st.text(max_size=3), LOGPROBS), max_size=3))
        tokens.append(tok(text, draw(LOGPROBS), raw=raw, tops=tops))
    return tokens


def overlapping(tokens: Sequence[TokenLogprob], begin: int, end: int) -> list[int]:
    found = []
    offset = 0
    for i, t in enumerate(tokens):
        size = len(bytes(t.bytes)) if t.bytes is not None else len(t.token.encode())
        if offset < end and offset + size > begin:
            found.append(i)
        offset += size
    return found


def usable(logprobs: Sequence[float]) -> list[float]:
    return [lp for lp in logprobs if not math.isnan(lp) and lp <= 709.0]


def same(actual: float, expected: float) -> bool:
    return actual == expected or (math.isnan(actual) and math.isnan(expected))


def check_every_leaf(case: tuple[dict[str, Any], Any, Serialised], data: st.DataObject) -> None:
    schema, _, doc = case
    raw = bytes(doc.out)
    if data.draw(st.booleans()):  # sometimes in a fence
        raw = b"```json\n" + raw + b"\n```"
        doc.leaves = [(p, v, b + 8, e + 8, c + 8, en) for p, v, b, e, c, en in doc.leaves]
    tokens = data.draw(tokenisations(raw))
    with_schema = data.draw(st.booleans())
    as_list = data.draw(st.booleans())
    report = field_confidence(
        TokenLogprobList(tokens) if as_list else tokens, schema=schema if with_schema else None
    )
    assert report.complete
    paths = [f.path for f in report.fields]
    assert paths == [leaf[0] for leaf in doc.leaves]
    assert not [p for p, n in Counter(paths).items() if n > 1]
    for field, (_, value, begin, end, content, declared) in zip(
        report.fields, doc.leaves, strict=True
    ):
        assert field.value == value and type(field.value) is type(value)
        covering = overlapping(tokens, begin, end)
        assert list(range(field.token_start, field.token_stop)) == covering
        lps = usable([tokens[i].logprob for i in covering])
        assert same(field.logprob, math.fsum(lps) if lps else NAN)
        assert same(field.min_probability, min(map(math.exp, lps)) if lps else NAN)
        choice = isinstance(value, bool) or (with_schema and declared)
        assert (field.alternatives is not None) is choice
        if field.alternatives is not None:
            at = overlapping(tokens, content, end)[0]
            assert field.alternatives_token == at
            expected = [(a.token, a.logprob) for a in tokens[at].top_logprobs]
            actual = [(a.token, a.logprob) for a in field.alternatives]
            assert len(actual) == len(expected)
            assert all(
                t == u and same(lp, mp) for (t, lp), (u, mp) in zip(actual, expected, strict=True)
            )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=documents(), data=st.data())
def test_every_leaf_of_a_random_document_is_found_with_its_tokens(
    case: tuple[dict[str, Any], Any, Serialised], data: st.DataObject
) -> None:
    check_every_leaf(case, data)


NON_ASCII = st.text(st.characters(min_codepoint=0x80, codec="utf-8"), min_size=1, max_size=4)


@st.composite
def non_ascii_documents(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Serialised]:
    """Objects of arrays of strings, keys and strings all non-ASCII: many split characters."""
    keys = draw(st.lists(NON_ASCII, unique=True, max_size=4))
    strings = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "properties": dict.fromkeys(keys, strings), "required": keys}
    value = {key: draw(st.lists(NON_ASCII, max_size=3)) for key in keys}
    doc = Serialised(draw(st.data()))
    doc.value(value, schema, "$")
    return schema, value, doc


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=non_ascii_documents(), data=st.data())
def test_characters_split_across_tokens_are_put_back_together(
    case: tuple[dict[str, Any], Any, Serialised], data: st.DataObject
) -> None:
    check_every_leaf(case, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=documents(), data=st.data())
def test_a_truncated_document_gives_exactly_the_leaves_it_holds_whole(
    case: tuple[dict[str, Any], Any, Serialised], data: st.DataObject
) -> None:
    schema, value, doc = case
    raw = bytes(doc.out)
    tokens = data.draw(tokenisations(raw))
    kept = tokens[: data.draw(st.integers(0, len(tokens)))]
    size = sum(len(bytes(t.bytes)) if t.bytes is not None else len(t.token.encode()) for t in kept)
    report = field_confidence(kept, schema=schema)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return  # a top-level number cut short is a shorter number: nothing to tell apart
    value_end = len(raw.rstrip())
    assert report.complete is (size >= value_end)

    def whole(path: str, v: Any, end: int) -> bool:
        if end != size:
            return end < size
        # A number at the very end of a cut container may have lost digits: not whole.
        return path == "$" or isinstance(v, bool) or not isinstance(v, (int, float))

    expected = [(path, v) for path, v, _, end, _, _ in doc.leaves if whole(path, v, end)]
    assert [(f.path, f.value) for f in report.fields] == expected


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.binary(max_size=6) | st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"1"]),
        max_size=40,
    ),
    texts=st.lists(st.text(alphabet='{}[]":,\\ 0-9eE.tfnrule"a\ud800', max_size=5), max_size=20),
)
def test_arbitrary_tokens_never_raise(pieces: list[bytes], texts: list[str]) -> None:
    tokens = [tok(p.decode(errors="replace"), -0.5, raw=p) for p in pieces]
    tokens += [tok(t, -0.5) for t in texts]
    report = field_confidence(tokens, schema={"items": {"enum": ["a"]}})
    previous = 0
    for field in report.fields:
        assert previous <= field.token_start < field.token_stop <= len(tokens)
        previous = field.token_start
        field.model_dump_json()
