"""The page's "Fields" table: a structured answer's fields with their confidence."""

from __future__ import annotations

from ._format import bucket, escape, fmt_p, literal
from ._records import FieldRecord, ModelCall

__all__ = ["render_fields"]


def _alternatives(field: FieldRecord) -> str:
    if not field.alternatives:
        return "—"
    return escape(
        ", ".join(
            f"{'#' + str(j + 1) if a.token is None else literal(a.token)} {fmt_p(a.probability)}"
            for j, a in enumerate(field.alternatives)
        )
    )


def render_fields(call: ModelCall) -> str:
    """The table of the call's ``logprobs.field`` events ("" when it has none).

    Per field: its path, its value (with content capture), the probability of its tokens
    (exp of the joint logprob), the lowest token probability among them, the token range,
    and for booleans and enums the alternatives at its first value token.
    """
    fields = call.fields
    if not fields and not call.fields_dropped:
        return ""
    rows = []
    for field in fields:
        p = field.probability
        cls, _ = bucket(p)
        value = "—" if field.value is None else escape(field.value)
        tokens = f"{field.token_start}–{field.token_stop - 1}"
        if field.token_stop - field.token_start <= 1:
            tokens = str(field.token_start)
        rows.append(
            f'<tr><td class="mono">{escape(field.path)}</td><td class="mono">{value}</td>'
            f'<td class="num"><span class="sw {cls}">{fmt_p(p)}</span></td>'
            f'<td class="num">{fmt_p(field.min_probability)}</td>'
            f'<td class="num">{tokens}</td><td class="mono">{_alternatives(field)}</td></tr>'
        )
    notes = []
    if call.fields_complete is False:
        notes.append("the JSON was not complete (cut off or invalid): fields read whole only")
    if call.fields_dropped:
        notes.append(f"{call.fields_dropped} more field(s) found no room in the span's events")
    note = f'<p class="muted">{escape("; ".join(notes))}</p>' if notes else ""
    return (
        '<h3>Fields</h3><table class="fields"><thead><tr><th>path</th><th>value</th>'
        '<th class="num">p (joint)</th><th class="num">min token p</th>'
        '<th class="num">tokens</th><th>alternatives</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )
